"""MCPRemoteProxy, MCPExternalAuthConfig and MCPGroup admission rules, and the MCPServer's new
references: every rejection and warning, with the field path it names."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from webhook_samples import POLICY, mcpexternalauthconfig, mcpgroup, mcpremoteproxy, mcpserver

from moorage_api.mcptenant import PodSecurityRule, PodTemplateAllowances
from moorage_webhook.validation import (
    Verdict,
    validate_mcpexternalauthconfig,
    validate_mcpgroup,
    validate_mcpremoteproxy,
    validate_mcpserver,
)

SECRET = {"name": "upstream", "key": "token"}
EXCHANGE = {
    "tokenUrl": "https://idp.example.com/token",
    "clientId": "moorage",
    "clientSecretRef": {"name": "idp", "key": "secret"},
}


def errors(verdict: Verdict) -> list[str]:
    return [str(e) for e in verdict.errors]


def warnings(verdict: Verdict) -> list[str]:
    return [str(w) for w in verdict.warnings]


def test_a_remote_proxy_using_every_field_well_is_allowed_without_warnings() -> None:
    spec = {
        "remoteUrl": "https://mcp.example.com/mcp",
        "transport": "sse",
        "port": 9090,
        "oidcConfig": {
            "type": "inline",
            "inline": {"issuer": "https://issuer.example.com", "audience": "mcp"},
        },
        "authzConfig": {"type": "inline", "inline": {"policies": [POLICY]}},
        "toolConfigRef": {"name": "tools"},
        "resources": {"limits": {"cpu": "1"}, "requests": {"cpu": "250m"}},
        "podTemplateSpec": {
            "metadata": {"labels": {"team": "a"}},
            "spec": {
                "serviceAccountName": "docs-remote-proxy",
                "containers": [{"name": "proxyrunner", "env": [{"name": "A", "value": "b"}]}],
                "volumes": [{"name": "headers", "secret": {"secretName": "upstream"}}],
                "nodeSelector": {"pool": "proxies"},
            },
        },
        "headerForward": {
            "addHeaders": [{"name": "X-Tenant", "value": "blue"}],
            "addHeadersFromSecret": [{"headerName": "X-API-Key", "valueSecretRef": SECRET}],
        },
        "externalAuthConfigRef": {"name": "upstream"},
        "groupRef": {"name": "team"},
        "endpointPrefix": "/remote/docs",
    }
    verdict = validate_mcpremoteproxy(mcpremoteproxy(spec), old=None)
    assert errors(verdict) == []
    assert warnings(verdict) == []


def forward(**lists: Any) -> dict[str, Any]:
    return {"headerForward": lists}


PRIVILEGED = {
    "spec": {"containers": [{"name": "proxyrunner", "securityContext": {"privileged": True}}]}
}

REMOTE_PROXY_ERRORS: list[Any] = [
    pytest.param(
        {"remoteUrl": "http://10.0.0.5/mcp"},
        "spec",
        "remoteUrl: 'http://10.0.0.5/mcp' points at a private or loopback address; set "
        "allowPrivateEndpoint",
        id="private-remote",
    ),
    pytest.param(
        {"remoteUrl": "https://u:p@mcp.example.com/"},
        "spec",
        "remoteUrl: 'https://u:p@mcp.example.com/' must not carry credentials",
        id="credentials-in-url",
    ),
    pytest.param(
        {"remoteUrl": "mcp.example.com"},
        "spec.remoteUrl",
        "not a valid URL",
        id="no-scheme",
    ),
    pytest.param({"transport": "stdio"}, "spec.transport", "Input should be", id="transport"),
    pytest.param({"replicas": -1}, "spec.replicas", "greater than or equal to 0", id="replicas"),
    pytest.param({"image": "x"}, "spec.image", "unknown field", id="unknown-field"),
    pytest.param(
        forward(addHeaders=[{"name": "X Tenant", "value": "a"}]),
        "spec.headerForward.addHeaders[0].name",
        '"X Tenant" is not an HTTP header name',
        id="header-name-syntax",
    ),
    pytest.param(
        forward(addHeaders=[{"name": "Authorization", "value": "Bearer x"}]),
        "spec.headerForward.addHeaders[0].name",
        "header 'Authorization' is set by the proxy itself and cannot be configured "
        "(credentials come from an MCPExternalAuthConfig)",
        id="header-authorization",
    ),
    pytest.param(
        forward(addHeaders=[{"name": "X-A", "value": "a\nb"}]),
        "spec.headerForward.addHeaders[0].value",
        "a header value must not contain a line break or NUL",
        id="header-value-newline",
    ),
    pytest.param(
        forward(addHeadersFromSecret=[{"headerName": "Host", "valueSecretRef": SECRET}]),
        "spec.headerForward.addHeadersFromSecret[0].headerName",
        "header 'Host' is set by the proxy itself",
        id="secret-header-reserved",
    ),
    pytest.param(
        forward(addHeadersFromSecret=[{"headerName": "X-Key", "valueSecretRef": {"name": "s"}}]),
        "spec.headerForward.addHeadersFromSecret[0].valueSecretRef.key",
        "required field is missing",
        id="secret-header-key",
    ),
    pytest.param(
        forward(
            addHeaders=[{"name": "X-Key", "value": "a"}],
            addHeadersFromSecret=[{"headerName": "x-key", "valueSecretRef": SECRET}],
        ),
        "spec.headerForward",
        "addHeaders: header names must be unique without regard to case across addHeaders and "
        "addHeadersFromSecret: x-key",
        id="header-twice",
    ),
    pytest.param(
        {
            "oidcConfig": {
                "type": "inline",
                "inline": {"issuer": "http://idp.example.com", "audience": "a"},
            }
        },
        "spec.oidcConfig.inline.issuer",
        "https",
        id="oidc-issuer-http",
    ),
    pytest.param(
        {"oidcConfig": {"type": "configMap"}},
        "spec.oidcConfig",
        "configMap: required when type is configMap",
        id="oidc-type-mismatch",
    ),
    pytest.param(
        {"authzConfig": {"type": "inline", "inline": {"policies": ["permit(principal"]}}},
        "spec.authzConfig.inline.policies[0]",
        "is not a valid Cedar policy",
        id="cedar-syntax",
    ),
    pytest.param(
        {"resources": {"limits": {"cpu": "1"}, "requests": {"cpu": "2"}}},
        "spec.resources.requests[cpu]",
        "request 2 must be less than or equal to the limit 1",
        id="requests-over-limits",
    ),
    pytest.param(
        {"resources": {"limits": {"gpu": "1"}}},
        "spec.resources.limits[gpu]",
        "is not a resource name",
        id="resource-name",
    ),
    pytest.param(
        {"podTemplateSpec": {"spec": {"containers": [{"name": "sidecar"}]}}},
        "spec.podTemplateSpec.spec.containers[0].image",
        'required: only container "proxyrunner" takes its image from the operator\'s proxy '
        "runner image",
        id="sidecar-without-image",
    ),
    pytest.param(
        {"podTemplateSpec": {"spec": {"restartPolicy": "Never"}}},
        "spec.podTemplateSpec.spec.restartPolicy",
        '"Never" is not allowed: the proxy runs in a Deployment, which only takes Always',
        id="restart-policy",
    ),
    pytest.param(
        {"podTemplateSpec": {"spec": {"containers": "proxyrunner"}}},
        "spec.podTemplateSpec.spec.containers",
        "list",
        id="template-shape",
    ),
    pytest.param(
        {"podTemplateSpec": PRIVILEGED},
        "spec.podTemplateSpec.spec.containers[0].securityContext.privileged",
        "must allow it (allow: [Privileged])",
        id="privileged",
    ),
    pytest.param(
        {"podTemplateSpec": {"spec": {"serviceAccountName": "admin"}}},
        "spec.podTemplateSpec.spec.serviceAccountName",
        "the pods run as ServiceAccount 'docs-remote-proxy', which Moorage creates; 'admin' is "
        "another",
        id="other-service-account",
    ),
    pytest.param(
        {"podTemplateSpec": {"spec": {"volumes": [{"name": "v", "secret": {"secretName": "db"}}]}}},
        "spec.podTemplateSpec.spec.volumes[0].secret.secretName",
        "secrets: [db]",
        id="undeclared-secret",
    ),
]


@pytest.mark.parametrize(("spec", "path", "expected"), REMOTE_PROXY_ERRORS)
def test_a_bad_remote_proxy_is_rejected_naming_the_field(
    spec: dict[str, Any], path: str, expected: str
) -> None:
    found = errors(validate_mcpremoteproxy(mcpremoteproxy(spec), old=None))
    assert any(e.startswith(f"{path}: ") and expected in e for e in found), found


def test_a_name_too_long_for_the_service_is_rejected() -> None:
    found = errors(validate_mcpremoteproxy(mcpremoteproxy(name="d" * 47), old=None))
    assert found == [
        "metadata.name: must be at most 46 characters",
    ]


REMOTE_PROXY_WARNINGS: list[Any] = [
    pytest.param(
        {"remoteUrl": "http://mcp.example.com/mcp"},
        "spec.remoteUrl",
        "plain http",
        id="plain-http",
    ),
    pytest.param(
        {"endpointPrefix": "/docs"},
        "spec.endpointPrefix",
        "only used in SSE endpoint URLs",
        id="prefix-without-sse",
    ),
    pytest.param(
        forward(addHeaders=[{"name": "X-API-Key", "value": "s3cret"}]),
        "spec.headerForward.addHeaders[0].value",
        'header "X-API-Key" looks like a credential',
        id="credential-in-configmap",
    ),
    pytest.param(
        {"podTemplateSpec": {"spec": {"containers": [{"name": "proxyrunner", "image": "x:1"}]}}},
        "spec.podTemplateSpec.spec.containers[0].image",
        'ignored: container "proxyrunner" always runs the operator\'s proxy runner image',
        id="proxyrunner-image",
    ),
]


@pytest.mark.parametrize(("spec", "path", "expected"), REMOTE_PROXY_WARNINGS)
def test_a_doubtful_remote_proxy_is_allowed_with_a_warning(
    spec: dict[str, Any], path: str, expected: str
) -> None:
    verdict = validate_mcpremoteproxy(mcpremoteproxy(spec), old=None)
    assert verdict.allowed, errors(verdict)
    assert any(w.startswith(f"{path}: ") and expected in w for w in warnings(verdict))


@pytest.mark.parametrize(
    ("change", "path", "expected"),
    [
        ({"transport": "sse"}, "spec.transport", "changing from streamable-http to sse"),
        ({"port": 9090}, "spec.port", "changing from 8080 to 9090"),
    ],
    ids=["transport", "port"],
)
def test_a_change_that_moves_the_endpoint_warns(
    change: dict[str, Any], path: str, expected: str
) -> None:
    verdict = validate_mcpremoteproxy(mcpremoteproxy(change), old=mcpremoteproxy())
    assert verdict.allowed
    assert any(w.startswith(f"{path}: {expected}") for w in warnings(verdict))


def test_a_secret_a_header_names_may_be_mounted_by_the_template() -> None:
    spec = {
        **forward(addHeadersFromSecret=[{"headerName": "X-Key", "valueSecretRef": SECRET}]),
        "podTemplateSpec": {
            "spec": {"volumes": [{"name": "v", "secret": {"secretName": "upstream"}}]}
        },
    }
    assert validate_mcpremoteproxy(mcpremoteproxy(spec), old=None).allowed


def test_an_allowance_of_the_namespace_lets_a_privileged_proxy_through() -> None:
    allowances = PodTemplateAllowances(allow=[PodSecurityRule.PRIVILEGED])
    body = mcpremoteproxy({"podTemplateSpec": PRIVILEGED})
    assert validate_mcpremoteproxy(body, old=None, allowances=allowances).allowed
    refused = validate_mcpremoteproxy(body, old=None, allowances=None)
    [error] = refused.errors
    assert "has not loaded the MCPTenants yet" in error.message


def test_an_update_that_leaves_the_spec_alone_is_not_judged_again() -> None:
    old = mcpremoteproxy({"podTemplateSpec": PRIVILEGED})
    new = copy.deepcopy(old)
    new["metadata"]["finalizers"] = ["example.com/hold"]
    assert validate_mcpremoteproxy(new, old=old).allowed


# -- MCPExternalAuthConfig ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "spec",
    [
        {"type": "unauthenticated"},
        {"type": "bearerToken", "bearerToken": {"secretRef": SECRET}},
        {
            "type": "headerInjection",
            "headerInjection": {"headerName": "X-API-Key", "valueSecretRef": SECRET},
        },
        {
            "type": "tokenExchange",
            "tokenExchange": {**EXCHANGE, "audience": "docs", "scopes": ["mcp:read", "openid"]},
        },
    ],
    ids=["unauthenticated", "bearer", "header", "exchange"],
)
def test_each_auth_type_is_allowed_without_warnings(spec: dict[str, Any]) -> None:
    verdict = validate_mcpexternalauthconfig(mcpexternalauthconfig(spec), old=None)
    assert errors(verdict) == []
    assert warnings(verdict) == []


AUTH_CONFIG_ERRORS: list[Any] = [
    pytest.param({"type": "oauth"}, "spec.type", "Input should be", id="type"),
    pytest.param(
        {"type": "bearerToken"},
        "spec",
        "bearerToken: required when type is bearerToken",
        id="bearer-missing",
    ),
    pytest.param(
        {"type": "headerInjection"},
        "spec",
        "headerInjection: required when type is headerInjection",
        id="header-missing",
    ),
    pytest.param(
        {"type": "tokenExchange"},
        "spec",
        "tokenExchange: required when type is tokenExchange",
        id="exchange-missing",
    ),
    pytest.param(
        {"type": "unauthenticated", "bearerToken": {"secretRef": SECRET}},
        "spec",
        "bearerToken: not allowed when type is unauthenticated",
        id="member-for-unauthenticated",
    ),
    pytest.param(
        {"type": "bearerToken", "bearerToken": {"secretRef": SECRET}, "tokenExchange": EXCHANGE},
        "spec",
        "tokenExchange: not allowed when type is bearerToken",
        id="second-member",
    ),
    pytest.param(
        {"type": "bearerToken", "bearerToken": {"token": "s3cret"}},
        "spec.bearerToken.token",
        "unknown field",
        id="inline-token",
    ),
    pytest.param(
        {"type": "bearerToken", "bearerToken": {"secretRef": {"name": "Bad_Name", "key": "k"}}},
        "spec.bearerToken.secretRef.name",
        "lowercase",
        id="secret-name",
    ),
    pytest.param(
        {
            "type": "headerInjection",
            "headerInjection": {"headerName": "Proxy-Authorization", "valueSecretRef": SECRET},
        },
        "spec.headerInjection.headerName",
        "header 'Proxy-Authorization' is set by the proxy itself",
        id="reserved-header",
    ),
    pytest.param(
        {
            "type": "headerInjection",
            "headerInjection": {"headerName": "X:Key", "valueSecretRef": SECRET},
        },
        "spec.headerInjection.headerName",
        "is not an HTTP header name",
        id="header-syntax",
    ),
    pytest.param(
        {"type": "tokenExchange", "tokenExchange": {**EXCHANGE, "tokenUrl": "idp/token"}},
        "spec.tokenExchange.tokenUrl",
        "not a valid URL",
        id="token-url",
    ),
    pytest.param(
        {
            "type": "tokenExchange",
            "tokenExchange": {**EXCHANGE, "tokenUrl": "https://idp.example.com/token#x"},
        },
        "spec.tokenExchange.tokenUrl",
        "must not have a fragment",
        id="token-url-fragment",
    ),
    pytest.param(
        {"type": "tokenExchange", "tokenExchange": {**EXCHANGE, "clientId": ""}},
        "spec.tokenExchange.clientId",
        "at least 1 character",
        id="client-id",
    ),
    pytest.param(
        {"type": "tokenExchange", "tokenExchange": {**EXCHANGE, "scopes": ["a b"]}},
        "spec.tokenExchange.scopes[0]",
        '"a b" is not an OAuth scope',
        id="scope-syntax",
    ),
    pytest.param(
        {"type": "tokenExchange", "tokenExchange": {**EXCHANGE, "scopes": ["a", "a"]}},
        "spec.tokenExchange.scopes",
        "scopes must be unique: a",
        id="scope-twice",
    ),
    pytest.param(
        {"type": "tokenExchange", "tokenExchange": {**EXCHANGE, "clientAuthMethod": "jwt"}},
        "spec.tokenExchange.clientAuthMethod",
        "Input should be",
        id="auth-method",
    ),
]


@pytest.mark.parametrize(("spec", "path", "expected"), AUTH_CONFIG_ERRORS)
def test_a_bad_auth_config_is_rejected_naming_the_field(
    spec: dict[str, Any], path: str, expected: str
) -> None:
    found = errors(validate_mcpexternalauthconfig(mcpexternalauthconfig(spec), old=None))
    assert any(e.startswith(f"{path}: ") and expected in e for e in found), found


@pytest.mark.parametrize(
    ("exchange", "path", "expected"),
    [
        ({"tokenUrl": "http://idp.example.com/token"}, "spec.tokenExchange.tokenUrl", "plain http"),
        (
            {"clientSecretRef": None, "clientAuthMethod": "client_secret_post"},
            "spec.tokenExchange.clientAuthMethod",
            "client_secret_post is ignored without clientSecretRef",
        ),
    ],
    ids=["http-token-url", "method-without-secret"],
)
def test_a_doubtful_token_exchange_is_allowed_with_a_warning(
    exchange: dict[str, Any], path: str, expected: str
) -> None:
    merged = {k: v for k, v in {**EXCHANGE, **exchange}.items() if v is not None}
    body = mcpexternalauthconfig({"type": "tokenExchange", "tokenExchange": merged})
    verdict = validate_mcpexternalauthconfig(body, old=None)
    assert verdict.allowed, errors(verdict)
    assert any(w.startswith(f"{path}: ") and expected in w for w in warnings(verdict))


def test_changing_the_auth_type_warns_about_the_referrers() -> None:
    old = mcpexternalauthconfig({"type": "unauthenticated"})
    new = mcpexternalauthconfig({"type": "bearerToken", "bearerToken": {"secretRef": SECRET}})
    verdict = validate_mcpexternalauthconfig(new, old=old)
    assert verdict.allowed
    assert warnings(verdict) == [
        "spec.type: changing from unauthenticated to bearerToken changes how every proxy "
        "referring to this config authenticates to its upstream"
    ]


# -- MCPGroup and the MCPServer's references ----------------------------------------------------


def test_a_group_with_a_description_is_allowed() -> None:
    assert validate_mcpgroup(mcpgroup({"description": "The docs team's servers"})).allowed
    assert validate_mcpgroup(mcpgroup()).allowed


@pytest.mark.parametrize(
    ("spec", "path", "expected"),
    [
        ({"description": "two\nlines"}, "spec.description", "one line of printable text"),
        ({"description": "x" * 1025}, "spec.description", "at most 1024 characters"),
        ({"members": ["a"]}, "spec.members", "unknown field"),
    ],
    ids=["newline", "too-long", "members"],
)
def test_a_bad_group_is_rejected_naming_the_field(
    spec: dict[str, Any], path: str, expected: str
) -> None:
    found = errors(validate_mcpgroup(mcpgroup(spec)))
    assert any(e.startswith(f"{path}: ") and expected in e for e in found), found


@pytest.mark.parametrize("transport", ["sse", "streamable-http"])
def test_an_http_server_may_use_an_auth_config_and_join_a_group(transport: str) -> None:
    spec = {
        "transport": transport,
        "externalAuthConfigRef": {"name": "upstream"},
        "groupRef": {"name": "team"},
    }
    assert errors(validate_mcpserver(mcpserver(spec), old=None)) == []


@pytest.mark.parametrize(
    ("spec", "path", "expected"),
    [
        (
            {"externalAuthConfigRef": {"name": "upstream"}},
            "spec",
            "externalAuthConfigRef: only used with transport sse or streamable-http",
        ),
        (
            {"transport": "sse", "externalAuthConfigRef": {"name": "Up"}},
            "spec.externalAuthConfigRef.name",
            "lowercase",
        ),
        ({"groupRef": {}}, "spec.groupRef.name", "required field is missing"),
    ],
    ids=["stdio-auth", "auth-name", "group-name"],
)
def test_the_servers_references_are_checked(spec: dict[str, Any], path: str, expected: str) -> None:
    found = errors(validate_mcpserver(mcpserver(spec), old=None))
    assert any(e.startswith(f"{path}: ") and expected in e for e in found), found
