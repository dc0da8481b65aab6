"""Writing a built image from buildah's storage as the OCI archive the real node imports.

`buildah push` writes an OCI layout directory; its index gains the `io.containerd.image.name`
annotation (containerd names an imported image after it, where the standard `ref.name` alone would
leave the image nameless), and the directory is packed as a tar with sorted entries and normalised
owners and times. `build_containerd_index` is pure; `write_archive` does the I/O.
"""

from __future__ import annotations

import json
import tarfile
import tempfile
from pathlib import Path

from moorage_dev.buildah import Buildah, ImageError, build_push_argv
from moorage_dev.ociarchive import ANNOTATION_CONTAINERD_NAME


def build_containerd_index(index: dict[str, object], *, reference: str) -> dict[str, object]:
    """`index.json` with each manifest also annotated with the name containerd should give it."""
    manifests = index.get("manifests")
    if not isinstance(manifests, list) or len(manifests) != 1:
        raise ImageError(f"expected one image in the OCI layout of {reference}")
    annotated = []
    for descriptor in manifests:
        annotations = {**descriptor.get("annotations", {}), ANNOTATION_CONTAINERD_NAME: reference}
        annotated.append({**descriptor, "annotations": annotations})
    return {**index, "manifests": annotated}


def _tar_layout(layout: Path, archive: Path) -> None:
    """Pack an OCI layout directory as a tar, entries sorted, owners and times normalised."""

    def normalise(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        info.mtime = 0
        return info

    with tarfile.open(archive, "w") as tar:
        for path in sorted(layout.rglob("*")):
            tar.add(
                path, arcname=path.relative_to(layout).as_posix(), recursive=False, filter=normalise
            )


def write_archive(buildah: Buildah, *, reference: str, archive: Path, work: Path) -> str:
    """Write `reference` from local storage to `archive`; the image manifest's digest."""
    with tempfile.TemporaryDirectory(prefix="push-", dir=work) as tmp:
        layout = Path(tmp) / "layout"
        digest_file = Path(tmp) / "digest"
        buildah.run(
            build_push_argv(reference=reference, layout=layout, digest_file=digest_file),
            what=f"write {reference} as an OCI layout",
        )
        index_path = layout / "index.json"
        index = json.loads(index_path.read_text())
        index_path.write_text(json.dumps(build_containerd_index(index, reference=reference)))
        staging = archive.with_suffix(".partial")
        _tar_layout(layout, staging)
        staging.replace(archive)
        return digest_file.read_text().strip()
