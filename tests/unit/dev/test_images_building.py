"""How images are built and imported, in its pure parts: buildah command lines, the local base
images' recipe (apt sources, debootstrap), archive naming for containerd, what to import."""

from __future__ import annotations

from pathlib import Path

import pytest

from moorage_dev.baseimages import (
    AptMirrors,
    PythonBase,
    build_apt_sources,
    build_debootstrap_argv,
    parse_apt_mirrors,
    python_base_for,
    uv_reference,
    uv_version_for,
)
from moorage_dev.buildah import Buildah, ImageError, build_bud_argv, build_push_argv
from moorage_dev.imagearchives import build_containerd_index
from moorage_dev.images import (
    BuiltImage,
    images_to_import,
    manifest_images,
    parse_ctr_images,
)
from moorage_dev.ociarchive import ANNOTATION_CONTAINERD_NAME


def test_a_build_is_chrooted_layered_and_never_pulls() -> None:
    argv = build_bud_argv(
        dockerfile=Path("/repo/docker/Dockerfile"),
        context=Path("/repo"),
        reference="ghcr.io/moorage/moorage-webhook:0.1.0",
        target="webhook",
        build_args={"UV_IMAGE": "localhost/moorage-dev/uv:0.13.9", "PYTHON_IMAGE": "localhost/p"},
    )
    assert argv[0] == "bud"
    assert {"--isolation=chroot", "--layers", "--pull=never", "--target=webhook"} <= set(argv)
    assert "--file=/repo/docker/Dockerfile" in argv
    assert "--tag=ghcr.io/moorage/moorage-webhook:0.1.0" in argv
    args = [a for a in argv if a.startswith("--build-arg=")]
    assert args == [
        "--build-arg=PYTHON_IMAGE=localhost/p",
        "--build-arg=UV_IMAGE=localhost/moorage-dev/uv:0.13.9",
    ]
    assert argv[-1] == "/repo"


def test_a_build_without_target_builds_the_last_stage() -> None:
    argv = build_bud_argv(
        dockerfile=Path("D"), context=Path("."), reference="r", target=None, build_args={}
    )
    assert not any(a.startswith("--target") for a in argv)


def test_an_image_is_written_as_an_oci_layout_named_by_its_full_reference() -> None:
    argv = build_push_argv(
        reference="ghcr.io/moorage-dev/mcp-server-time:2025.9.25",
        layout=Path("/w/layout"),
        digest_file=Path("/w/digest"),
    )
    assert argv[-1] == "oci:/w/layout:ghcr.io/moorage-dev/mcp-server-time:2025.9.25"
    assert "--digestfile=/w/digest" in argv


@pytest.mark.parametrize(
    ("default", "expected"),
    [
        pytest.param("python:3.11-slim-bookworm", PythonBase("3.11", "bookworm"), id="short"),
        pytest.param(
            "docker.io/library/python:3.12.4-slim-trixie", PythonBase("3.12", "trixie"), id="full"
        ),
    ],
)
def test_the_python_base_follows_the_dockerfile_default(default: str, expected: PythonBase) -> None:
    assert python_base_for(default) == expected
    assert expected.reference.startswith("localhost/moorage-dev/python:")


def test_a_python_base_default_that_is_not_debian_slim_is_refused() -> None:
    with pytest.raises(ImageError, match="PYTHON_IMAGE"):
        python_base_for("python:3.11-alpine")


def test_the_uv_version_comes_from_the_uv_image_default() -> None:
    assert uv_version_for("ghcr.io/astral-sh/uv:0.13.9") == "0.13.9"
    assert uv_reference("0.13.9") == "localhost/moorage-dev/uv:0.13.9"
    with pytest.raises(ImageError, match="UV_IMAGE"):
        uv_version_for("ghcr.io/astral-sh/uv:latest")


HOST_DEB822 = """\
Types: deb
# http://snapshot.debian.org/archive/debian/20250520T000000Z
URIs: http://mirror.example/debian/
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://mirror.example/debian-security
Suites: bookworm-security
Components: main
"""


@pytest.mark.parametrize(
    ("deb822", "one_line", "expected"),
    [
        pytest.param(
            HOST_DEB822,
            None,
            AptMirrors("http://mirror.example/debian", "http://mirror.example/debian-security"),
            id="deb822",
        ),
        pytest.param(
            None,
            "# comment\ndeb [arch=amd64] http://m.example/debian bookworm main\n"
            "deb http://s.example/debian-security bookworm-security main\n",
            AptMirrors("http://m.example/debian", "http://s.example/debian-security"),
            id="sources-list",
        ),
        pytest.param(None, None, AptMirrors(), id="defaults"),
    ],
)
def test_the_machines_apt_mirrors(
    deb822: str | None, one_line: str | None, expected: AptMirrors
) -> None:
    assert parse_apt_mirrors(deb822=deb822, one_line=one_line) == expected


def test_the_base_apt_sources_cover_the_release_its_updates_and_security() -> None:
    text = build_apt_sources(
        mirrors=AptMirrors("http://m/debian", "http://s/sec"), suite="bookworm"
    )
    stanzas = text.strip().split("\n\n")
    assert "URIs: http://m/debian\nSuites: bookworm bookworm-updates" in stanzas[0]
    assert "URIs: http://s/sec\nSuites: bookworm-security" in stanzas[1]
    assert all("Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg" in s for s in stanzas)


def test_debootstrap_makes_a_minimal_release_with_python() -> None:
    argv = build_debootstrap_argv(
        base=PythonBase("3.11", "bookworm"), rootfs=Path("/w/rootfs"), mirror="http://m/debian"
    )
    assert argv[:2] == ["debootstrap", "--variant=minbase"]
    assert "python3" in argv[2].removeprefix("--include=").split(",")
    assert argv[3:] == ["bookworm", "/w/rootfs", "http://m/debian"]


