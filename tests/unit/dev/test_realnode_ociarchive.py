"""OCI image archives written by hand: a layout `ctr images import` accepts, the same bytes for
the same files."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from typing import Any

from moorage_dev.ociarchive import (
    ANNOTATION_CONTAINERD_NAME,
    ANNOTATION_REF_NAME,
    ImageSpec,
    LayerFile,
    build_oci_archive,
)

SPEC = ImageSpec(
    name="moorage.dev/probe:v1",
    files=[LayerFile("/usr/bin/probe", b"\x7fELF-not-really", mode=0o755)],
    entrypoint=["/usr/bin/probe"],
    cmd=["serve"],
    user="65534",
    architecture="amd64",
)


def _members(archive: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        return {
            m.name: tar.extractfile(m).read()  # type: ignore[union-attr]
            for m in tar.getmembers()
            if m.isfile()
        }


def _blob(members: dict[str, bytes], digest: str) -> bytes:
    data = members["blobs/sha256/" + digest.removeprefix("sha256:")]
    assert "sha256:" + hashlib.sha256(data).hexdigest() == digest
    return data


def _json(data: bytes) -> Any:
    return json.loads(data)


def test_the_archive_is_an_oci_layout_whose_digests_hold() -> None:
    members = _members(build_oci_archive(SPEC))
    assert _json(members["oci-layout"]) == {"imageLayoutVersion": "1.0.0"}
    index = _json(members["index.json"])
    [entry] = index["manifests"]
    assert entry["annotations"][ANNOTATION_CONTAINERD_NAME] == "moorage.dev/probe:v1"
    assert entry["annotations"][ANNOTATION_REF_NAME] == "v1"
    assert entry["platform"] == {"architecture": "amd64", "os": "linux"}
    manifest = _json(_blob(members, entry["digest"]))
    assert entry["size"] == len(_blob(members, entry["digest"]))
    config = _json(_blob(members, manifest["config"]["digest"]))
    [layer_descriptor] = manifest["layers"]
    layer = _blob(members, layer_descriptor["digest"])
    assert config["rootfs"]["diff_ids"] == ["sha256:" + hashlib.sha256(layer).hexdigest()]
    assert config["config"]["Entrypoint"] == ["/usr/bin/probe"]
    assert config["config"]["Cmd"] == ["serve"]
    assert config["config"]["User"] == "65534"
    assert config["architecture"] == "amd64"


def test_the_layer_holds_the_file_with_its_mode_and_parent_folders() -> None:
    members = _members(build_oci_archive(SPEC))
    manifest_digest = _json(members["index.json"])["manifests"][0]["digest"]
    manifest = _json(_blob(members, manifest_digest))
    layer = _blob(members, manifest["layers"][0]["digest"])
    with tarfile.open(fileobj=io.BytesIO(layer)) as tar:
        names = tar.getnames()
        probe = tar.getmember("usr/bin/probe")
        assert tar.extractfile(probe).read() == b"\x7fELF-not-really"  # type: ignore[union-attr]
    assert names == ["usr", "usr/bin", "usr/bin/probe"]
    assert probe.mode == 0o755
    assert probe.uid == 0
    assert probe.mtime == 0


def test_the_same_files_give_the_same_bytes() -> None:
    assert build_oci_archive(SPEC) == build_oci_archive(SPEC)
    other = ImageSpec(
        name=SPEC.name, files=[LayerFile("/usr/bin/probe", b"changed")], entrypoint=["/x"]
    )
    assert build_oci_archive(other) != build_oci_archive(SPEC)


def test_a_name_without_a_tag_is_latest() -> None:
    spec = ImageSpec(name="localhost:5000/pause", files=[], entrypoint=["/pause"])
    index = _json(_members(build_oci_archive(spec))["index.json"])
    assert index["manifests"][0]["annotations"][ANNOTATION_REF_NAME] == "latest"
