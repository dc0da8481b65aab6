"""The content cache of built images: keys, the digests of build-context files, the manifest.

An image's key is a hash of everything that decides its content: the Dockerfile's text, the
target, the build arguments, the ids of the base images it builds on and the bytes and modes of
the context files its `COPY`/`ADD` instructions take (after `.dockerignore`). Equal keys mean the
archive on disk is what a build would make, so nothing is built. (What a `RUN` step downloads is
pinned by the lock files, which are context files.)

The manifest (`manifest.json` in the cache folder) maps each image reference to its key, its OCI
archive and the archive's manifest digest; the same digest is what containerd reports once the
archive is imported, so an import can be skipped when the node already has it.

`compute_cache_key` and the manifest's (de)serialisation are pure; `digest_context` reads files.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from moorage_dev.dockerfiles import IgnoreRule, context_sources, is_ignored, parse_dockerignore

# Bump when the way images are built changes in a way the inputs below do not show.
RECIPE_VERSION = 1
MANIFEST_VERSION = 1


@dataclass(frozen=True, slots=True)
class ContextFile:
    path: str
    """Context-relative, '/'-separated."""
    digest: str
    """sha256 of the content (of the target for a symbolic link)."""
    mode: int
    """Permission bits and file type, as `COPY` keeps them."""


def compute_cache_key(
    *,
    dockerfile: str,
    target: str | None,
    build_args: Mapping[str, str],
    base_ids: Mapping[str, str],
    files: Sequence[ContextFile],
) -> str:
    """A hex sha256 over every input of one image build, independent of ordering in the maps."""
    document = {
        "recipe": RECIPE_VERSION,
        "dockerfile": dockerfile,
        "target": target,
        "build_args": dict(sorted(build_args.items())),
        "base_ids": dict(sorted(base_ids.items())),
        "files": sorted((f.path, f.digest, f.mode) for f in files),
    }
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def _walk(root: Path, relative: str) -> Iterator[str]:
    path = root / relative
    if path.is_symlink() or path.is_file():
        yield relative
        return
    if not path.is_dir():
        raise FileNotFoundError(f"build context has no {relative} (named by COPY/ADD)")
    for dirpath, dirnames, filenames in os.walk(path):
        dirnames.sort()
        base = Path(dirpath).relative_to(root).as_posix()
        for name in sorted(filenames):
            yield f"{base}/{name}" if base != "." else name


def _digest_file(path: Path, *, relative: str) -> ContextFile:
    info = path.lstat()
    hasher = hashlib.sha256()
    if stat.S_ISLNK(info.st_mode):
        hasher.update(os.readlink(path).encode())
    else:
        with path.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                hasher.update(chunk)
    return ContextFile(path=relative, digest=hasher.hexdigest(), mode=info.st_mode)


def digest_context(context: Path, *, dockerfile_text: str) -> list[ContextFile]:
    """The digest of every context file the Dockerfile's `COPY`/`ADD` take, sorted by path."""
    ignore_file = context / ".dockerignore"
    rules: list[IgnoreRule] = (
        parse_dockerignore(ignore_file.read_text()) if ignore_file.is_file() else []
    )
    seen: dict[str, ContextFile] = {}
    for source in context_sources(dockerfile_text):
        for relative in _walk(context, source):
            if relative in seen or is_ignored(relative, rules):
                continue
            seen[relative] = _digest_file(context / relative, relative=relative)
    return [seen[p] for p in sorted(seen)]


@dataclass(frozen=True, slots=True)
class CachedImage:
    """One manifest entry: what was built for a reference, and where it is."""

    reference: str
    key: str
    """The cache key it was built for (`compute_cache_key`)."""
    archive: str
    """Absolute path of the OCI archive (`oci-archive:` layout, one image)."""
    digest: str
    """`sha256:...` of the image manifest inside the archive."""
    image_id: str
    """The id of the image in the builder's local storage (its config digest)."""


def dump_manifest(entries: Mapping[str, CachedImage]) -> str:
    images = {ref: asdict(entry) for ref, entry in sorted(entries.items())}
    return json.dumps({"version": MANIFEST_VERSION, "images": images}, indent=2) + "\n"


def parse_manifest(text: str) -> dict[str, CachedImage]:
    """The entries of a manifest; an unreadable or older manifest is an empty cache."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return {}
    if not isinstance(data, dict) or data.get("version") != MANIFEST_VERSION:
        return {}
    entries: dict[str, CachedImage] = {}
    for reference, raw in data.get("images", {}).items():
        try:
            entries[reference] = CachedImage(**raw)
        except TypeError:
            continue
    return entries


def load_manifest(path: Path) -> dict[str, CachedImage]:
    return parse_manifest(path.read_text()) if path.is_file() else {}


def save_manifest(path: Path, entries: Mapping[str, CachedImage]) -> None:
    """Replace the manifest atomically, so a reader never sees half of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_suffix(".json.tmp")
    staging.write_text(dump_manifest(entries))
    staging.replace(path)


def is_fresh(entry: CachedImage | None, *, key: str) -> bool:
    """Whether `entry` was built for `key` and its archive is still on disk."""
    return entry is not None and entry.key == key and Path(entry.archive).is_file()
