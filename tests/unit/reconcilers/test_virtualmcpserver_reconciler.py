"""The VirtualMCPServer reconciler against a fake kube client, and the mappers that re-enqueue it:
children applied for the group's members, a missing group failing it, and members, groups and
referenced objects mapped to the virtual servers they concern."""

from __future__ import annotations

import json
from typing import Any

import pytest
from reconciler_fakes import NAMESPACE, RecordingKube, cache, recorder, stored_object

from moorage_core.kube import (
    CONFIGMAPS,
    MCPEXTERNALAUTHCONFIGS,
    MCPGROUPS,
    MCPREMOTEPROXIES,
    MCPSERVERS,
    MCPTOOLCONFIGS,
    PODS,
    VIRTUALMCPSERVERS,
    JsonObject,
)
from moorage_operator.planning.mcpgroups import group_index_values
from moorage_operator.reconcilers.mcpgroups import GROUP_INDEX
from moorage_operator.reconcilers.pending import PendingWrites
from moorage_operator.reconcilers.proxyowners import CHILD_KINDS
from moorage_operator.reconcilers.virtualmcpservers import (
    VirtualMCPServerReconciler,
    VirtualServerCaches,
)
from moorage_operator.runtime.cache import Cache
from moorage_operator.runtime.controller import Request, TerminalError
from moorage_operator.wiring.references import CONFIG_MAP_INDEX
from moorage_operator.wiring.virtualmcpservers import (
    incoming_index_values,
    servers_of_member,
    servers_of_namespace,
)


class Settings:
    proxyrunner_image = "registry.example/moorage/proxyrunner:1.0.0"
    cluster_domain = "cluster.local"


def hub(**spec: Any) -> JsonObject:
    return stored_object("VirtualMCPServer", "hub", spec={"groupRef": {"name": "tools"}, **spec})


def member(kind: str, name: str, group: str = "tools", **spec: Any) -> JsonObject:
    base = (
        {"image": "ghcr.io/example/time:1.0.0"}
        if kind == "MCPServer"
        else {"remoteUrl": "https://mcp.example.com/mcp"}
    )
    return stored_object(kind, name, spec={**base, "groupRef": {"name": group}, **spec})


def indexed(kind: Any, objects: list[JsonObject]) -> Cache:
    filled = cache(kind, objects)
    filled.add_index(GROUP_INDEX, group_index_values)
    return filled


def reconciler(
    kube: RecordingKube,
    *,
    servers: list[JsonObject],
    remotes: list[JsonObject],
    groups: list[JsonObject],
) -> VirtualMCPServerReconciler:
    virtual = indexed(VIRTUALMCPSERVERS, [hub()])
    return VirtualMCPServerReconciler(
        kube,  # type: ignore[arg-type]
        settings=Settings(),
        caches=VirtualServerCaches(
            virtual_servers=virtual,
            groups=cache(MCPGROUPS, groups),
            servers=indexed(MCPSERVERS, servers),
            remote_proxies=indexed(MCPREMOTEPROXIES, remotes),
            tool_configs=cache(MCPTOOLCONFIGS),
            external_auth_configs=cache(MCPEXTERNALAUTHCONFIGS),
            config_maps=cache(CONFIGMAPS),
            owned={kind: cache(kind) for kind in CHILD_KINDS.values()},
            pods=cache(PODS),
        ),
        recorder=recorder(kube),
        pending=PendingWrites(),
    )


GROUP = stored_object("MCPGroup", "tools", spec={})


async def test_the_groups_members_become_the_runconfig_backends() -> None:
    kube = RecordingKube()
    members = reconciler(
        kube,
        servers=[member("MCPServer", "time"), member("MCPServer", "elsewhere", group="other")],
        remotes=[member("MCPRemoteProxy", "docs")],
        groups=[GROUP],
    )
    await members.reconcile(Request(NAMESPACE, "hub"))
    applied = {(c.kind, c.name): c.body for c in kube.writes("apply")}
    assert set(applied) == {
        ("ServiceAccount", "hub-vmcp"),
        ("Role", "hub-vmcp"),
        ("RoleBinding", "hub-vmcp"),
        ("ConfigMap", "hub-vmcp-runconfig"),
        ("Deployment", "hub-vmcp"),
        ("Service", "mcp-hub-vmcp"),
    }
    runconfig = json.loads(applied[("ConfigMap", "hub-vmcp-runconfig")]["data"]["runconfig.json"])
    assert [b["name"] for b in runconfig["aggregate"]["backends"]] == ["docs", "time"]
    (status,) = [c.body["status"] for c in kube.writes("patch", kind="VirtualMCPServer")]
    assert status["backendCount"] == 2
    assert status["phase"] == "Pending"


async def test_a_missing_group_fails_the_virtual_server_and_applies_nothing() -> None:
    kube = RecordingKube()
    with pytest.raises(TerminalError, match='MCPGroup "tools" not found'):
        await reconciler(kube, servers=[], remotes=[], groups=[]).reconcile(
            Request(NAMESPACE, "hub")
        )
    assert kube.writes("apply") == []
    (status,) = [c.body["status"] for c in kube.writes("patch", kind="VirtualMCPServer")]
    assert status["phase"] == "Failed"


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        pytest.param(member("MCPServer", "time"), ["hub"], id="member-of-the-group"),
        pytest.param(member("MCPRemoteProxy", "docs", group="other"), [], id="other-group"),
        pytest.param(stored_object("MCPServer", "solo", spec={"image": "x"}), [], id="no-group"),
    ],
)
def test_a_member_maps_to_the_virtual_servers_of_its_group(
    obj: JsonObject, expected: list[str]
) -> None:
    mapper = servers_of_member(indexed(VIRTUALMCPSERVERS, [hub()]))
    assert [r.name for r in mapper(obj)] == expected


def test_referenced_objects_map_to_the_virtual_servers_that_use_them() -> None:
    oidc = {"type": "configMap", "configMap": {"name": "idp"}}
    virtual = cache(VIRTUALMCPSERVERS, [hub(incomingAuth={"oidcConfig": oidc})])
    virtual.add_index(CONFIG_MAP_INDEX, incoming_index_values)
    assert [
        o["metadata"]["name"] for o in virtual.by_index(CONFIG_MAP_INDEX, f"{NAMESPACE}/idp")
    ] == ["hub"]
    config = stored_object("MCPToolConfig", "any", spec={})
    assert [r.name for r in servers_of_namespace(virtual)(config)] == ["hub"]
    elsewhere = {**config, "metadata": {**config["metadata"], "namespace": "other"}}
    assert servers_of_namespace(virtual)(elsewhere) == []