def test_the_archive_index_names_the_image_for_containerd() -> None:
    index = {
        "schemaVersion": 2,
        "manifests": [
            {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": "sha256:" + "1" * 64,
                "size": 10,
                "annotations": {"org.opencontainers.image.ref.name": "ghcr.io/x/y:1"},
            }
        ],
    }
    annotated = build_containerd_index(index, reference="ghcr.io/x/y:1")
    (manifest,) = annotated["manifests"]  # type: ignore[misc]
    assert manifest["annotations"][ANNOTATION_CONTAINERD_NAME] == "ghcr.io/x/y:1"
    assert manifest["annotations"]["org.opencontainers.image.ref.name"] == "ghcr.io/x/y:1"
    assert manifest["digest"] == "sha256:" + "1" * 64
    with pytest.raises(ImageError, match="one image"):
        build_containerd_index({"manifests": []}, reference="r")


CTR_LS = """\
REF                                    TYPE                                       DIGEST                                                                  SIZE     PLATFORMS   LABELS
ghcr.io/moorage/moorage-operator:0.1.0 application/vnd.oci.image.manifest.v1+json sha256:{a} 150.2 MiB linux/amd64 io.cri-containerd.image=managed
moorage.dev/pause:abc                  application/vnd.oci.image.manifest.v1+json sha256:{b} 400.0 KiB linux/amd64 -
""".format(a="a" * 64, b="b" * 64)


def _image(name: str, reference: str, digest: str) -> BuiltImage:
    return BuiltImage(
        name=name,
        reference=reference,
        archive=Path(f"/a/{name}.tar"),
        digest=digest,
        image_id="i",
        cached=True,
    )


def test_only_images_missing_or_different_on_the_node_are_imported() -> None:
    present = parse_ctr_images(CTR_LS)
    assert present == {
        "ghcr.io/moorage/moorage-operator:0.1.0": "sha256:" + "a" * 64,
        "moorage.dev/pause:abc": "sha256:" + "b" * 64,
    }
    images = {
        "operator": _image(
            "operator", "ghcr.io/moorage/moorage-operator:0.1.0", "sha256:" + "a" * 64
        ),
        "webhook": _image("webhook", "ghcr.io/moorage/moorage-webhook:0.1.0", "sha256:" + "c" * 64),
        "proxyrunner": _image("proxyrunner", "moorage.dev/pause:abc", "sha256:" + "d" * 64),
    }
    assert [i.name for i in images_to_import(images, present=present)] == ["webhook", "proxyrunner"]


def test_manifest_images_pin_moorages_images_for_kustomize() -> None:
    images = {
        "operator": _image("operator", "ghcr.io/moorage/moorage-operator:0.1.0", "d"),
        "mcp-server-time": _image("mcp-server-time", "ghcr.io/moorage-dev/mcp-server-time:1", "d"),
    }
    assert manifest_images(images) == {
        "ghcr.io/moorage/moorage-operator": "ghcr.io/moorage/moorage-operator:0.1.0"
    }


def _fake_buildah(tmp_path: Path, *, failures: int, message: str) -> Buildah:
    """A `buildah` whose `bud` fails `failures` times with `message`, then succeeds, leaving a
    working container behind each time (as buildah 1.28 does); one container exists before."""
    script = tmp_path / "buildah"
    (tmp_path / "containers").write_text("theirs\n")
    script.write_text(
        "#!/bin/sh\n"
        f'case "$1" in containers) cat {tmp_path}/containers; exit 0;; '
        f'rm) echo "$2" >> {tmp_path}/removed; exit 0;; esac\n'
        f"n=$(cat {tmp_path}/count 2>/dev/null || echo 0); echo $((n + 1)) > {tmp_path}/count\n"
        f"echo leaked-$n >> {tmp_path}/containers\n"
        f'if [ "$n" -lt {failures} ]; then echo "{message}" >&2; exit 1; fi\n'
        "echo built\n"
    )
    script.chmod(0o755)
    return Buildah(executable=str(script))


def test_a_build_is_run_again_after_the_transient_memfd_failure(tmp_path: Path) -> None:
    message = "Close_Fd sealing memfd copy: Device or resource busy"
    buildah = _fake_buildah(tmp_path, failures=2, message=message)
    said: list[str] = []
    buildah.build(["bud"], what="building x", log=tmp_path / "x.log", report=said.append)
    assert (tmp_path / "count").read_text().strip() == "3"
    assert len(said) == 2
    assert (tmp_path / "x.log").read_text().strip() == "built"
    # The containers the build left are removed; the one that was there before is not.
    assert (tmp_path / "removed").read_text().split() == ["leaked-0", "leaked-1", "leaked-2"]


def test_a_build_gives_up_after_its_attempts_or_at_once_on_other_failures(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    flaky = _fake_buildah(tmp_path / "a", failures=9, message="sealing memfd copy: busy")
    with pytest.raises(ImageError, match=r"building x failed \(full output in .*x.log\)"):
        flaky.build(["bud"], what="building x", log=tmp_path / "x.log", report=lambda _: None)
    assert (tmp_path / "a" / "count").read_text().strip() == "3"
    assert "theirs" not in (tmp_path / "a" / "removed").read_text()
    (tmp_path / "b").mkdir()
    broken = _fake_buildah(tmp_path / "b", failures=9, message="COPY failed: no such file")
    with pytest.raises(ImageError, match="COPY failed"):
        broken.build(["bud"], what="building y", log=tmp_path / "y.log", report=lambda _: None)
    assert (tmp_path / "b" / "count").read_text().strip() == "1"
