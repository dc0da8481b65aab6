"""MCPToolConfig admission rules: colliding renames are rejected, confusing filters warned about."""

from __future__ import annotations

from typing import Any

import pytest
from webhook_samples import mcptoolconfig

from moorage_webhook.validation import validate_mcptoolconfig


def test_renames_filters_and_descriptions_that_fit_together_are_allowed() -> None:
    spec = {
        "toolsFilter": ["web_fetch", "now", "search"],
        "toolsOverride": {
            "fetch": {"name": "web_fetch", "description": "Fetch a URL"},
            "get_current_time": {"name": "now"},
            "search": {"description": "Search the index"},
        },
    }
    verdict = validate_mcptoolconfig(mcptoolconfig(spec), old=None)
    assert verdict.allowed
    assert verdict.warnings == ()


def test_two_tools_may_swap_names() -> None:
    spec = {"toolsOverride": {"a": {"name": "b"}, "b": {"name": "a"}}}
    assert validate_mcptoolconfig(mcptoolconfig(spec), old=None).allowed


@pytest.mark.parametrize(
    ("spec", "path", "fragment"),
    [
        pytest.param(
            {"toolsOverride": {"fetch": {"name": "get"}, "download": {"name": "get"}}},
            "spec.toolsOverride[fetch].name",
            '"get" is also the new name of tool "download"',
            id="two-renames-to-one-name",
        ),
        pytest.param(
            {"toolsOverride": {"fetch": {"name": "search"}, "search": {"description": "d"}}},
            "spec.toolsOverride[fetch].name",
            'collides with tool "search", which keeps its name',
            id="rename-onto-a-tool-that-stays",
        ),
        pytest.param(
            {"toolsOverride": {"fetch": {"name": "search"}, "search": {"name": "search"}}},
            "spec.toolsOverride[fetch].name",
            "which keeps its name",
            id="rename-onto-a-tool-renamed-to-itself",
        ),
        pytest.param(
            {"toolsOverride": {"fetch": {"name": "  "}}},
            "spec.toolsOverride[fetch].name",
            "must not be blank",
            id="blank-new-name",
        ),
        pytest.param(
            {"toolsOverride": {" ": {"description": "d"}}},
            "spec.toolsOverride[ ]",
            "must not be empty",
            id="blank-key",
        ),
        pytest.param(
            {"toolsFilter": ["a", " "]},
            "spec.toolsFilter[1]",
            "must not be blank",
            id="blank-filter-entry",
        ),
        pytest.param(
            {"toolsFilter": ["a", "a"]},
            "spec.toolsFilter",
            "tool names must be unique: a",
            id="duplicate-filter-entry",
        ),
        pytest.param(
            {"toolsOverride": {"fetch": {}}},
            "spec.toolsOverride.fetch",
            "sets name, description or both",
            id="empty-override",
        ),
        pytest.param(
            {"toolsOverride": {"fetch": {"name": ""}}},
            "spec.toolsOverride.fetch.name",
            "at least 1 character",
            id="empty-new-name",
        ),
        pytest.param(
            {"toolsOverride": {"fetch": {"title": "x"}}},
            "spec.toolsOverride.fetch.title",
            "unknown field",
            id="unknown-field",
        ),
    ],
)
def test_rejects_overrides_that_collide_or_say_nothing(
    spec: dict[str, Any], path: str, fragment: str
) -> None:
    verdict = validate_mcptoolconfig(mcptoolconfig(spec), old=None)
    errors = [str(e) for e in verdict.errors]
    assert any(e.startswith(f"{path}: ") and fragment in e for e in errors), errors


@pytest.mark.parametrize(
    ("spec", "path", "fragment"),
    [
        pytest.param(
            {"toolsFilter": ["fetch"], "toolsOverride": {"fetch": {"name": "web_fetch"}}},
            "spec.toolsFilter[0]",
            'tool "fetch" is renamed to "web_fetch"; the filter matches the names clients see',
            id="filter-lists-the-old-name",
        ),
        pytest.param(
            {"toolsFilter": ["other"], "toolsOverride": {"fetch": {"name": "web_fetch"}}},
            "spec.toolsOverride[fetch].name",
            "not in spec.toolsFilter, so the renamed tool is hidden",
            id="rename-hidden-by-filter",
        ),
        pytest.param(
            {"toolsOverride": {"fetch": {"name": "fetch"}}},
            "spec.toolsOverride[fetch].name",
            "the name it already has",
            id="rename-to-itself",
        ),
        pytest.param(
            {"toolsOverride": {"fetch": {"name": "web fetch!"}}},
            "spec.toolsOverride[fetch].name",
            "is not a portable MCP tool name",
            id="unportable-name",
        ),
    ],
)
def test_warns_when_a_filter_or_rename_hides_or_confuses(
    spec: dict[str, Any], path: str, fragment: str
) -> None:
    verdict = validate_mcptoolconfig(mcptoolconfig(spec), old=None)
    assert verdict.allowed, verdict.message()
    warnings = [str(w) for w in verdict.warnings]
    assert any(w.startswith(f"{path}: ") and fragment in w for w in warnings), warnings


def test_filtering_the_old_name_is_fine_when_another_tool_takes_it() -> None:
    spec = {
        "toolsFilter": ["a", "b"],
        "toolsOverride": {"a": {"name": "b"}, "b": {"name": "a"}},
    }
    verdict = validate_mcptoolconfig(mcptoolconfig(spec), old=None)
    assert verdict.allowed
    assert verdict.warnings == ()
