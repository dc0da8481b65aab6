"""An MCPGroup's members, counts, conditions and finalizer decisions."""

from __future__ import annotations

from typing import Any

import pytest

from moorage_operator.planning.finalizers import FinalizerAction
from moorage_operator.planning.mcpgroups import (
    FINALIZER_GROUP_MEMBERS,
    Member,
    compute_group_status,
    group_finalizer_action,
    group_index_values,
    group_name_of,
    members_of,
)

NOW = "2026-01-02T03:04:05Z"
EARLIER = "2025-12-01T00:00:00Z"


def group(*, finalizers: list[str] | None = None, deleting: bool = False) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": "team", "namespace": "ns", "generation": 4}
    if finalizers is not None:
        meta["finalizers"] = finalizers
    if deleting:
        meta["deletionTimestamp"] = NOW
    return {"apiVersion": "moorage.dev/v1alpha1", "kind": "MCPGroup", "metadata": meta}


def member(name: str, *, phase: str | None = None, group_ref: Any = "team") -> dict[str, Any]:
    obj: dict[str, Any] = {"metadata": {"name": name, "namespace": "ns"}, "spec": {}}
    if group_ref is not None:
        obj["spec"]["groupRef"] = group_ref if isinstance(group_ref, dict) else {"name": group_ref}
    if phase is not None:
        obj["status"] = {"phase": phase}
    return obj


@pytest.mark.parametrize(
    ("obj", "name"),
    [
        pytest.param(member("a"), "team", id="named"),
        pytest.param(member("a", group_ref=None), None, id="no-groupRef"),
        pytest.param(member("a", group_ref={"name": ""}), None, id="empty-name"),
        pytest.param(member("a", group_ref={}), None, id="no-name"),
        pytest.param({"spec": "garbage"}, None, id="malformed-spec"),
    ],
)
def test_the_group_a_member_names(obj: dict[str, Any], name: str | None) -> None:
    assert group_name_of(obj) == name
    assert group_index_values(obj) == ([f"ns/{name}"] if name else [])


def test_members_are_sorted_by_kind_then_name_with_their_phase() -> None:
    members = members_of(
        servers=[member("b", phase="Running"), member("a")],
        remote_proxies=[member("a", phase="Failed")],
    )
    assert members == [
        Member("MCPRemoteProxy", "a", "Failed"),
        Member("MCPServer", "a", None),
        Member("MCPServer", "b", "Running"),
    ]


@pytest.mark.parametrize(
    ("obj", "members", "action"),
    [
        pytest.param(group(), [], FinalizerAction(add=True), id="new-group-gets-it"),
        pytest.param(
            group(finalizers=["other/keep"]), [], FinalizerAction(add=True), id="beside-others"
        ),
        pytest.param(group(finalizers=[FINALIZER_GROUP_MEMBERS]), [], FinalizerAction(), id="kept"),
        pytest.param(
            group(finalizers=[FINALIZER_GROUP_MEMBERS], deleting=True),
            [Member("MCPServer", "a", "Running")],
            FinalizerAction(),
            id="deleting-with-members-is-blocked",
        ),
        pytest.param(
            group(finalizers=[FINALIZER_GROUP_MEMBERS], deleting=True),
            [],
            FinalizerAction(remove=True),
            id="deleting-without-members-is-released",
        ),
        pytest.param(group(deleting=True), [], FinalizerAction(), id="deleting-without-it"),
    ],
)
def test_the_finalizer_stays_while_members_remain(
    obj: dict[str, Any], members: list[Member], action: FinalizerAction
) -> None:
    assert group_finalizer_action(obj, members=members) == action


def conditions_by_type(status: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in status["conditions"]}


@pytest.mark.parametrize(
    ("members", "counts", "message"),
    [
        pytest.param([], (0, 0, 0), "The group has no members", id="empty"),
        pytest.param(
            [Member("MCPRemoteProxy", "r", "Running"), Member("MCPServer", "s", None)],
            (1, 1, 2),
            "The group has 1 MCPServer(s) and 1 MCPRemoteProxy(ies)",
            id="one-of-each",
        ),
    ],
)
def test_a_live_group_is_ready_and_counts_its_members(
    members: list[Member], counts: tuple[int, int, int], message: str
) -> None:
    status = compute_group_status(group(), members=members, previous={}, now=NOW)
    assert (status["serverCount"], status["remoteProxyCount"], status["memberCount"]) == counts
    assert status["phase"] == "Ready"
    assert status["observedGeneration"] == 4
    assert status["members"] == [
        {"kind": m.kind, "name": m.name, **({"phase": m.phase} if m.phase else {})} for m in members
    ]
    conditions = conditions_by_type(status)
    assert set(conditions) == {"Ready"}
    assert conditions["Ready"]["status"] == "True"
    assert conditions["Ready"]["message"] == message


def test_a_deleted_group_with_members_says_deletion_is_blocked_naming_them() -> None:
    members = [Member("MCPRemoteProxy", "r", "Running"), Member("MCPServer", "s", "Failed")]
    status = compute_group_status(group(deleting=True), members=members, previous={}, now=NOW)
    assert status["phase"] == "Terminating"
    conditions = conditions_by_type(status)
    assert conditions["Ready"]["status"] == "False"
    blocked = conditions["DeletionBlocked"]
    assert (blocked["status"], blocked["reason"]) == ("True", "HasMembers")
    assert blocked["message"].endswith("MCPRemoteProxy r, MCPServer s")


def test_an_unchanged_group_keeps_its_transition_times() -> None:
    members = [Member("MCPServer", "s", "Running")]
    first = compute_group_status(group(), members=members, previous={}, now=EARLIER)
    again = compute_group_status(group(), members=members, previous=first, now=NOW)
    assert again == first
