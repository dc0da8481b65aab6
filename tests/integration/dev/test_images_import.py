"""Importing built images into the real node's containerd, and not importing them twice.

Uses the small images (the failing server and the time server) so that the import itself is
what is measured; the real node comes from the `real_node_plane` fixture (skipped where the
machine cannot run one).
"""

from __future__ import annotations

import time

import pytest

from moorage_dev.buildah import ImageError
from moorage_dev.cluster import ControlPlane
from moorage_dev.images import build_images, import_images, parse_ctr_images

pytestmark = pytest.mark.realnode

SMALL = ["mcp-server-failing", "mcp-server-time"]


def test_images_reach_the_node_once_with_their_digests(real_node_plane: ControlPlane) -> None:
    try:
        built = build_images(report=print, only=SMALL)
    except ImageError as exc:
        pytest.fail(f"cannot build images here: {str(exc).splitlines()[0]}", pytrace=False)
    node = real_node_plane.real_node
    assert node is not None
    # The node is shared with the other real-node tests, which may have imported these already:
    # start from a node without them.
    node.ctr("images", "rm", *(image.reference for image in built.values()), check=False)
    assert not set(parse_ctr_images(node.ctr("images", "ls").stdout)) & {
        image.reference for image in built.values()
    }

    started = time.monotonic()
    imported = import_images(real_node_plane, built, report=print)
    print(f"import of {len(imported)} image(s): {time.monotonic() - started:.1f}s")
    present = parse_ctr_images(node.ctr("images", "ls").stdout)
    for image in built.values():
        assert present.get(image.reference) == image.digest
    assert sorted(imported) == sorted(i.reference for i in built.values())

    assert import_images(real_node_plane, built) == []
