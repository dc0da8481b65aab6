"""Name and tag globs: includes, excludes, and servers without tags."""

from __future__ import annotations

import pytest

from moorage_api.mcpregistry import GlobFilter, RegistryFilter
from moorage_operator.planning.mcpregistries.filtering import filter_document, is_selected, passes
from moorage_operator.planning.mcpregistries.formats import RegistryDocument, RegistryEntry


def entry(name: str, *tags: str) -> RegistryEntry:
    return RegistryEntry(name=name, description="d", tags=tags, body={"name": name})


@pytest.mark.parametrize(
    ("values", "include", "exclude", "expected"),
    [
        pytest.param(("time",), [], [], True, id="no-patterns"),
        pytest.param(("time",), ["ti*"], [], True, id="include-glob"),
        pytest.param(("time",), ["fetch"], [], False, id="include-misses"),
        pytest.param(("time",), [], ["t?me"], False, id="exclude-question-mark"),
        pytest.param(("time",), ["*"], ["time"], False, id="exclude-wins"),
        pytest.param(("Time",), ["time"], [], False, id="case-sensitive"),
        pytest.param(("a", "b"), ["b"], [], True, id="any-value-matches"),
        pytest.param(("a", "b"), [], ["b"], False, id="any-value-excluded"),
        pytest.param((), ["x"], [], False, id="no-values-fail-includes"),
        pytest.param((), [], ["x"], True, id="no-values-pass-excludes"),
        pytest.param(("v1",), ["v[0-9]"], [], True, id="character-class"),
    ],
)
def test_glob_filter(
    values: tuple[str, ...], include: list[str], exclude: list[str], expected: bool
) -> None:
    assert passes(values, GlobFilter(include=include, exclude=exclude)) is expected


def test_names_and_tags_must_both_pass() -> None:
    selection = RegistryFilter(
        names=GlobFilter(exclude=["*-deprecated"]),
        tags=GlobFilter(include=["time", "search"]),
    )
    assert is_selected(entry("clock", "time"), selection)
    assert not is_selected(entry("clock-deprecated", "time"), selection)
    assert not is_selected(entry("fetch", "web"), selection)
    assert not is_selected(entry("untagged"), selection)
    assert is_selected(entry("anything"), None)
    assert is_selected(entry("anything"), RegistryFilter())


def test_filter_document_keeps_order_and_document_fields() -> None:
    doc = RegistryDocument(
        format="toolhive",
        version="1.0.0",
        last_updated="t",
        entries=(entry("a", "x"), entry("b"), entry("c", "x")),
    )
    kept = filter_document(doc, RegistryFilter(tags=GlobFilter(include=["x"])))
    assert [e.name for e in kept.entries] == ["a", "c"]
    assert (kept.format, kept.version, kept.last_updated) == ("toolhive", "1.0.0", "t")
    assert filter_document(doc, None) is doc
