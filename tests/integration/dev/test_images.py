"""Building every image with buildah and no registry, then looking inside without running it.

The first build on a machine makes the Debian base with debootstrap and builds seven images (a few
minutes on two cores); later runs find everything in the cache. Each image is checked by its
config (user, entry point) and its files, read from a mount of the image: the entry point and the
interpreter its script names exist and are executable, and what each image needs beside it
(git for the operator, Node.js for the everything server) is there. The OCI archive is what the
real node imports: one image, named for containerd, with the digest the manifest records.
"""

from __future__ import annotations

import json
import subprocess
import tarfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import pytest

from moorage_dev.buildah import ImageError
from moorage_dev.imagecache import ContextFile, digest_context
from moorage_dev.imagecatalogue import EXAMPLE_SERVERS, MOORAGE_TARGETS
from moorage_dev.images import BuiltImage, build_images
from moorage_dev.ociarchive import ANNOTATION_CONTAINERD_NAME

REPO = Path(__file__).resolve().parents[3]
NOBODY = "65534:65534"


@dataclass(frozen=True)
class Expected:
    entrypoint: list[str]
    user: str = NOBODY
    files: tuple[str, ...] = ()
    """Executables the image must hold beside its entry point."""


EXPECTED = {
    "operator": Expected(
        ["/opt/moorage/bin/moorage-operator"], files=("/usr/bin/git", "/usr/bin/ssh")
    ),
    "webhook": Expected(["/opt/moorage/bin/moorage-webhook"]),
    "proxyrunner": Expected(["/opt/moorage/bin/moorage-proxyrunner"]),
    "registry-api": Expected(["/opt/moorage/bin/moorage-registry-api"]),
    "mcp-server-time": Expected(["/opt/mcp-server-time/bin/mcp-server-time"]),
    "mcp-server-everything": Expected(
        [
            "/opt/mcp-server-everything/bin/node",
            "/opt/mcp-server-everything/node_modules/@modelcontextprotocol/server-everything/dist/index.js",
        ]
    ),
    "mcp-server-toolbox": Expected(
        ["/opt/mcp-server-toolbox/bin/python", "/opt/mcp-server-toolbox/toolbox_server.py"]
    ),
    "redis": Expected(
        [
            "/usr/bin/redis-server",
            "--port",
            "6379",
            "--protected-mode",
            "no",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            "/tmp",
        ]
    ),
    "mcp-server-failing": Expected(
        [
            "/bin/sh",
            "-c",
            "echo 'mcp-server-failing: this server fails at start-up on purpose (a CrashLoopBackOff test image)' >&2; exit 3",
            "mcp-server-failing",
        ]
    ),
}


@dataclass(frozen=True)
class Builds:
    first: dict[str, BuiltImage]
    first_seconds: float
    again: dict[str, BuiltImage]
    """A second build right after the first: what did not change must come from the cache."""
    again_seconds: float
    sources_changed: bool
    """Whether Moorage's sources changed while the first build ran (people edit this tree)."""


def _main_context() -> list[ContextFile]:
    return digest_context(REPO, dockerfile_text=(REPO / "docker" / "Dockerfile").read_text())


@pytest.fixture(scope="module")
def builds() -> Builds:
    try:
        before = _main_context()
        started = time.monotonic()
        first = build_images(report=print)
        first_seconds = time.monotonic() - started
        changed = _main_context() != before
        started = time.monotonic()
        again = build_images(report=print)
        again_seconds = time.monotonic() - started
    except ImageError as exc:
        pytest.fail(f"cannot build images here: {str(exc).splitlines()[0]}", pytrace=False)
    print(f"build_images: {first_seconds:.0f}s, then {again_seconds:.1f}s")
    return Builds(first, first_seconds, again, again_seconds, changed)


@pytest.fixture(scope="module")
def built(builds: Builds) -> dict[str, BuiltImage]:
    """The images as they are now (after the second build)."""
    return builds.again


def _buildah(*args: str) -> str:
    return subprocess.run(["buildah", *args], capture_output=True, text=True, check=True).stdout


def _config(image: str) -> dict[str, Any]:
    config: dict[str, Any] = json.loads(_buildah("inspect", "--type=image", image))["OCIv1"][
        "config"
    ]
    return config


@pytest.fixture(scope="module")
def mounts(built: dict[str, BuiltImage]) -> Iterator[dict[str, Path]]:
    """Each image's root filesystem, mounted through a working container (only read here)."""
    images = built
    containers: list[str] = []
    roots: dict[str, Path] = {}
    try:
        for name, image in images.items():
            container = _buildah("from", "--pull=never", image.image_id).strip()
            containers.append(container)
            roots[name] = Path(_buildah("mount", container).strip())
        yield roots
    finally:
        for container in containers:
            subprocess.run(["buildah", "rm", container], capture_output=True, check=False)


