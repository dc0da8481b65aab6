"""Building Moorage's images and the example servers' images with no Docker daemon and no registry.

1. Check the tools (root, buildah, debootstrap; `scripts/images-deps.sh` installs what is
   missing with apt).
2. Make (or find) the local base images: Python from Debian packages and uv from its wheel
   (`baseimages`), cached by their recipe.
3. For each image of the catalogue (`imagecatalogue`), compute its content key (`imagecache`); when
   the manifest has an archive for that key, use it. Otherwise `buildah bud` the Dockerfile with
   the local bases as `PYTHON_IMAGE`/`UV_IMAGE` and write the image as an OCI archive named for
   containerd (`imagearchives`), then record it in the manifest. After a build, the layer cache no
   latest build uses is removed from buildah's storage (`layerpruning`).
4. `import_images` puts archives into the real node's containerd (`RealNode.import_image`),
   skipping those it already holds under the same name with the same digest.

Everything lives under `<cache root>/images/` (`~/.cache/moorage/images/`): `manifest.json`,
`archives/`, `logs/` (each build's full output) and scratch space. One builder at a time
(a file lock), so a test run and a person running the command do not build the same image twice.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from moorage_dev.baseimages import (
    host_apt_mirrors,
    host_extra_cas,
    make_python_base,
    make_uv_image,
    python_base_for,
    python_base_key,
    uv_reference,
    uv_version_for,
    wheel_platform,
)
from moorage_dev.binaries import cache_root
from moorage_dev.buildah import (
    Buildah,
    ImageError,
    Reporter,
    build_bud_argv,
)
from moorage_dev.cluster import ControlPlane
from moorage_dev.dockerfiles import global_arg_defaults
from moorage_dev.filelocks import directory_lock
from moorage_dev.imagearchives import write_archive
from moorage_dev.imagecache import (
    CachedImage,
    compute_cache_key,
    digest_context,
    is_fresh,
    load_manifest,
    save_manifest,
)
from moorage_dev.imagecatalogue import (
    MAIN_DOCKERFILE,
    MOORAGE_TARGETS,
    ImageSpec,
    load_catalogue,
    select,
)
from moorage_dev.layerpruning import prune_unused_layers
from moorage_dev.realnode import RealNodeError

__all__ = [
    "BuiltImage",
    "ImageError",
    "build_images",
    "images_dir",
    "import_images",
    "manifest_images",
]

REPO = Path(__file__).resolve().parents[3]
DEPS_SCRIPT = REPO / "scripts" / "images-deps.sh"
REQUIRED_TOOLS = ("buildah", "debootstrap")


@dataclass(frozen=True, slots=True)
class BuiltImage:
    """An image ready to import: its archive and the digest containerd will report for it."""

    name: str
    """Short name (`operator`, `mcp-server-time`)."""
    reference: str
    """Full name, e.g. `ghcr.io/moorage/moorage-operator:0.1.0`."""
    archive: Path
    """OCI archive holding this one image, named `reference` for containerd."""
    digest: str
    """`sha256:` digest of the image manifest."""
    image_id: str
    """Id in buildah's local storage."""
    cached: bool
    """True when this run built nothing for it."""


def images_dir() -> Path:
    return cache_root() / "images"


def _say_nothing(_message: str) -> None:
    return None


def missing_tools() -> list[str]:
    return [tool for tool in REQUIRED_TOOLS if shutil.which(tool) is None]


def ensure_image_tools(*, report: Reporter) -> Buildah:
    """buildah, ready to build as root; installs the Debian packages when they are missing."""
    if os.geteuid() != 0:
        raise ImageError(
            "building images needs root (buildah with chroot isolation, debootstrap): run as root"
        )
    missing = missing_tools()
    if missing:
        report(f"installing {', '.join(missing)} with {DEPS_SCRIPT.name}")
        proc = subprocess.run(
            ["bash", str(DEPS_SCRIPT)], capture_output=True, text=True, check=False
        )
        still = missing_tools()
        if proc.returncode != 0 or still:
            said = (proc.stderr or proc.stdout).strip().splitlines()
            raise ImageError(
                f"missing {', '.join(still or missing)} and {DEPS_SCRIPT.name} could not install "
                f"them{': ' + said[-1] if said else ''}"
            )
    return Buildah.find()


def build_archive_name(spec: ImageSpec, *, key: str) -> str:
    return f"{spec.name}-{key[:16]}.oci.tar"


@dataclass(frozen=True, slots=True)
class _Bases:
    build_args: dict[str, str]
    """Build argument → local base reference (`PYTHON_IMAGE`, `UV_IMAGE`)."""
    ids: dict[str, str]
    """Build argument → that image's id, part of every dependent image's key."""


