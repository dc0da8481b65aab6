"""Keeping buildah's storage from growing with every rebuild.

`buildah bud --layers` keeps an untagged ("dangling") image per build step: the layer cache that
makes the next build fast. A changed source file starts a new chain of such images, and the old
chain, which no build will ask for again, stays on disk (a few hundred MB per change of Moorage's
sources); so does everything built on a Python base that has since been rebuilt. After a build,
the dangling images built on a local base (they carry its label) that the latest build of no
image used (its log names every step's image, built or taken from the cache) are removed. Images
without that label, and anything tagged, are never touched.

`used_image_ids` and `prunable_images` are pure; `prune_unused_layers` does the I/O.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from moorage_dev.baseimages import LOCAL_BASE_LABEL
from moorage_dev.buildah import Buildah

# buildah prints each step's image: "--> Using cache <64 hex>" or "--> <11 hex>".
_STEP_IMAGE = re.compile(r"^--> (?:Using cache )?([0-9a-f]{11,64})\s*$", re.MULTILINE)


@dataclass(frozen=True, slots=True)
class StoredImage:
    image_id: str
    """Full id."""
    labels: frozenset[str]
    """The names of the image's labels."""
    created: int
    """Seconds since the epoch."""


def used_image_ids(logs: Iterable[str]) -> set[str]:
    """The (possibly shortened) ids of the images each build log says its steps used."""
    return {match for text in logs for match in _STEP_IMAGE.findall(text)}


def prunable_images(dangling: Sequence[StoredImage], *, used: set[str]) -> list[str]:
    """The dangling images built on a local base that no latest build used, newest first
    (children go before their parents)."""

    def is_used(image_id: str) -> bool:
        return any(image_id.startswith(short) for short in used)

    return [
        image.image_id
        for image in sorted(dangling, key=lambda i: i.created, reverse=True)
        if LOCAL_BASE_LABEL in image.labels and not is_used(image.image_id)
    ]


def _labels(buildah: Buildah, image_id: str) -> frozenset[str] | None:
    proc = subprocess.run(
        [buildah.executable, "inspect", "--type=image", image_id],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        return None
    labels = json.loads(proc.stdout).get("OCIv1", {}).get("config", {}).get("Labels") or {}
    return frozenset(labels)


def _dangling(buildah: Buildah) -> list[StoredImage]:
    proc = subprocess.run(
        [buildah.executable, "images", "--json", "--no-trunc"],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0 or not proc.stdout.strip():
        return []
    found: list[StoredImage] = []
    for entry in json.loads(proc.stdout):
        if entry.get("names"):
            continue
        image_id = str(entry["id"]).removeprefix("sha256:")
        labels = _labels(buildah, image_id)
        if labels is not None:
            found.append(
                StoredImage(image_id=image_id, labels=labels, created=int(entry.get("created", 0)))
            )
    return found


def prune_unused_layers(buildah: Buildah, *, logs_dir: Path) -> int:
    """Remove the stale layer cache of images built on a local base; how many images went."""
    used = used_image_ids(p.read_text(errors="replace") for p in sorted(logs_dir.glob("*.log")))
    removed = 0
    for image_id in prunable_images(_dangling(buildah), used=used):
        # An image still used by a container, or a parent of one that stays, is refused: fine.
        if buildah.remove_image(image_id):
            removed += 1
    return removed
