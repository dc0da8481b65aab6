"""An MCPToolConfig's status (`Valid`, `DeletionBlocked`, `configHash`) and its finalizer."""

from __future__ import annotations

from typing import Any

import pytest
from planning_fixtures import tool_config

from moorage_api.mcptoolconfig import MCPToolConfigSpec
from moorage_operator.planning.conditions import ConditionSpec, merge_conditions
from moorage_operator.planning.mcpservers.references import compute_config_hash
from moorage_operator.planning.mcptoolconfigs import (
    FinalizerAction,
    compute_toolconfig_status,
    describe_referrers,
    finalizer_action,
)

NOW = "2025-06-01T12:00:00Z"
FINALIZER = "moorage.dev/toolconfig-protection"


def config(*, deleting: bool = False, finalizer: bool = False, **spec: Any) -> dict[str, Any]:
    obj = tool_config(**spec)
    if deleting:
        obj["metadata"]["deletionTimestamp"] = NOW
    if finalizer:
        obj["metadata"]["finalizers"] = [FINALIZER]
    return obj


def condition(status: dict[str, Any], type_: str) -> dict[str, Any]:
    (found,) = [c for c in status["conditions"] if c["type"] == type_]
    return dict(found)


@pytest.mark.parametrize(
    ("obj", "referrers", "action"),
    [
        pytest.param(config(), [], FinalizerAction(add=True), id="new-gets-finalizer"),
        pytest.param(config(finalizer=True), ["a"], FinalizerAction(), id="kept-while-live"),
        pytest.param(config(finalizer=True), [], FinalizerAction(), id="kept-while-live-unused"),
        pytest.param(
            config(deleting=True, finalizer=True),
            ["a"],
            FinalizerAction(),
            id="deleting-referenced",
        ),
        pytest.param(
            config(deleting=True, finalizer=True),
            [],
            FinalizerAction(remove=True),
            id="deleting-unreferenced",
        ),
        pytest.param(config(deleting=True), [], FinalizerAction(), id="deleting-without-ours"),
    ],
)
def test_finalizer_action(
    obj: dict[str, Any], referrers: list[str], action: FinalizerAction
) -> None:
    assert finalizer_action(obj, referrers=referrers) == action


def test_valid_config_reports_its_hash() -> None:
    obj = config(toolsFilter=["a"], toolsOverride={"b": {"name": "bee"}})
    status = compute_toolconfig_status(obj, referrers=[], previous={}, now=NOW)
    assert status["configHash"] == compute_config_hash(
        MCPToolConfigSpec.model_validate(obj["spec"])
    )
    assert status["observedGeneration"] == 1
    valid = condition(status, "Valid")
    assert (valid["status"], valid["reason"], valid["observedGeneration"]) == ("True", "Valid", 1)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        pytest.param(
            {"toolsOverride": {"a": {"name": "x"}, "b": {"name": "x"}}},
            'Invalid MCPToolConfig: spec.toolsOverride: several tools would be named "x"',
            id="two-renamed-alike",
        ),
        pytest.param(
            {"toolsOverride": {"a": {"name": "b"}, "b": {"description": "B"}}},
            'Invalid MCPToolConfig: spec.toolsOverride: several tools would be named "b"',
            id="renamed-onto-another",
        ),
        pytest.param(
            {"toolsOverride": {"a": {}}},
            "Invalid MCPToolConfig: spec.toolsOverride.a: a tool override sets name, description or both",
            id="empty-override",
        ),
        pytest.param(
            {"toolsFilter": ["a", "a"]},
            "Invalid MCPToolConfig: spec.toolsFilter: tool names must be unique: a",
            id="duplicate-filter",
        ),
    ],
)
def test_invalid_config_has_no_hash_and_says_why(spec: dict[str, Any], message: str) -> None:
    status = compute_toolconfig_status(config(**spec), referrers=[], previous={}, now=NOW)
    assert "configHash" not in status
    valid = condition(status, "Valid")
    assert (valid["status"], valid["reason"], valid["message"]) == ("False", "Invalid", message)


@pytest.mark.parametrize(
    ("deleting", "referrers", "expected"),
    [
        pytest.param(
            False,
            [],
            ("False", "NotReferenced", "No MCPServer references this MCPToolConfig"),
            id="unused",
        ),
        pytest.param(
            False, ["b", "a"], ("False", "NotDeleting", "Referenced by MCPServers a, b"), id="used"
        ),
        pytest.param(
            True,
            ["b", "a"],
            (
                "True",
                "ReferencedByMCPServers",
                "Deletion is blocked: referenced by MCPServers a, b",
            ),
            id="blocked",
        ),
        pytest.param(
            True,
            [],
            ("False", "NotReferenced", "No MCPServer references this MCPToolConfig"),
            id="deleting-unused",
        ),
    ],
)
def test_deletion_blocked_lists_the_referrers(
    deleting: bool, referrers: list[str], expected: tuple[str, str, str]
) -> None:
    status = compute_toolconfig_status(
        config(deleting=deleting), referrers=referrers, previous={}, now=NOW
    )
    blocked = condition(status, "DeletionBlocked")
    assert (blocked["status"], blocked["reason"], blocked["message"]) == expected


def test_long_referrer_lists_are_cut_short() -> None:
    names = [f"s{i:02d}" for i in range(25)]
    assert describe_referrers(names).endswith("s19 and 5 more")


def test_merge_conditions_keeps_time_until_status_changes() -> None:
    first = merge_conditions(
        [], [ConditionSpec("Valid", "True", "Valid", "ok")], generation=1, now="t1"
    )
    second = merge_conditions(
        first, [ConditionSpec("Valid", "True", "Valid", "still ok")], generation=2, now="t2"
    )
    third = merge_conditions(
        second, [ConditionSpec("Valid", "False", "Invalid", "bad")], generation=3, now="t3"
    )
    assert [c["lastTransitionTime"] for c in (first[0], second[0], third[0])] == ["t1", "t1", "t3"]
    assert second[0]["observedGeneration"] == 2
    assert second[0]["message"] == "still ok"
