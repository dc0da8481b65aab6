"""The MCPGroup and MCPExternalAuthConfig reconcilers against a fake kube client: the members
finalizer, the fresh lists behind a release, referrers in the status, and no write when nothing
changed."""

from __future__ import annotations

import datetime
from typing import Any

import pytest
from reconciler_fakes import (
    NAMESPACE,
    RecordingKube,
    cache,
    merged_status,
    stored_object,
    with_status,
)

from moorage_core.kube import (
    MCPEXTERNALAUTHCONFIGS,
    MCPGROUPS,
    MCPREMOTEPROXIES,
    MCPSERVERS,
    JsonObject,
)
from moorage_operator.planning.mcpgroups import FINALIZER_GROUP_MEMBERS, group_index_values
from moorage_operator.reconcilers.mcpexternalauthconfigs import (
    EXTERNAL_AUTH_INDEX,
    MCPExternalAuthConfigReconciler,
)
from moorage_operator.reconcilers.mcpgroups import GROUP_INDEX, MCPGroupReconciler
from moorage_operator.reconcilers.pending import PendingWrites
from moorage_operator.runtime.controller import Request, Result
from moorage_operator.wiring.references import external_auth_index_values

NAME = "team"
REQUEST = Request(NAMESPACE, NAME)


def group(*, finalizers: list[str] | None = None, deleting: bool = False) -> JsonObject:
    return stored_object("MCPGroup", NAME, finalizers=finalizers, deleting=deleting)


def member(kind: str, name: str, *, group_name: str = NAME) -> JsonObject:
    return {
        "apiVersion": "moorage.dev/v1alpha1",
        "kind": kind,
        "metadata": {"name": name, "namespace": NAMESPACE, "uid": f"{name}-uid"},
        "spec": {"groupRef": {"name": group_name}},
        "status": {"phase": "Running"},
    }


def reconciler(
    kube: RecordingKube,
    obj: JsonObject,
    *,
    servers: tuple[JsonObject, ...] = (),
    proxies: tuple[JsonObject, ...] = (),
) -> MCPGroupReconciler:
    server_cache = cache(MCPSERVERS, servers)
    server_cache.add_index(GROUP_INDEX, group_index_values)
    proxy_cache = cache(MCPREMOTEPROXIES, proxies)
    proxy_cache.add_index(GROUP_INDEX, group_index_values)
    return MCPGroupReconciler(
        kube=kube,
        groups=cache(MCPGROUPS, [obj]),
        servers=server_cache,
        remote_proxies=proxy_cache,
        pending=PendingWrites(),
        clock=lambda: datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.UTC),
    )


def finalizer_patches(kube: RecordingKube) -> list[Any]:
    return [
        c.body["metadata"]["finalizers"]
        for c in kube.writes("patch", kind="MCPGroup")
        if c.subresource is None
    ]


def status_patches(kube: RecordingKube) -> list[Any]:
    return [c.body["status"] for c in kube.writes("patch", kind="MCPGroup") if c.subresource]


@pytest.mark.parametrize(
    ("obj", "cached", "listed", "finalizers", "members"),
    [
        pytest.param(group(), [], [], [[FINALIZER_GROUP_MEMBERS]], [], id="new-group"),
        pytest.param(
            group(finalizers=[FINALIZER_GROUP_MEMBERS], deleting=True),
            [member("MCPServer", "a"), member("MCPServer", "elsewhere", group_name="other")],
            [],
            [],
            ["a"],
            id="deleting-with-a-cached-member-is-blocked",
        ),
        pytest.param(
            group(finalizers=[FINALIZER_GROUP_MEMBERS], deleting=True),
            [],
            [member("MCPRemoteProxy", "new")],
            [],
            ["new"],
            id="deleting-with-a-member-only-the-apiserver-knows-is-blocked",
        ),
        pytest.param(
            group(finalizers=[FINALIZER_GROUP_MEMBERS], deleting=True),
            [],
            [member("MCPServer", "elsewhere", group_name="other")],
            [[]],
            None,
            id="deleting-without-members-is-released",
        ),
    ],
)
async def test_the_finalizer_and_the_status_follow_the_members(
    obj: JsonObject,
    cached: list[JsonObject],
    listed: list[JsonObject],
    finalizers: list[list[str]],
    members: list[str] | None,
) -> None:
    kube = RecordingKube()
    kube.listed["MCPServer"] = [m for m in listed if m["kind"] == "MCPServer"]
    kube.listed["MCPRemoteProxy"] = [m for m in listed if m["kind"] == "MCPRemoteProxy"]
    subject = reconciler(kube, obj, servers=tuple(cached))

    assert await subject.reconcile(REQUEST) == Result()

    assert finalizer_patches(kube) == finalizers
    if members is None:
        assert status_patches(kube) == [], "a released group is going away: no status"
        return
    (status,) = status_patches(kube)
    assert [m["name"] for m in status["members"]] == members
    if obj["metadata"].get("deletionTimestamp"):
        blocked = next(c for c in status["conditions"] if c["type"] == "DeletionBlocked")
        assert blocked["status"] == "True"


async def test_a_group_whose_cached_copy_holds_its_status_costs_no_write() -> None:
    protected = group(finalizers=[FINALIZER_GROUP_MEMBERS])
    members = (member("MCPServer", "a"),)
    kube = RecordingKube()
    await reconciler(kube, protected, servers=members).reconcile(REQUEST)
    stored = with_status(protected, merged_status({}, kube.writes("patch", kind="MCPGroup")))

    again = RecordingKube()
    assert await reconciler(again, stored, servers=members).reconcile(REQUEST) == Result()
    assert again.writes() == []


async def test_an_auth_config_lists_its_referrers_and_writes_nothing_when_they_stay() -> None:
    config = stored_object("MCPExternalAuthConfig", "up", spec={"type": "unauthenticated"})
    referrers = [member("MCPServer", "b"), member("MCPRemoteProxy", "a")]
    for referrer in referrers:
        referrer["spec"] = {"externalAuthConfigRef": {"name": "up"}}
    servers = cache(MCPSERVERS, referrers[:1])
    proxies = cache(MCPREMOTEPROXIES, referrers[1:])
    for indexed in (servers, proxies):
        indexed.add_index(EXTERNAL_AUTH_INDEX, external_auth_index_values)

    def subject(kube: RecordingKube, obj: JsonObject) -> MCPExternalAuthConfigReconciler:
        return MCPExternalAuthConfigReconciler(
            kube=kube,
            configs=cache(MCPEXTERNALAUTHCONFIGS, [obj]),
            servers=servers,
            remote_proxies=proxies,
            pending=PendingWrites(),
            clock=lambda: datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.UTC),
        )

    kube = RecordingKube()
    assert await subject(kube, config).reconcile(Request(NAMESPACE, "up")) == Result()
    (patch,) = [c.body["status"] for c in kube.writes("patch", kind="MCPExternalAuthConfig")]
    assert patch["referencedBy"] == [
        {"kind": "MCPRemoteProxy", "name": "a"},
        {"kind": "MCPServer", "name": "b"},
    ]

    again = RecordingKube()
    stored = with_status(config, merged_status({}, kube.writes("patch")))
    assert await subject(again, stored).reconcile(Request(NAMESPACE, "up")) == Result()
    assert again.writes() == []
