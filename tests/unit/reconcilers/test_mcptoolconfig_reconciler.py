"""The MCPToolConfig reconciler against a fake kube client: the protection finalizer, the fresh
list behind a release, and the answers of the apiserver it must live with."""

from __future__ import annotations

import datetime
from typing import Any

import pytest
from reconciler_fakes import NAMESPACE, RecordingKube, cache, merged_status, with_status

from moorage_api.constants import FINALIZER_TOOLCONFIG_PROTECTION
from moorage_core.errors import Conflict, NotFound
from moorage_core.kube import MCPREMOTEPROXIES, MCPSERVERS, MCPTOOLCONFIGS, JsonObject
from moorage_operator.reconcilers.mcptoolconfigs import (
    TOOL_CONFIG_INDEX,
    MCPToolConfigReconciler,
    tool_config_index_values,
)
from moorage_operator.reconcilers.pending import PendingWrites
from moorage_operator.runtime.controller import Request, Result

NAME = "tools"
REQUEST = Request(NAMESPACE, NAME)


def tool_config(*, finalizers: list[str] | None = None, deleting: bool = False) -> JsonObject:
    meta: dict[str, Any] = {
        "name": NAME,
        "namespace": NAMESPACE,
        "uid": "tc-uid",
        "generation": 2,
        "resourceVersion": "41",
    }
    if finalizers is not None:
        meta["finalizers"] = finalizers
    if deleting:
        meta["deletionTimestamp"] = "2026-01-02T03:00:00Z"
    return {
        "apiVersion": "moorage.dev/v1alpha1",
        "kind": "MCPToolConfig",
        "metadata": meta,
        "spec": {"toolsFilter": ["get_current_time"]},
    }


def server(name: str) -> JsonObject:
    return {
        "apiVersion": "moorage.dev/v1alpha1",
        "kind": "MCPServer",
        "metadata": {"name": name, "namespace": NAMESPACE, "uid": f"{name}-uid"},
        "spec": {"image": "ghcr.io/example/mcp-time:1.2.0", "toolConfigRef": {"name": NAME}},
    }


def reconciler(
    kube: RecordingKube, obj: JsonObject, *, cached_servers: list[JsonObject] | None = None
) -> MCPToolConfigReconciler:
    servers = cache(MCPSERVERS)
    servers.add_index(TOOL_CONFIG_INDEX, tool_config_index_values)
    for srv in cached_servers or []:
        servers.upsert(srv)
    return MCPToolConfigReconciler(
        kube,
        tool_configs=cache(MCPTOOLCONFIGS, [obj]),
        servers=servers,
        pending=PendingWrites(),
        clock=lambda: datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.UTC),
    )


def finalizer_patches(kube: RecordingKube) -> list[Any]:
    return [
        c.body["metadata"]
        for c in kube.writes("patch", kind="MCPToolConfig")
        if c.subresource is None
    ]


def status_patches(kube: RecordingKube) -> list[Any]:
    return [
        c.body["status"]
        for c in kube.writes("patch", kind="MCPToolConfig")
        if c.subresource == "status"
    ]


def condition(status: dict[str, Any], type_: str) -> dict[str, Any]:
    (found,) = [c for c in status["conditions"] if c["type"] == type_]
    return found


