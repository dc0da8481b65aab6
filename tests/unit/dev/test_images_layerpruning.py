"""Which dangling images a build may remove from buildah's storage: only stale layer cache built on
a local base, never what the latest builds used."""

from __future__ import annotations

from moorage_dev.baseimages import LOCAL_BASE_LABEL, PythonBase, build_python_config
from moorage_dev.layerpruning import StoredImage, prunable_images, used_image_ids

LOG = """\
[2/5] STEP 5/15: COPY pyproject.toml uv.lock ./
--> Using cache 66bd5f15d03284c5625b85613c81a7aa47b2b89608f038264eb255f717e6c2ca
--> 66bd5f15d03
[2/5] STEP 10/15: COPY operator/src operator/src
--> da29e338405
Successfully tagged ghcr.io/moorage/moorage-operator:0.1.0
a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9
"""

OURS = frozenset({LOCAL_BASE_LABEL, "io.buildah.version"})


def _id(prefix: str) -> str:
    return prefix + "0" * (64 - len(prefix))


def test_the_step_images_a_log_names_are_used() -> None:
    assert used_image_ids([LOG]) == {
        "66bd5f15d03284c5625b85613c81a7aa47b2b89608f038264eb255f717e6c2ca",
        "66bd5f15d03",
        "da29e338405",
    }


def test_stale_images_on_a_local_base_go_newest_first_and_used_ones_stay() -> None:
    dangling = [
        StoredImage(_id("66bd5f15d03"), OURS, created=1),
        StoredImage(_id("da29e338405"), OURS, created=3),
        StoredImage(_id("a1d"), OURS, created=2),
        StoredImage(_id("b1d"), OURS, created=4),
        StoredImage(_id("c0ffee"), frozenset({"io.buildah.version"}), created=5),
    ]
    assert prunable_images(dangling, used=used_image_ids([LOG])) == [_id("b1d"), _id("a1d")]


def test_the_local_base_carries_the_label_its_images_inherit() -> None:
    config = build_python_config(base=PythonBase("3.11", "bookworm"))
    assert f"--label={LOCAL_BASE_LABEL}=python3.11-bookworm" in config
