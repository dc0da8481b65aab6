"""The image cache: keys change with every input and only with them; the manifest survives a
round trip and shrugs off garbage; the context digest sees exactly what COPY takes."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from moorage_dev.imagecache import (
    CachedImage,
    ContextFile,
    compute_cache_key,
    digest_context,
    dump_manifest,
    is_fresh,
    load_manifest,
    parse_manifest,
    save_manifest,
)

BASE = {
    "dockerfile": "FROM x\nCOPY a /a\n",
    "target": "operator",
    "build_args": {"PYTHON_IMAGE": "localhost/p:1", "UV_IMAGE": "localhost/uv:1"},
    "base_ids": {"PYTHON_IMAGE": "aaa", "UV_IMAGE": "bbb"},
    "files": [ContextFile(path="a", digest="d1", mode=0o100644)],
}


def _key(**changes: object) -> str:
    return compute_cache_key(**{**BASE, **changes})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param({"dockerfile": "FROM x\nCOPY a /b\n"}, id="dockerfile"),
        pytest.param({"target": "webhook"}, id="target"),
        pytest.param(
            {"build_args": {"PYTHON_IMAGE": "localhost/p:2", "UV_IMAGE": "localhost/uv:1"}},
            id="build-arg",
        ),
        pytest.param({"base_ids": {"PYTHON_IMAGE": "ccc", "UV_IMAGE": "bbb"}}, id="base-image-id"),
        pytest.param(
            {"files": [ContextFile(path="a", digest="d2", mode=0o100644)]}, id="file-content"
        ),
        pytest.param(
            {"files": [ContextFile(path="a", digest="d1", mode=0o100755)]}, id="file-mode"
        ),
        pytest.param(
            {"files": [ContextFile(path="b", digest="d1", mode=0o100644)]}, id="file-name"
        ),
    ],
)
def test_the_key_changes_with_each_input(changes: dict[str, object]) -> None:
    assert _key(**changes) != _key()


def test_the_key_ignores_the_order_of_maps_and_files() -> None:
    files = [ContextFile("a", "1", 1), ContextFile("b", "2", 1)]
    assert _key(files=files) == _key(files=list(reversed(files)))
    assert _key(build_args=dict(reversed(list(BASE["build_args"].items())))) == _key()  # type: ignore[attr-defined]
    assert len(_key()) == 64


def _context(tmp_path: Path) -> Path:
    (tmp_path / "src" / "pkg" / "__pycache__").mkdir(parents=True)
    (tmp_path / "src" / "pkg" / "mod.py").write_text("x = 1\n")
    (tmp_path / "src" / "pkg" / "__pycache__" / "mod.cpython-311.pyc").write_bytes(b"\0")
    (tmp_path / "pyproject.toml").write_text("[project]\n")
    (tmp_path / "unused.txt").write_text("not copied\n")
    (tmp_path / ".dockerignore").write_text("**/__pycache__\n")
    return tmp_path


DOCKERFILE = "FROM x\nCOPY pyproject.toml ./\nCOPY src src\nCOPY --from=other /x /x\n"


def test_the_context_digest_covers_copied_files_minus_ignored_ones(tmp_path: Path) -> None:
    files = digest_context(_context(tmp_path), dockerfile_text=DOCKERFILE)
    assert [f.path for f in files] == ["pyproject.toml", "src/pkg/mod.py"]


def test_a_changed_or_added_copied_file_changes_the_digest_an_ignored_one_does_not(
    tmp_path: Path,
) -> None:
    context = _context(tmp_path)
    before = digest_context(context, dockerfile_text=DOCKERFILE)
    (context / "unused.txt").write_text("changed\n")
    (context / "src" / "pkg" / "__pycache__" / "other.pyc").write_bytes(b"\1")
    assert digest_context(context, dockerfile_text=DOCKERFILE) == before
    (context / "src" / "pkg" / "mod.py").write_text("x = 2\n")
    changed = digest_context(context, dockerfile_text=DOCKERFILE)
    assert changed != before
    (context / "src" / "pkg" / "new.py").write_text("")
    assert len(digest_context(context, dockerfile_text=DOCKERFILE)) == len(changed) + 1


def test_a_missing_copy_source_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no nowhere"):
        digest_context(tmp_path, dockerfile_text="FROM x\nCOPY nowhere /x\n")


ENTRY = CachedImage(
    reference="ghcr.io/moorage/moorage-operator:0.1.0",
    key="k" * 64,
    archive="/cache/images/archives/operator-kkkk.oci.tar",
    digest="sha256:" + "a" * 64,
    image_id="b" * 64,
)


def test_the_manifest_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "images" / "manifest.json"
    save_manifest(path, {ENTRY.reference: ENTRY})
    assert load_manifest(path) == {ENTRY.reference: ENTRY}
    assert parse_manifest(dump_manifest({ENTRY.reference: ENTRY})) == {ENTRY.reference: ENTRY}


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("not json", id="not-json"),
        pytest.param('{"version": 0, "images": {}}', id="older-version"),
        pytest.param("[]", id="not-an-object"),
    ],
)
def test_an_unreadable_manifest_is_an_empty_cache(text: str) -> None:
    assert parse_manifest(text) == {}


def test_a_malformed_entry_is_dropped_and_the_others_kept() -> None:
    text = dump_manifest({ENTRY.reference: ENTRY}).replace(
        '"images": {', '"images": {"bad": {"key": 1},', 1
    )
    assert parse_manifest(text) == {ENTRY.reference: ENTRY}


def test_an_entry_is_fresh_only_for_its_key_with_its_archive_on_disk(tmp_path: Path) -> None:
    archive = tmp_path / "a.oci.tar"
    entry = replace(ENTRY, archive=str(archive))
    assert not is_fresh(entry, key=entry.key)
    archive.write_bytes(b"")
    assert is_fresh(entry, key=entry.key)
    assert not is_fresh(entry, key="other")
    assert not is_fresh(None, key=entry.key)


def test_the_main_images_key_covers_the_sources_and_never_bytecode() -> None:
    repo = Path(__file__).resolve().parents[3]
    files = digest_context(repo, dockerfile_text=(repo / "docker" / "Dockerfile").read_text())
    paths = [f.path for f in files]
    assert {"pyproject.toml", "uv.lock", "README.md"} <= set(paths)
    assert any(p.startswith("operator/src/moorage_operator/") for p in paths)
    assert not any("__pycache__" in p or p.endswith(".pyc") for p in paths)
    assert not any(p.startswith(("tests/", ".venv/", "docker/")) for p in paths)
