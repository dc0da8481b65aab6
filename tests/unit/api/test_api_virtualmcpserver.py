"""VirtualMCPServer: the model accepts what the design allows and rejects everything else, naming
the field; the CRD carries the same rules for the conflict map."""

from __future__ import annotations

from typing import Any

import pytest
from testkit.rejections import assert_rejected_naming

from moorage_api import VirtualMCPServer, parse_virtualmcpserver
from moorage_api.crdgen import KINDS
from moorage_api.naming import (
    virtualmcpserver_labels,
    virtualmcpserver_url,
    vmcp_name,
    vmcp_runconfig_configmap_name,
    vmcp_service_name,
)
from moorage_api.structural import resource_schema, walk


def vmcp(name: str = "team", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "moorage.dev/v1alpha1",
        "kind": "VirtualMCPServer",
        "metadata": {"name": name},
        "spec": {"groupRef": {"name": "tools"}, **spec},
    }


def manual(*entries: tuple[str, str, str]) -> dict[str, Any]:
    return {
        "strategy": "manual",
        "manual": [{"backend": b, "tool": t, "name": n} for b, t, n in entries],
    }


def test_a_virtual_server_gets_the_design_defaults() -> None:
    server = parse_virtualmcpserver(vmcp())
    spec = server.spec
    assert spec.group_ref.name == "tools"
    assert spec.conflict_resolution.strategy == "prefix"
    assert spec.conflict_resolution.effective_separator == "_"
    assert (spec.port, spec.replicas, spec.session_affinity) == (8080, 1, "ClientIP")
    assert spec.outgoing_auth.backends == {}
    assert spec.tool_configs == {}
    assert spec.incoming_auth.oidc_config is None
    assert spec.incoming_auth.authz_config is None


def test_a_virtual_server_takes_every_design_field() -> None:
    body = vmcp(
        incomingAuth={
            "oidcConfig": {"type": "kubernetes", "kubernetes": {"audience": "team"}},
            "authzConfig": {"type": "configMap", "configMap": {"name": "policies"}},
        },
        outgoingAuth={"backends": {"docs": {"externalAuthConfigRef": {"name": "upstream"}}}},
        toolConfigs={"time": {"name": "only-now"}},
        conflictResolution={"strategy": "prefix", "separator": "."},
        port=9090,
        replicas=2,
        resources={"limits": {"cpu": "1"}},
        podTemplateSpec={"spec": {"nodeSelector": {"pool": "mcp"}}},
        audit={"enabled": True},
        sessionAffinity="None",
        trustProxyHeaders=True,
        endpointPrefix="/team",
    )
    spec = parse_virtualmcpserver(body).spec
    assert spec.outgoing_auth.backends["docs"].external_auth_config_ref.name == "upstream"
    assert spec.tool_configs["time"].name == "only-now"
    assert spec.conflict_resolution.effective_separator == "."
    assert VirtualMCPServer.model_validate(body).model_dump(exclude_defaults=True)["spec"][
        "conflictResolution"
    ] == {"separator": "."}


@pytest.mark.parametrize(
    "resolution",
    [
        {"strategy": "priority", "priority": ["time", "docs"]},
        manual(("time", "now", "time_now"), ("docs", "now", "docs_now")),
        manual(("time", "now", "now"), ("docs", "now", "other_now")),
    ],
)
def test_each_strategy_takes_its_own_fields(resolution: dict[str, Any]) -> None:
    parsed = parse_virtualmcpserver(vmcp(conflictResolution=resolution))
    assert parsed.spec.conflict_resolution.strategy == resolution["strategy"]


