"""MCPRemoteProxy, MCPExternalAuthConfig, MCPGroup and the MCPServer's references to them: the
models accept what the design allows and reject everything else, naming the field; the CRDs carry
the same rules."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel
from testkit.rejections import assert_rejected_naming
from testkit.remotekinds import authconfig, group, remoteproxy

from moorage_api import (
    MCPExternalAuthConfig,
    MCPGroup,
    MCPGroupPhase,
    MCPRemoteProxy,
    MCPServer,
    MCPServerPhase,
    parse_mcpexternalauthconfig,
    parse_mcpgroup,
    parse_mcpremoteproxy,
    parse_mcpserver,
)
from moorage_api.crdgen import KINDS
from moorage_api.mcpremoteproxy import MCPRemoteProxyConditionType, RemoteAvailableReason
from moorage_api.naming import (
    mcpremoteproxy_labels,
    mcpremoteproxy_url,
    remote_proxy_name,
    remote_proxy_service_name,
    remote_runconfig_configmap_name,
)
from moorage_api.outgoing import TOKEN_TYPE_ACCESS_TOKEN
from moorage_api.structural import resource_schema, walk

IMAGE = "ghcr.io/moorage-dev/mcp-server-time:2025.9.25"
REMOTE = "https://mcp.example.com/mcp"
SECRET = {"name": "upstream", "key": "token"}
NEW_KINDS = ("MCPRemoteProxy", "MCPExternalAuthConfig", "MCPGroup")


def mcpserver(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "moorage.dev/v1alpha1",
        "kind": "MCPServer",
        "metadata": {"name": "time"},
        "spec": {"image": IMAGE, **spec},
    }


EXCHANGE = {"tokenUrl": "https://idp.example.com/token", "clientId": "moorage"}


def test_a_remote_proxy_gets_the_design_defaults() -> None:
    spec = parse_mcpremoteproxy(remoteproxy()).spec
    assert spec.transport == "streamable-http"
    assert spec.port == 8080
    assert spec.replicas == 1
    assert spec.allow_private_endpoint is False
    assert spec.session_affinity == "ClientIP"
    assert spec.audit.enabled is False
    assert spec.header_forward is None
    assert spec.external_auth_config_ref is None
    assert spec.group_ref is None


def test_a_remote_proxy_takes_every_design_field() -> None:
    body = remoteproxy(
        remoteUrl="http://10.0.0.5:9000/mcp",
        allowPrivateEndpoint=True,
        transport="sse",
        port=9090,
        oidcConfig={"type": "kubernetes"},
        authzConfig={"type": "configMap", "configMap": {"name": "authz"}},
        toolConfigRef={"name": "tools"},
        audit={"enabled": True},
        resources={"limits": {"cpu": "500m"}},
        podTemplateSpec={"spec": {"nodeSelector": {"pool": "proxies"}}},
        replicas=0,
        sessionAffinity="None",
        headerForward={
            "addHeaders": [{"name": "X-Tenant", "value": "blue"}],
            "addHeadersFromSecret": [{"headerName": "X-API-Key", "valueSecretRef": SECRET}],
        },
        externalAuthConfigRef={"name": "upstream"},
        groupRef={"name": "team"},
        trustProxyHeaders=True,
        endpointPrefix="/remote/docs",
        sessionStorage={"type": "redis", "redis": {"address": "redis:6379", "db": 0}},
        rateLimits={
            "perSubject": {"requestsPerMinute": 60, "burst": 5},
            "perTool": [],
            "whenUnavailable": "allow",
        },
    )
    proxy = parse_mcpremoteproxy(body)
    assert proxy.model_dump(mode="json", exclude_none=True)["spec"] == {
        **body["spec"],
        "oidcConfig": {"type": "kubernetes"},
        "authzConfig": {"type": "configMap", "configMap": {"name": "authz", "key": "authz.json"}},
        "resources": {"limits": {"cpu": "500m"}, "requests": {}},
    }


def test_remote_check_and_conditions_round_trip() -> None:
    body = remoteproxy()
    body["status"] = {
        "phase": "Running",
        "url": "http://mcp-docs-remote-proxy.team.svc.cluster.local:8080/mcp",
        "readyReplicas": 1,
        "observedGeneration": 2,
        "remoteCheck": {
            "answered": True,
            "checkedAt": "2026-01-01T00:00:00Z",
            "protocolVersion": "2025-11-25",
            "serverName": "docs",
            "message": "initialize answered",
        },
        "conditions": [
            {
                "type": "RemoteAvailable",
                "status": "True",
                "reason": "Answered",
                "message": "initialize answered",
                "lastTransitionTime": "2026-01-01T00:00:00Z",
            }
        ],
    }
    proxy = parse_mcpremoteproxy(body)
    assert proxy.status.phase is MCPServerPhase.RUNNING
    assert proxy.status.remote_check is not None
    assert proxy.status.remote_check.answered is True
    assert proxy.model_dump(mode="json", exclude_none=True)["status"] == body["status"]


def test_the_remote_condition_names_are_the_designed_ones() -> None:
    assert MCPRemoteProxyConditionType.READY == "Ready"
    assert MCPRemoteProxyConditionType.REMOTE_AVAILABLE == "RemoteAvailable"
    assert MCPRemoteProxyConditionType.GROUP_RESOLVED == "GroupResolved"
    assert [reason.value for reason in RemoteAvailableReason] == [
        "NotChecked",
        "Answered",
        "Unreachable",
    ]


def test_a_remote_proxys_children_do_not_collide_with_an_mcpservers() -> None:
    assert remote_proxy_name("docs") == "docs-remote-proxy"
    assert remote_proxy_service_name("docs") == "mcp-docs-remote-proxy"
    assert remote_runconfig_configmap_name("docs") == "docs-remote-runconfig"
    assert mcpremoteproxy_labels("docs") == {
        "app": "mcpremoteproxy",
        "app.kubernetes.io/name": "mcpremoteproxy",
        "app.kubernetes.io/instance": "docs",
        "app.kubernetes.io/managed-by": "moorage",
        "app.kubernetes.io/part-of": "moorage",
        "moorage.dev/mcpremoteproxy": "docs",
    }
    longest = "d" * 46
    assert len(remote_proxy_service_name(longest)) == 63
    parse_mcpremoteproxy(remoteproxy(name=longest))


@pytest.mark.parametrize(
    ("transport", "path"), [("streamable-http", "/mcp"), ("sse", "/sse")], ids=["http", "sse"]
)
def test_a_remote_proxys_url_is_its_service(transport: Any, path: str) -> None:
    assert (
        mcpremoteproxy_url("docs", namespace="team", port=8080, transport=transport)
        == f"http://mcp-docs-remote-proxy.team.svc.cluster.local:8080{path}"
    )


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"type": "unauthenticated"}, {"type": "unauthenticated"}),
        (
            {"type": "bearerToken", "bearerToken": {"secretRef": SECRET}},
            {"type": "bearerToken", "bearerToken": {"secretRef": SECRET}},
        ),
        (
            {
                "type": "headerInjection",
                "headerInjection": {"headerName": "X-API-Key", "valueSecretRef": SECRET},
            },
            {
                "type": "headerInjection",
                "headerInjection": {"headerName": "X-API-Key", "valueSecretRef": SECRET},
            },
        ),
        (
            {"type": "tokenExchange", "tokenExchange": EXCHANGE},
            {
                "type": "tokenExchange",
                "tokenExchange": {
                    **EXCHANGE,
                    "clientAuthMethod": "client_secret_basic",
                    "scopes": [],
                    "subjectTokenType": TOKEN_TYPE_ACCESS_TOKEN,
                },
            },
        ),
    ],
    ids=["unauthenticated", "bearer", "header", "exchange-defaults"],
)
def test_each_auth_type_takes_its_own_sub_object(
    spec: dict[str, Any], expected: dict[str, Any]
) -> None:
    config = parse_mcpexternalauthconfig(authconfig(**spec))
    assert config.model_dump(mode="json", exclude_none=True)["spec"] == expected


def test_an_auth_config_lists_its_referrers() -> None:
    body = authconfig(type="unauthenticated")
    body["status"] = {
        "observedGeneration": 1,
        "referencedBy": [
            {"kind": "MCPRemoteProxy", "name": "docs"},
            {"kind": "MCPServer", "name": "a"},
        ],
    }
    config = parse_mcpexternalauthconfig(body)
    assert [(r.kind, r.name) for r in config.status.referenced_by] == [
        ("MCPRemoteProxy", "docs"),
        ("MCPServer", "a"),
    ]


def test_a_group_needs_no_spec_and_counts_its_members() -> None:
    body = group()
    del body["spec"]
    body["status"] = {
        "phase": "Ready",
        "members": [
            {"kind": "MCPRemoteProxy", "name": "docs", "phase": "Running"},
            {"kind": "MCPServer", "name": "time", "phase": "Pending"},
        ],
        "serverCount": 1,
        "remoteProxyCount": 1,
        "memberCount": 2,
    }
    parsed = parse_mcpgroup(body)
    assert parsed.spec.description is None
    assert parsed.status.phase is MCPGroupPhase.READY
    assert parsed.model_dump(mode="json", exclude_none=True)["status"] == {
        **body["status"],
        "conditions": [],
    }


@pytest.mark.parametrize("transport", ["sse", "streamable-http"])
def test_an_http_mcpserver_takes_an_auth_config_and_a_group(transport: str) -> None:
    server = parse_mcpserver(
        mcpserver(
            transport=transport,
            externalAuthConfigRef={"name": "upstream"},
            groupRef={"name": "team"},
        )
    )
    assert server.spec.external_auth_config_ref is not None
    assert server.spec.external_auth_config_ref.name == "upstream"
    assert server.spec.group_ref is not None
    assert server.spec.group_ref.name == "team"


def test_a_stdio_mcpserver_joins_a_group() -> None:
    assert parse_mcpserver(mcpserver(groupRef={"name": "team"})).spec.group_ref is not None


def forward(**lists: Any) -> dict[str, Any]:
    return remoteproxy(headerForward=lists)


def header(name: str, value: str = "v") -> dict[str, str]:
    return {"name": name, "value": value}


def secret_header(name: str) -> dict[str, Any]:
    return {"headerName": name, "valueSecretRef": SECRET}


REJECTED: list[Any] = [
    # MCPRemoteProxy
    pytest.param(
        MCPRemoteProxy, remoteproxy(remoteUrl=None), "spec.remoteUrl", "string", id="rp-url-missing"
    ),
    pytest.param(
        MCPRemoteProxy,
        {**remoteproxy(), "spec": {}},
        "spec.remoteUrl",
        "required",
        id="rp-no-url",
    ),
    pytest.param(
        MCPRemoteProxy,
        remoteproxy(remoteUrl="ftp://mcp.example.com/"),
        "spec.remoteUrl",
        "pattern",
        id="rp-url-scheme",
    ),
    pytest.param(
        MCPRemoteProxy,
        remoteproxy(remoteUrl="https://user:pw@mcp.example.com/mcp"),
        "spec",
        "remoteUrl: 'https://user:pw@mcp.example.com/mcp' must not carry credentials",
        id="rp-url-credentials",
    ),
    pytest.param(
        MCPRemoteProxy,
        remoteproxy(remoteUrl="https://mcp.example.com/mcp#frag"),
        "spec",
        "remoteUrl: 'https://mcp.example.com/mcp#frag' must not have a fragment",
        id="rp-url-fragment",
    ),
    pytest.param(
        MCPRemoteProxy,
        remoteproxy(remoteUrl="http://127.0.0.1:9000/mcp"),
        "spec",
        "remoteUrl: 'http://127.0.0.1:9000/mcp' points at a private or loopback address",
        id="rp-url-loopback",
    ),
    pytest.param(
        MCPRemoteProxy,
        remoteproxy(remoteUrl="http://10.1.2.3/mcp"),
        "spec",
        "remoteUrl: 'http://10.1.2.3/mcp' points at a private",
        id="rp-url-private",
    ),
    pytest.param(
        MCPRemoteProxy,
        remoteproxy(remoteUrl="http://mcp.localhost/mcp"),
        "spec",
        "remoteUrl: 'http://mcp.localhost/mcp' points at a private",
        id="rp-url-localhost",
    ),
    pytest.param(
        MCPRemoteProxy,
        remoteproxy(transport="stdio"),
        "spec.transport",
        "'streamable-http'",
        id="rp-transport",
    ),
    pytest.param(MCPRemoteProxy, remoteproxy(port=0), "spec.port", "1", id="rp-port-0"),
    pytest.param(MCPRemoteProxy, remoteproxy(port=65536), "spec.port", "65535", id="rp-port"),
    pytest.param(MCPRemoteProxy, remoteproxy(replicas=-1), "spec.replicas", "0", id="rp-replicas"),
    pytest.param(
        MCPRemoteProxy,
        remoteproxy(sessionAffinity="Cookie"),
        "spec.sessionAffinity",
        "'ClientIP'",
        id="rp-affinity",
    ),
    pytest.param(
        MCPRemoteProxy,
        remoteproxy(endpointPrefix="no-slash"),
        "spec.endpointPrefix",
        "pattern",
        id="rp-prefix",
    ),
    pytest.param(
        MCPRemoteProxy,
        remoteproxy(oidcConfig={"type": "inline"}),
        "spec.oidcConfig",
        "inline: required",
        id="rp-oidc",
    ),
    pytest.param(
        MCPRemoteProxy,
        remoteproxy(authzConfig={"type": "inline"}),
        "spec.authzConfig",
        "inline: required",
        id="rp-authz",
    ),
    pytest.param(
        MCPRemoteProxy,
        remoteproxy(toolConfigRef={"name": "Bad_Name"}),
        "spec.toolConfigRef.name",
        "pattern",
        id="rp-toolconfig",
    ),
    pytest.param(
        MCPRemoteProxy,
        remoteproxy(externalAuthConfigRef={}),
        "spec.externalAuthConfigRef.name",
        "required",
        id="rp-authref",
    ),
    pytest.param(
        MCPRemoteProxy,
        remoteproxy(groupRef={"name": ""}),
        "spec.groupRef.name",
        "at least 1",
        id="rp-groupref",
    ),
    pytest.param(
        MCPRemoteProxy,
        remoteproxy(resources={"limits": {"cpu": "lots"}}),
        "spec.resources.limits.cpu",
        "not a quantity",
        id="rp-resources",
    ),
    pytest.param(
        MCPRemoteProxy, remoteproxy(image=IMAGE), "spec.image", "unknown field", id="rp-image"
    ),
    pytest.param(
        MCPRemoteProxy,
        remoteproxy(name="d" * 47),
        "metadata.name",
        "at most 46",
        id="rp-name-long",
    ),
    pytest.param(
        MCPRemoteProxy, remoteproxy(name="1docs"), "metadata.name", "letter", id="rp-name-digit"
    ),
    pytest.param(
        MCPRemoteProxy,
        forward(addHeaders=[header("Bad Name")]),
        "spec.headerForward.addHeaders[0].name",
        "pattern",
        id="hf-bad-name",
    ),
    pytest.param(
        MCPRemoteProxy,
        forward(addHeaders=[header("Authorization")]),
        "spec.headerForward.addHeaders[0].name",
        "MCPExternalAuthConfig",
        id="hf-authorization",
    ),
    pytest.param(
        MCPRemoteProxy,
        forward(addHeaders=[header("Mcp-Session-Id")]),
        "spec.headerForward.addHeaders[0].name",
        "set by the proxy",
        id="hf-session",
    ),
    pytest.param(
        MCPRemoteProxy,
        forward(addHeaders=[header("X-A", "a\r\nX-B: b")]),
        "spec.headerForward.addHeaders[0].value",
        "pattern",
        id="hf-value-newline",
    ),
    pytest.param(
        MCPRemoteProxy,
        forward(addHeadersFromSecret=[secret_header("Host")]),
        "spec.headerForward.addHeadersFromSecret[0].headerName",
        "set by the proxy",
        id="hf-secret-host",
    ),
    pytest.param(
        MCPRemoteProxy,
        forward(addHeadersFromSecret=[{"headerName": "X-Key"}]),
        "spec.headerForward.addHeadersFromSecret[0].valueSecretRef",
        "required",
        id="hf-secret-ref",
    ),
    pytest.param(
        MCPRemoteProxy,
        forward(addHeadersFromSecret=[{"headerName": "X-Key", "value": "inline"}]),
        "spec.headerForward.addHeadersFromSecret[0].value",
        "unknown field",
        id="hf-secret-inline-value",
    ),
    pytest.param(
        MCPRemoteProxy,
        forward(addHeaders=[header("X-Tenant"), header("x-tenant")]),
        "spec.headerForward",
        "x-tenant",
        id="hf-duplicate-case",
    ),
    pytest.param(
        MCPRemoteProxy,
        forward(addHeaders=[header("X-Key")], addHeadersFromSecret=[secret_header("x-key")]),
        "spec.headerForward",
        "across addHeaders and addHeadersFromSecret",
        id="hf-duplicate-across",
    ),
    pytest.param(
        MCPRemoteProxy,
        forward(addHeaders=[header(f"X-{i}") for i in range(65)]),
        "spec.headerForward.addHeaders",
        "at most 64",
        id="hf-too-many",
    ),
    # MCPExternalAuthConfig
    pytest.param(
        MCPExternalAuthConfig, authconfig(type="oauth"), "spec.type", "'bearerToken'", id="eac-type"
    ),
    pytest.param(
        MCPExternalAuthConfig,
        authconfig(type="bearerToken"),
        "spec",
        "bearerToken: required when type is bearerToken",
        id="eac-bearer-missing",
    ),
    pytest.param(
        MCPExternalAuthConfig,
        authconfig(type="headerInjection"),
        "spec",
        "headerInjection: required when type is headerInjection",
        id="eac-header-missing",
    ),
    pytest.param(
        MCPExternalAuthConfig,
        authconfig(type="tokenExchange"),
        "spec",
        "tokenExchange: required when type is tokenExchange",
        id="eac-exchange-missing",
    ),
    pytest.param(
        MCPExternalAuthConfig,
        authconfig(type="unauthenticated", bearerToken={"secretRef": SECRET}),
        "spec",
        "bearerToken: not allowed when type is unauthenticated",
        id="eac-unauthenticated-with-member",
    ),
    pytest.param(
        MCPExternalAuthConfig,
        authconfig(type="bearerToken", bearerToken={"secretRef": SECRET}, tokenExchange=EXCHANGE),
        "spec",
        "tokenExchange: not allowed when type is bearerToken",
        id="eac-two-members",
    ),
    pytest.param(
        MCPExternalAuthConfig,
        authconfig(type="bearerToken", bearerToken={"secretRef": {"name": "upstream"}}),
        "spec.bearerToken.secretRef.key",
        "required",
        id="eac-bearer-key",
    ),
    pytest.param(
        MCPExternalAuthConfig,
        authconfig(type="bearerToken", bearerToken={"token": "inline"}),
        "spec.bearerToken.token",
        "unknown field",
        id="eac-bearer-inline",
    ),
    pytest.param(
        MCPExternalAuthConfig,
        authconfig(
            type="headerInjection",
            headerInjection={"headerName": "Authorization", "valueSecretRef": SECRET},
        ),
        "spec.headerInjection.headerName",
        "set by the proxy",
        id="eac-header-reserved",
    ),
    pytest.param(
        MCPExternalAuthConfig,
        authconfig(
            type="headerInjection",
            headerInjection={"headerName": "X Key", "valueSecretRef": SECRET},
        ),
        "spec.headerInjection.headerName",
        "pattern",
        id="eac-header-pattern",
    ),
    pytest.param(
        MCPExternalAuthConfig,
        authconfig(type="headerInjection", headerInjection={"headerName": "X-Key"}),
        "spec.headerInjection.valueSecretRef",
        "required",
        id="eac-header-secret",
    ),
    pytest.param(
        MCPExternalAuthConfig,
        authconfig(type="tokenExchange", tokenExchange={**EXCHANGE, "tokenUrl": "ftp://idp/token"}),
        "spec.tokenExchange.tokenUrl",
        "pattern",
        id="eac-token-url-scheme",
    ),
    pytest.param(
        MCPExternalAuthConfig,
        authconfig(
            type="tokenExchange",
            tokenExchange={**EXCHANGE, "tokenUrl": "https://a:b@idp.example.com/token"},
        ),
        "spec.tokenExchange.tokenUrl",
        "credentials",
        id="eac-token-url-credentials",
    ),
    pytest.param(
        MCPExternalAuthConfig,
        authconfig(type="tokenExchange", tokenExchange={**EXCHANGE, "clientId": ""}),
        "spec.tokenExchange.clientId",
        "at least 1",
        id="eac-client-id",
    ),
    pytest.param(
        MCPExternalAuthConfig,
        authconfig(
            type="tokenExchange", tokenExchange={**EXCHANGE, "clientAuthMethod": "private_key_jwt"}
        ),
        "spec.tokenExchange.clientAuthMethod",
        "'client_secret_basic'",
        id="eac-auth-method",
    ),
    pytest.param(
        MCPExternalAuthConfig,
        authconfig(type="tokenExchange", tokenExchange={**EXCHANGE, "scopes": ["a", "a"]}),
        "spec.tokenExchange.scopes",
        "unique",
        id="eac-scopes",
    ),
    pytest.param(
        MCPExternalAuthConfig,
        authconfig(
            type="tokenExchange", tokenExchange={**EXCHANGE, "subjectTokenType": "access_token"}
        ),
        "spec.tokenExchange.subjectTokenType",
        "pattern",
        id="eac-subject-token-type",
    ),
    pytest.param(
        MCPExternalAuthConfig,
        authconfig(type="tokenExchange", tokenExchange={**EXCHANGE, "clientSecret": "s3cret"}),
        "spec.tokenExchange.clientSecret",
        "unknown field",
        id="eac-inline-client-secret",
    ),
    # MCPGroup
    pytest.param(MCPGroup, group(members=["a"]), "spec.members", "unknown field", id="g-members"),
    pytest.param(
        MCPGroup, group(description="x" * 1025), "spec.description", "1024", id="g-description"
    ),
    # MCPServer's new references
    pytest.param(
        MCPServer,
        mcpserver(externalAuthConfigRef={"name": "upstream"}),
        "spec",
        "externalAuthConfigRef: only used with transport sse or streamable-http",
        id="server-stdio-auth",
    ),
    pytest.param(
        MCPServer,
        mcpserver(transport="sse", externalAuthConfigRef={"name": "Upstream"}),
        "spec.externalAuthConfigRef.name",
        "pattern",
        id="server-auth-name",
    ),
    pytest.param(
        MCPServer,
        mcpserver(groupRef={"group": "team"}),
        "spec.groupRef.name",
        "required",
        id="server-group-name",
    ),
]


@pytest.mark.parametrize(("model", "body", "field", "expected"), REJECTED)
def test_invalid_input_is_rejected_naming_the_field(
    model: type[BaseModel], body: dict[str, Any], field: str, expected: str
) -> None:
    assert_rejected_naming(model, body, field, expected)


def schema_of(kind: str) -> dict[str, Any]:
    return resource_schema(next(d for d in KINDS if d.kind == kind).model)


@pytest.mark.parametrize("kind", NEW_KINDS)
def test_every_field_of_the_new_kinds_has_a_description(kind: str) -> None:
    for path, node in walk(schema_of(kind)):
        if path and not path.endswith(("[]", ".*")) and path != "metadata":
            assert node.get("description"), path


@pytest.mark.parametrize("kind", NEW_KINDS)
def test_only_the_proxy_pod_template_preserves_unknown_fields(kind: str) -> None:
    preserving = [
        p for p, n in walk(schema_of(kind)) if n.get("x-kubernetes-preserve-unknown-fields")
    ]
    assert preserving == (["spec.podTemplateSpec"] if kind == "MCPRemoteProxy" else [])


def test_the_keyed_lists_of_the_new_kinds() -> None:
    keyed = {
        f"{kind}.{p}": node.get("x-kubernetes-list-map-keys")
        for kind in NEW_KINDS
        for p, node in walk(schema_of(kind))
        if node.get("x-kubernetes-list-type")
    }
    assert keyed == {
        "MCPRemoteProxy.spec.headerForward.addHeaders": ["name"],
        "MCPRemoteProxy.spec.headerForward.addHeadersFromSecret": ["headerName"],
        "MCPRemoteProxy.spec.rateLimits.perTool": ["tool"],
        "MCPRemoteProxy.spec.sessionStorage.redis.sentinel.addresses": None,
        "MCPRemoteProxy.status.conditions": ["type"],
        "MCPExternalAuthConfig.spec.tokenExchange.scopes": None,
        "MCPExternalAuthConfig.status.conditions": ["type"],
        "MCPExternalAuthConfig.status.referencedBy": ["kind", "name"],
        "MCPGroup.status.members": ["kind", "name"],
        "MCPGroup.status.conditions": ["type"],
    }
    for kind in NEW_KINDS:
        for path, node in walk(schema_of(kind)):
            for key in node.get("x-kubernetes-list-map-keys", []):
                assert key in node["items"].get("required", []), path


def test_the_auth_config_cel_rules_require_exactly_the_typed_member() -> None:
    rules = {
        r["fieldPath"]: r["rule"]
        for r in schema_of("MCPExternalAuthConfig")["properties"]["spec"][
            "x-kubernetes-validations"
        ]
    }
    assert rules == {
        f".{member}": f"self.type == '{member}' ? has(self.{member}) : !has(self.{member})"
        for member in ("bearerToken", "headerInjection", "tokenExchange")
    }


def test_the_mcpserver_cel_rule_refuses_an_auth_config_for_stdio() -> None:
    rules = schema_of("MCPServer")["properties"]["spec"]["x-kubernetes-validations"]
    assert {
        "rule": "self.transport != 'stdio' || !has(self.externalAuthConfigRef)",
        "fieldPath": ".externalAuthConfigRef",
    }.items() <= next(r for r in rules if r.get("fieldPath") == ".externalAuthConfigRef").items()