def _resolve(root: Path, path: str) -> Path:
    """`path` inside the image at `root`, following symbolic links as the image would."""
    current = PurePosixPath("/")
    parts = list(PurePosixPath(path).parts[1:])
    for _ in range(64):
        if not parts:
            return root / current.relative_to("/")
        candidate = current / parts.pop(0)
        on_disk = root / candidate.relative_to("/")
        if on_disk.is_symlink():
            target = PurePosixPath(str(on_disk.readlink()))
            base = PurePosixPath("/") if target.is_absolute() else candidate.parent
            parts = list((base / target).parts[1:]) + parts
            current = PurePosixPath("/")
        else:
            current = candidate
    raise AssertionError(f"too many links resolving {path}")


def _is_executable(root: Path, path: str) -> bool:
    resolved = _resolve(root, path)
    return resolved.is_file() and resolved.stat().st_mode & 0o111 != 0


def test_every_image_is_built_with_an_archive(built: dict[str, BuiltImage]) -> None:
    images = built
    assert set(images) == set(EXPECTED)
    for image in images.values():
        assert image.archive.is_file()
        assert image.digest.startswith("sha256:")


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_image_runs_its_entry_point_as_expected(
    name: str, built: dict[str, BuiltImage], mounts: dict[str, Path]
) -> None:
    images = built
    expected = EXPECTED[name]
    config = _config(images[name].image_id)
    assert config.get("User") == expected.user
    assert config.get("Entrypoint") == expected.entrypoint
    root = mounts[name]
    program = expected.entrypoint[0]
    assert _is_executable(root, program), f"{program} is not an executable file in {name}"
    with _resolve(root, program).open("rb") as handle:
        first_line = handle.readline()
    if first_line.startswith(b"#!"):
        interpreter = first_line[2:].split()[0].decode()
        assert _is_executable(root, interpreter), f"{name}: {program} needs {interpreter}"
    for path in expected.files:
        assert _is_executable(root, path), f"{path} is missing from {name}"


def test_moorage_images_hold_the_locked_environment(
    built: dict[str, BuiltImage], mounts: dict[str, Path]
) -> None:
    images = built
    for name in ("operator", "webhook", "proxyrunner", "registry-api"):
        root = mounts[name]
        assert _is_executable(root, "/usr/local/bin/python3.11")
        site = _resolve(root, "/opt/moorage/lib/python3.11/site-packages")
        assert (site / "moorage_core").is_dir()
        # Bytecode was compiled at build time: the root filesystem is read-only at run time.
        assert list((site / "moorage_core").glob("__pycache__/*.pyc"))
        # The build context's sources do not reach the runtime image.
        assert not (root / "src").exists()
    assert "PATH=/opt/moorage/bin:" in " ".join(_config(images["webhook"].image_id)["Env"])


def test_moorage_images_hold_the_sources_they_were_built_from(
    builds: Builds, mounts: dict[str, Path]
) -> None:
    """Every module of the project in the image is the repository's file, byte for byte.

    A stale wheel from the build's cache (uv keys local projects by pyproject.toml only) once
    shipped last week's operator in a fresh image; this is what would have caught it.
    """
    if builds.sources_changed:
        pytest.skip("Moorage's sources changed while the images were built")
    sources = {
        path.relative_to(src): path
        for src in sorted(REPO.glob("*/src"))
        for path in src.rglob("*.py")
    }
    assert sources
    for name in ("operator", "webhook", "proxyrunner", "registry-api"):
        site = _resolve(mounts[name], "/opt/moorage/lib/python3.11/site-packages")
        stale = [
            str(relative)
            for relative, path in sources.items()
            if not (site / relative).is_file()
            or (site / relative).read_bytes() != path.read_bytes()
        ]
        assert not stale, f"{name} holds other versions of {len(stale)} modules: {stale[:5]}"


def test_the_archive_is_one_image_named_for_containerd(built: dict[str, BuiltImage]) -> None:
    images = built
    for image in images.values():
        with tarfile.open(image.archive) as tar:
            handle = tar.extractfile("index.json")
            assert handle is not None
            index = json.load(handle)
            assert "oci-layout" in tar.getnames()
        (manifest,) = index["manifests"]
        assert manifest["annotations"][ANNOTATION_CONTAINERD_NAME] == image.reference
        assert manifest["digest"] == image.digest


def test_a_second_build_finds_everything_in_the_cache(builds: Builds) -> None:
    rebuilt = [i.name for i in builds.again.values() if not i.cached]
    started = time.monotonic()
    examples = build_images(only=list(EXAMPLE_SERVERS))
    assert all(image.cached for image in examples.values())
    assert time.monotonic() - started < 15
    if builds.sources_changed:
        # Moorage's sources were edited during the first build: its four images are rebuilt, as
        # they must be; the examples still come from the cache.
        assert set(rebuilt) <= set(MOORAGE_TARGETS)
        return
    assert rebuilt == []
    assert {n: (i.archive, i.digest) for n, i in builds.again.items()} == {
        n: (i.archive, i.digest) for n, i in builds.first.items()
    }
    assert builds.again_seconds < 30