def _fresh_base(buildah: Buildah, entry: CachedImage | None, *, key: str) -> bool:
    """Whether the base built for `key` is still in storage; its name is put back on it if
    another build (another cache folder) moved the name elsewhere."""
    if entry is None or entry.key != key or buildah.image_id(entry.image_id) != entry.image_id:
        return False
    if buildah.image_id(entry.reference) != entry.image_id:
        buildah.run(["tag", entry.image_id, entry.reference], what=f"tag {entry.reference}")
    return True


def _ensure_bases(
    buildah: Buildah, manifest: dict[str, CachedImage], *, repo: Path, report: Reporter
) -> _Bases:
    defaults = global_arg_defaults((repo / MAIN_DOCKERFILE).read_text())
    base = python_base_for(defaults["PYTHON_IMAGE"])
    uv_version = uv_version_for(defaults["UV_IMAGE"])
    work = images_dir() / "work"
    python_key = python_base_key(base=base, mirrors=host_apt_mirrors(), extra_cas=host_extra_cas())
    if not _fresh_base(buildah, manifest.get(base.reference), key=python_key):
        started = time.monotonic()
        image_id = make_python_base(
            buildah,
            base=base,
            work=work,
            log=images_dir() / "logs" / "python-base.log",
            report=report,
        )
        manifest[base.reference] = CachedImage(
            reference=base.reference, key=python_key, archive="", digest="", image_id=image_id
        )
        save_manifest(images_dir() / "manifest.json", manifest)
        report(f"{base.reference}: built in {time.monotonic() - started:.0f}s")
    uv_ref = uv_reference(uv_version)
    uv_key = f"uv-{uv_version}-{wheel_platform()}"
    if not _fresh_base(buildah, manifest.get(uv_ref), key=uv_key):
        image_id = make_uv_image(buildah, version=uv_version, work=work, report=report)
        manifest[uv_ref] = CachedImage(
            reference=uv_ref, key=uv_key, archive="", digest="", image_id=image_id
        )
        save_manifest(images_dir() / "manifest.json", manifest)
    return _Bases(
        build_args={"PYTHON_IMAGE": base.reference, "UV_IMAGE": uv_ref},
        ids={
            "PYTHON_IMAGE": manifest[base.reference].image_id,
            "UV_IMAGE": manifest[uv_ref].image_id,
        },
    )


def _restore(buildah: Buildah, entry: CachedImage) -> None:
    """Make local storage hold a cached image under its name again: another build (with another
    cache folder) may have moved the name, and pruning or `buildah rmi` may have removed it. The
    archive holds the image as built; loading it gives back the same id."""
    if buildah.image_id(entry.image_id) is None:
        buildah.run(
            ["pull", "--quiet", f"oci-archive:{entry.archive}"],
            what=f"loading {entry.reference} from {entry.archive}",
        )
    if buildah.image_id(entry.reference) != entry.image_id:
        buildah.run(["tag", entry.image_id, entry.reference], what=f"tag {entry.reference}")


def _build_one(
    buildah: Buildah,
    spec: ImageSpec,
    *,
    repo: Path,
    bases: _Bases,
    manifest: dict[str, CachedImage],
    report: Reporter,
) -> BuiltImage:
    dockerfile = repo / spec.dockerfile
    text = dockerfile.read_text()
    # Only the arguments the Dockerfile declares: buildah warns about the others.
    declared = global_arg_defaults(text)
    build_args = {k: v for k, v in bases.build_args.items() if k in declared}
    base_ids = {k: v for k, v in bases.ids.items() if k in declared}
    files = digest_context(repo / spec.context, dockerfile_text=text)
    key = compute_cache_key(
        dockerfile=text, target=spec.target, build_args=build_args, base_ids=base_ids, files=files
    )
    entry = manifest.get(spec.reference)
    if entry is not None and is_fresh(entry, key=key):
        _restore(buildah, entry)
        return BuiltImage(
            name=spec.name,
            reference=spec.reference,
            archive=Path(entry.archive),
            digest=entry.digest,
            image_id=entry.image_id,
            cached=True,
        )
    report(f"building {spec.reference} (log: {images_dir() / 'logs' / (spec.name + '.log')})")
    started = time.monotonic()
    buildah.build(
        build_bud_argv(
            dockerfile=dockerfile,
            context=repo / spec.context,
            reference=spec.reference,
            target=spec.target,
            build_args=build_args,
        ),
        what=f"building {spec.reference}",
        log=images_dir() / "logs" / f"{spec.name}.log",
        report=report,
    )
    image_id = buildah.image_id(spec.reference)
    if image_id is None:
        raise ImageError(f"{spec.reference} is not in local storage after its build")
    archives = images_dir() / "archives"
    archives.mkdir(parents=True, exist_ok=True)
    archive = archives / build_archive_name(spec, key=key)
    digest = write_archive(
        buildah, reference=spec.reference, archive=archive, work=images_dir() / "work"
    )
    if entry is not None and Path(entry.archive) != archive:
        Path(entry.archive).unlink(missing_ok=True)
    if entry is not None and entry.image_id != image_id:
        # The image this one replaces, now untagged; its layers shared with others stay.
        buildah.remove_image(entry.image_id)
    manifest[spec.reference] = CachedImage(
        reference=spec.reference, key=key, archive=str(archive), digest=digest, image_id=image_id
    )
    save_manifest(images_dir() / "manifest.json", manifest)
    report(f"{spec.reference}: built in {time.monotonic() - started:.0f}s")
    return BuiltImage(
        name=spec.name,
        reference=spec.reference,
        archive=archive,
        digest=digest,
        image_id=image_id,
        cached=False,
    )