@pytest.mark.parametrize(
    ("obj", "cached", "listed", "finalizers", "listed_fresh", "blocked"),
    [
        pytest.param(
            tool_config(),
            [],
            [],
            [[FINALIZER_TOOLCONFIG_PROTECTION]],
            False,
            "NotReferenced",
            id="a-new-config-gets-the-finalizer",
        ),
        pytest.param(
            tool_config(finalizers=["other.example/keep"]),
            [server("a")],
            [],
            [["other.example/keep", FINALIZER_TOOLCONFIG_PROTECTION]],
            False,
            "NotDeleting",
            id="someone-elses-finalizer-is-kept",
        ),
        pytest.param(
            tool_config(finalizers=[FINALIZER_TOOLCONFIG_PROTECTION], deleting=True),
            [server("a")],
            [],
            [],
            False,
            "ReferencedByMCPServers",
            id="deleting-with-a-cached-referrer-is-blocked-without-a-list",
        ),
        pytest.param(
            tool_config(finalizers=[FINALIZER_TOOLCONFIG_PROTECTION], deleting=True),
            [],
            [server("just-created")],
            [],
            True,
            "ReferencedByMCPServers",
            id="deleting-with-a-referrer-only-the-apiserver-knows-is-blocked",
        ),
        pytest.param(
            tool_config(finalizers=[FINALIZER_TOOLCONFIG_PROTECTION], deleting=True),
            [],
            [],
            [[]],
            True,
            None,
            id="deleting-with-no-referrer-is-released",
        ),
    ],
)
async def test_the_finalizer_and_the_status_follow_the_referrers(
    obj: JsonObject,
    cached: list[JsonObject],
    listed: list[JsonObject],
    finalizers: list[list[str]],
    listed_fresh: bool,
    blocked: str | None,
) -> None:
    kube = RecordingKube()
    kube.listed["MCPServer"] = listed

    assert await reconciler(kube, obj, cached_servers=cached).reconcile(REQUEST) == Result()

    assert [patch["finalizers"] for patch in finalizer_patches(kube)] == finalizers
    assert all(patch["resourceVersion"] == "41" for patch in finalizer_patches(kube))
    assert any(c.verb == "list" for c in kube.calls) is listed_fresh
    if blocked is None:
        assert status_patches(kube) == [], "a released config is going away: no status"
    else:
        (status,) = status_patches(kube)
        assert condition(status, "DeletionBlocked")["reason"] == blocked


async def test_a_conflicting_finalizer_write_is_raised_for_a_retry_and_writes_no_status() -> None:
    kube = RecordingKube()
    kube.fail("patch", "MCPToolConfig", Conflict("resourceVersion changed", status=409))

    with pytest.raises(Conflict):
        await reconciler(kube, tool_config()).reconcile(REQUEST)
    assert status_patches(kube) == []


async def test_a_config_deleted_before_its_finalizer_write_is_not_an_error() -> None:
    kube = RecordingKube()
    kube.fail("patch", "MCPToolConfig", NotFound("gone", status=404))
    kube.fail("patch", "MCPToolConfig", NotFound("gone", status=404), subresource="status")

    assert await reconciler(kube, tool_config()).reconcile(REQUEST) == Result()


async def test_a_config_whose_cached_copy_holds_its_status_costs_no_write() -> None:
    kube = RecordingKube()
    protected = tool_config(finalizers=[FINALIZER_TOOLCONFIG_PROTECTION])
    await reconciler(kube, protected).reconcile(REQUEST)
    stored = with_status(protected, merged_status({}, kube.writes("patch", kind="MCPToolConfig")))

    again = RecordingKube()
    assert await reconciler(again, stored).reconcile(REQUEST) == Result()
    assert again.writes() == []


async def test_a_remote_proxy_using_the_config_blocks_its_deletion_too() -> None:
    kube = RecordingKube()
    kube.listed["MCPRemoteProxy"] = [
        {
            "apiVersion": "moorage.dev/v1alpha1",
            "kind": "MCPRemoteProxy",
            "metadata": {"name": "docs", "namespace": NAMESPACE},
            "spec": {"remoteUrl": "https://mcp.example.com/mcp", "toolConfigRef": {"name": NAME}},
        }
    ]
    subject = reconciler(
        kube, tool_config(finalizers=[FINALIZER_TOOLCONFIG_PROTECTION], deleting=True)
    )
    subject.remote_proxies = cache(MCPREMOTEPROXIES)
    subject.remote_proxies.add_index(TOOL_CONFIG_INDEX, tool_config_index_values)

    assert await subject.reconcile(REQUEST) == Result()

    assert finalizer_patches(kube) == []
    (status,) = status_patches(kube)
    blocked = condition(status, "DeletionBlocked")
    assert (blocked["status"], blocked["reason"]) == ("True", "ReferencedByMCPServers")
    assert blocked["message"].endswith("MCPRemoteProxy docs")
