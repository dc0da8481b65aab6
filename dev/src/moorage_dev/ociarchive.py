"""OCI image archives written directly, for images made of a few files (no image builder needed).

The real node's pause image and the tests' small static programs are single-layer images. This
module turns files into an uncompressed layer, an image config, a manifest and an index, and packs
them as an OCI image layout in a tar (`ctr images import` reads it). Everything is deterministic:
the same files give the same digests, so an archive can be cached by its content.

`build_*` functions are pure (bytes in, bytes out); `write_oci_archive` writes the result.
"""

from __future__ import annotations

import hashlib
import io
import json
import platform
import tarfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MEDIA_LAYER = "application/vnd.oci.image.layer.v1.tar"
MEDIA_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_INDEX = "application/vnd.oci.image.index.v1+json"
# containerd takes an imported image's full name from this annotation; other tools read the
# standard ref.name, which holds the tag only.
ANNOTATION_CONTAINERD_NAME = "io.containerd.image.name"
ANNOTATION_REF_NAME = "org.opencontainers.image.ref.name"

_GOARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}


def host_architecture() -> str:
    """This machine's architecture in OCI (Go) spelling."""
    machine = platform.machine().lower()
    return _GOARCH.get(machine, machine)


@dataclass(frozen=True, slots=True)
class LayerFile:
    """One regular file of a layer; `path` is absolute inside the image."""

    path: str
    data: bytes
    mode: int = 0o755


@dataclass(frozen=True, slots=True)
class ImageSpec:
    """What the image runs. `name` is a full reference with a tag (`moorage.dev/pause:abc`)."""

    name: str
    files: Sequence[LayerFile]
    entrypoint: Sequence[str]
    cmd: Sequence[str] = ()
    env: Sequence[str] = ("PATH=/usr/local/bin:/usr/bin:/bin",)
    user: str = ""
    working_dir: str = "/"
    architecture: str = field(default_factory=host_architecture)


@dataclass(frozen=True, slots=True)
class Blob:
    data: bytes
    media_type: str

    @property
    def digest(self) -> str:
        return "sha256:" + hashlib.sha256(self.data).hexdigest()

    def descriptor(self, **extra: Any) -> dict[str, Any]:
        return {
            "mediaType": self.media_type,
            "digest": self.digest,
            "size": len(self.data),
            **extra,
        }


def _canonical_json(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def _tar_info(name: str, *, size: int = 0, mode: int, kind: bytes) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mode = mode
    info.type = kind
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def _parents(path: str) -> list[str]:
    parts = path.strip("/").split("/")[:-1]
    return ["/".join(parts[: i + 1]) for i in range(len(parts))]


def build_layer(files: Sequence[LayerFile]) -> bytes:
    """An uncompressed layer tar holding `files` and their parent directories."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        seen: set[str] = set()
        for item in sorted(files, key=lambda f: f.path):
            for directory in _parents(item.path):
                if directory not in seen:
                    seen.add(directory)
                    tar.addfile(_tar_info(directory, mode=0o755, kind=tarfile.DIRTYPE))
            name = item.path.strip("/")
            info = _tar_info(name, size=len(item.data), mode=item.mode, kind=tarfile.REGTYPE)
            tar.addfile(info, io.BytesIO(item.data))
    return buffer.getvalue()


def build_config(spec: ImageSpec, *, layer: bytes) -> bytes:
    """The image config: what runs, and the layer's diff id (its uncompressed digest)."""
    config: dict[str, Any] = {
        "Entrypoint": list(spec.entrypoint),
        "Env": list(spec.env),
        "WorkingDir": spec.working_dir,
    }
    if spec.cmd:
        config["Cmd"] = list(spec.cmd)
    if spec.user:
        config["User"] = spec.user
    return _canonical_json(
        {
            "architecture": spec.architecture,
            "os": "linux",
            "created": "1970-01-01T00:00:00Z",
            "config": config,
            "rootfs": {
                "type": "layers",
                "diff_ids": ["sha256:" + hashlib.sha256(layer).hexdigest()],
            },
            "history": [{"created": "1970-01-01T00:00:00Z", "created_by": "moorage-dev"}],
        }
    )


def build_oci_archive(spec: ImageSpec) -> bytes:
    """The OCI image layout of `spec` as one tar (oci-layout, index.json, blobs/sha256/...)."""
    layer = Blob(build_layer(spec.files), MEDIA_LAYER)
    config = Blob(build_config(spec, layer=layer.data), MEDIA_CONFIG)
    manifest = Blob(
        _canonical_json(
            {
                "schemaVersion": 2,
                "mediaType": MEDIA_MANIFEST,
                "config": config.descriptor(),
                "layers": [layer.descriptor()],
            }
        ),
        MEDIA_MANIFEST,
    )
    tag = spec.name.rsplit(":", 1)[1] if ":" in spec.name.rsplit("/", 1)[-1] else "latest"
    index = _canonical_json(
        {
            "schemaVersion": 2,
            "mediaType": MEDIA_INDEX,
            "manifests": [
                manifest.descriptor(
                    platform={"architecture": spec.architecture, "os": "linux"},
                    annotations={ANNOTATION_CONTAINERD_NAME: spec.name, ANNOTATION_REF_NAME: tag},
                )
            ],
        }
    )
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        entries: list[tuple[str, bytes]] = [
            ("oci-layout", _canonical_json({"imageLayoutVersion": "1.0.0"})),
            ("index.json", index),
        ]
        entries += [
            (f"blobs/sha256/{blob.digest.removeprefix('sha256:')}", blob.data)
            for blob in (layer, config, manifest)
        ]
        for directory in ("blobs", "blobs/sha256"):
            tar.addfile(_tar_info(directory, mode=0o755, kind=tarfile.DIRTYPE))
        for name, data in entries:
            tar.addfile(
                _tar_info(name, size=len(data), mode=0o644, kind=tarfile.REGTYPE), io.BytesIO(data)
            )
    return buffer.getvalue()


def write_oci_archive(spec: ImageSpec, path: Path) -> Path:
    """Write `spec`'s archive to `path` (atomically, so a cache never holds half an archive)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(build_oci_archive(spec))
    tmp.replace(path)
    return path