def build_images(
    report: Reporter | None = None, *, only: list[str] | None = None, repo: Path = REPO
) -> dict[str, BuiltImage]:
    """Build (or find cached) every image, or those named in `only`; short name → image."""
    say = report or _say_nothing
    catalogue = load_catalogue(repo)
    try:
        wanted = select(catalogue, only)
    except ValueError as exc:
        raise ImageError(str(exc)) from exc
    buildah = ensure_image_tools(report=say)
    (images_dir() / "work").mkdir(parents=True, exist_ok=True)
    with directory_lock(images_dir()):
        manifest = load_manifest(images_dir() / "manifest.json")
        bases = _ensure_bases(buildah, manifest, repo=repo, report=say)
        built = {
            spec.name: _build_one(
                buildah, spec, repo=repo, bases=bases, manifest=manifest, report=say
            )
            for spec in wanted
        }
        if not all(image.cached for image in built.values()):
            removed = prune_unused_layers(buildah, logs_dir=images_dir() / "logs")
            if removed:
                say(f"removed {removed} stale layer-cache image(s) from buildah's storage")
        return built


def manifest_images(images: Mapping[str, BuiltImage]) -> dict[str, str]:
    """The names `deploy/` gives Moorage's images (without tag) → the built references.

    What a kustomize `images:` list needs to pin an install to these builds.
    """
    return {
        image.reference.rpartition(":")[0]: image.reference
        for image in images.values()
        if image.name in MOORAGE_TARGETS
    }


# ---- importing into the real node's containerd -----------------------------------------------


def parse_ctr_images(text: str) -> dict[str, str]:
    """`ctr images ls` output → reference → target digest."""
    found: dict[str, str] = {}
    for line in text.splitlines()[1:]:
        words = line.split()
        if len(words) >= 3 and re.fullmatch(r"sha256:[0-9a-f]{64}", words[2]):
            found[words[0]] = words[2]
    return found


def images_to_import(
    images: Mapping[str, BuiltImage], *, present: Mapping[str, str]
) -> list[BuiltImage]:
    """The images containerd does not already hold under their reference with their digest."""
    return [image for image in images.values() if present.get(image.reference) != image.digest]


class ContainerdNode(Protocol):
    """What importing needs of a node (`realnode.RealNode`)."""

    def ctr(
        self, *args: str, check: bool = True, timeout: float = 300.0
    ) -> subprocess.CompletedProcess[str]: ...

    def import_image(self, archive: Path) -> None: ...


def import_into(
    node: ContainerdNode, images: Mapping[str, BuiltImage], *, report: Reporter | None = None
) -> list[str]:
    """Import into the node's containerd what it lacks; the references imported."""
    say = report or _say_nothing
    try:
        present = parse_ctr_images(node.ctr("images", "ls").stdout)
        imported: list[str] = []
        for image in images_to_import(images, present=present):
            started = time.monotonic()
            node.import_image(image.archive)
            say(f"{image.reference}: imported in {time.monotonic() - started:.0f}s")
            imported.append(image.reference)
    except RealNodeError as exc:
        raise ImageError(str(exc)) from exc
    return imported


def import_images(
    plane: ControlPlane, images: Mapping[str, BuiltImage], *, report: Reporter | None = None
) -> list[str]:
    """Import the images into the real node of the running local cluster `plane`."""
    if plane.real_node is None:
        raise ImageError(
            "the local cluster has no real node to import images into: "
            "start it with `moorage-dev cluster up --real-node`"
        )
    return import_into(plane.real_node, images, report=report)
