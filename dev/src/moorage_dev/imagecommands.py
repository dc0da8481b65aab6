"""`moorage-dev images`: build the images with no Docker daemon, and import them into the real node.

moorage-dev images build [--only NAME ...] [--import]
                             build (or find cached) images; print each reference and its archive
moorage-dev images import [--only NAME ...]
                             the same, then import them into the running local cluster's real node

A thin shell over `images.build_images` / `images.import_images`; it prints for its user.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from moorage_dev.cluster import ControlPlane
from moorage_dev.imagecatalogue import EXAMPLE_SERVERS, MOORAGE_TARGETS
from moorage_dev.images import ImageError, build_images, import_images


def add_images_command(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    # Names only, no file read: the parser is built for every moorage-dev command, also where the
    # repository is not at hand (the package installed in an image).
    names = ", ".join((*MOORAGE_TARGETS, *EXAMPLE_SERVERS))
    images = sub.add_parser(
        "images", help="build Moorage's and the examples' images without Docker (buildah)"
    )
    images.add_argument("images_action", choices=["build", "import"])
    images.add_argument(
        "--only", nargs="+", metavar="NAME", help=f"only these images (of: {names})"
    )
    images.add_argument(
        "--import",
        dest="import_too",
        action="store_true",
        help="after building, import into the local cluster's real node (as `images import`)",
    )


def run_images_command(
    args: argparse.Namespace, *, state_dir: Path, say: Callable[[str], None]
) -> int:
    try:
        built = build_images(report=say, only=args.only)
        for image in built.values():
            print(f"{image.reference} {image.archive}")
        if args.images_action == "import" or args.import_too:
            plane = ControlPlane.load(state_dir, report=say)
            if plane is None or not plane.is_healthy():
                say("the local cluster is not running: start it with `moorage-dev cluster up`")
                return 1
            imported = import_images(plane, built, report=say)
            say(f"imported {len(imported)} image(s); {len(built) - len(imported)} already there")
    except ImageError as exc:
        say(f"error: {exc}")
        return 2
    return 0
