"""The shape of the distribution: no module shadows the standard library, layout as documented."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SOURCE_ROOTS = [
    REPO / "crds" / "src",
    REPO / "core" / "src",
    REPO / "operator" / "src",
    REPO / "webhook" / "src",
    REPO / "proxyrunner" / "src",
    REPO / "registryserver" / "src",
    REPO / "dev" / "src",
]


def _module_names() -> list[tuple[str, Path]]:
    names: list[tuple[str, Path]] = []
    for root in SOURCE_ROOTS:
        for path in root.rglob("*.py"):
            stem = path.parent.name if path.name == "__init__.py" else path.stem
            if stem != "__main__":
                names.append((stem, path))
        for path in root.rglob("*"):
            if path.is_dir() and path.name != "__pycache__":
                names.append((path.name, path))
    return names


@pytest.mark.parametrize(("name", "path"), _module_names(), ids=lambda v: str(v))
def test_no_module_shadows_a_stdlib_module(name: str, path: Path) -> None:
    assert name not in sys.stdlib_module_names, f"{path} shadows the stdlib module {name!r}"


@pytest.mark.parametrize(
    "folder", ["crds", "core", "operator", "webhook", "proxyrunner", "registryserver", "dev"]
)
def test_component_folders_are_not_packages(folder: str) -> None:
    assert not (REPO / folder / "__init__.py").exists()
    assert (REPO / folder / "src").is_dir()


def test_the_operator_folder_cannot_be_imported_as_operator() -> None:
    import operator

    assert Path(operator.__file__ or "").parent != REPO