REJECTED = [
    pytest.param(vmcp(groupRef=None), "spec.groupRef", "valid dictionary", id="group-null"),
    pytest.param({**vmcp(), "spec": {}}, "spec.groupRef", "required", id="group-missing"),
    pytest.param(
        vmcp(conflictResolution={"strategy": "priority", "separator": "-", "priority": ["a"]}),
        "spec.conflictResolution",
        "separator: allowed only with strategy prefix",
        id="separator-with-priority",
    ),
    pytest.param(
        vmcp(conflictResolution={"strategy": "priority"}),
        "spec.conflictResolution",
        "priority: required with strategy priority",
        id="priority-missing",
    ),
    pytest.param(
        vmcp(conflictResolution={"priority": ["a"]}),
        "spec.conflictResolution",
        "priority: not allowed with strategy prefix",
        id="priority-with-prefix",
    ),
    pytest.param(
        vmcp(conflictResolution={"strategy": "priority", "priority": ["a", "a"]}),
        "spec.conflictResolution",
        "priority: backends listed twice: a",
        id="priority-twice",
    ),
    pytest.param(
        vmcp(conflictResolution={"strategy": "manual"}),
        "spec.conflictResolution",
        "manual: required with strategy manual",
        id="manual-missing",
    ),
    pytest.param(
        vmcp(conflictResolution={**manual(("a", "t", "x")), "strategy": "prefix"}),
        "spec.conflictResolution",
        "manual: not allowed with strategy prefix",
        id="manual-with-prefix",
    ),
    pytest.param(
        vmcp(conflictResolution=manual(("a", "t", "x"), ("a", "t", "y"))),
        "spec.conflictResolution",
        "manual: (backend, tool) given twice: a/t",
        id="manual-pair-twice",
    ),
    pytest.param(
        vmcp(conflictResolution=manual(("a", "t", "x"), ("b", "t", "x"))),
        "spec.conflictResolution",
        "manual: names must be unique: x",
        id="manual-name-twice",
    ),
    pytest.param(
        vmcp(conflictResolution=manual(("a", "t", "two words"))),
        "spec.conflictResolution.manual[0].name",
        "pattern",
        id="manual-name-invalid",
    ),
    pytest.param(
        vmcp(conflictResolution=manual(("a", "t", "x" * 129))),
        "spec.conflictResolution.manual[0].name",
        "128",
        id="manual-name-long",
    ),
    pytest.param(
        vmcp(conflictResolution=manual(("A", "t", "x"))),
        "spec.conflictResolution.manual[0].backend",
        "pattern",
        id="manual-backend-invalid",
    ),
    pytest.param(
        vmcp(conflictResolution={"strategy": "prefix", "separator": "x"}),
        "spec.conflictResolution.separator",
        "pattern",
        id="separator-invalid",
    ),
    pytest.param(
        vmcp(conflictResolution={"strategy": "first"}),
        "spec.conflictResolution.strategy",
        "prefix",
        id="strategy-unknown",
    ),
    pytest.param(
        vmcp(toolConfigs={"Time": {"name": "t"}}),
        "spec",
        "toolConfigs: 'Time' is not a backend (member) name",
        id="toolconfigs-key",
    ),
    pytest.param(
        vmcp(outgoingAuth={"backends": {"a_b": {"externalAuthConfigRef": {"name": "x"}}}}),
        "spec",
        "outgoingAuth.backends: 'a_b' is not a backend (member) name",
        id="outgoing-key",
    ),
    pytest.param(
        vmcp(outgoingAuth={"backends": {"a": {}}}),
        "spec.outgoingAuth.backends.a.externalAuthConfigRef",
        "required",
        id="outgoing-ref-missing",
    ),
    pytest.param(vmcp(replicas=-1), "spec.replicas", "0", id="replicas"),
    pytest.param(vmcp(oidcConfig={}), "spec.oidcConfig", "unknown field", id="oidc-not-top"),
    pytest.param(vmcp(name="x" * 55), "metadata.name", "54", id="name-long"),
]


@pytest.mark.parametrize(("body", "field", "expected"), REJECTED)
def test_invalid_input_is_rejected_naming_the_field(
    body: dict[str, Any], field: str, expected: str
) -> None:
    assert_rejected_naming(VirtualMCPServer, body, field, expected)


def schema() -> dict[str, Any]:
    return resource_schema(next(d for d in KINDS if d.kind == "VirtualMCPServer").model)


def test_every_field_has_a_description() -> None:
    for path, node in walk(schema()):
        if path and not path.endswith(("[]", ".*")) and path != "metadata":
            assert node.get("description"), path


def test_the_keyed_lists() -> None:
    keyed = {
        p: node.get("x-kubernetes-list-map-keys")
        for p, node in walk(schema())
        if node.get("x-kubernetes-list-type")
    }
    assert keyed == {
        "spec.conflictResolution.priority": None,
        "spec.conflictResolution.manual": ["backend", "tool"],
        "spec.rateLimits.perTool": ["tool"],
        "spec.sessionStorage.redis.sentinel.addresses": None,
        "status.discoveredBackends": ["name"],
        "status.backendHealth": ["name"],
        "status.unresolvedConflicts": ["name"],
        "status.conditions": ["type"],
    }


def test_the_conflict_map_cel_rules_name_their_fields() -> None:
    rules = schema()["properties"]["spec"]["properties"]["conflictResolution"][
        "x-kubernetes-validations"
    ]
    assert [r["fieldPath"] for r in rules] == [".separator", ".priority", ".manual", ".manual"]
    assert "self.manual.exists_one(o, o.name == m.name)" in rules[3]["rule"]


def test_the_backend_maps_check_their_keys_in_cel() -> None:
    spec = schema()["properties"]["spec"]["properties"]
    for node in (spec["toolConfigs"], spec["outgoingAuth"]["properties"]["backends"]):
        (rule,) = node["x-kubernetes-validations"]
        assert rule["rule"].startswith("self.all(k, k.size() <= 253 && k.matches(")


def test_the_children_are_named_apart_from_other_kinds() -> None:
    assert vmcp_name("team") == "team-vmcp"
    assert vmcp_service_name("team") == "mcp-team-vmcp"
    assert vmcp_runconfig_configmap_name("team") == "team-vmcp-runconfig"
    assert len(vmcp_service_name("x" * 54)) == 63
    labels = virtualmcpserver_labels("team")
    assert labels["app.kubernetes.io/name"] == "virtualmcpserver"
    assert labels["moorage.dev/virtualmcpserver"] == "team"
    assert (
        virtualmcpserver_url("team", namespace="ns", port=8080)
        == "http://mcp-team-vmcp.ns.svc.cluster.local:8080/mcp"
    )
