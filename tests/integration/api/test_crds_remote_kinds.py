"""The CRDs of MCPRemoteProxy, MCPExternalAuthConfig and MCPGroup (and the MCPServer's new
references) in a real apiserver, without the webhook: defaults, columns, and the schema and CEL
rules rejecting with a message naming the field."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from test_crds import create_strict
from testkit.remotekinds import authconfig, group, remoteproxy

from moorage_core import errors
from moorage_core.kube import (
    MCPEXTERNALAUTHCONFIGS,
    MCPGROUPS,
    MCPREMOTEPROXIES,
    MCPSERVERS,
    KubeClient,
    ResourceKind,
)
from moorage_dev.cluster import ControlPlane

pytestmark = pytest.mark.integration

SECRET = {"name": "upstream", "key": "token"}
EXCHANGE = {"tokenUrl": "https://idp.example.com/token", "clientId": "moorage"}


def mcpserver(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "moorage.dev/v1alpha1",
        "kind": "MCPServer",
        "metadata": {"name": "time"},
        "spec": {"image": "ghcr.io/moorage-dev/mcp-server-time:2025.9.25", **spec},
    }


def headers(**lists: Any) -> dict[str, Any]:
    return remoteproxy(headerForward=lists)


REJECTED: list[Any] = [
    pytest.param(
        MCPREMOTEPROXIES,
        {**remoteproxy(), "spec": {}},
        "spec.remoteUrl",
        "Required value",
        id="rp-no-url",
    ),
    pytest.param(
        MCPREMOTEPROXIES,
        remoteproxy(remoteUrl="ftp://mcp.example.com/"),
        "spec.remoteUrl",
        "should match",
        id="rp-url-scheme",
    ),
    pytest.param(
        MCPREMOTEPROXIES,
        remoteproxy(transport="stdio"),
        "spec.transport",
        "Unsupported value",
        id="rp-transport",
    ),
    pytest.param(
        MCPREMOTEPROXIES,
        remoteproxy(name="d" * 47),
        "metadata.name",
        "must be at most 46 characters",
        id="rp-name-long",
    ),
    pytest.param(
        MCPREMOTEPROXIES,
        headers(addHeaders=[{"name": "authorization", "value": "x"}]),
        "spec.headerForward.addHeaders[0].name",
        "name is a header the proxy sets itself and cannot be configured",
        id="rp-reserved-header",
    ),
    pytest.param(
        MCPREMOTEPROXIES,
        headers(addHeadersFromSecret=[{"headerName": "Mcp-Session-Id", "valueSecretRef": SECRET}]),
        "spec.headerForward.addHeadersFromSecret[0].headerName",
        "headerName is a header the proxy sets itself",
        id="rp-reserved-secret-header",
    ),
    pytest.param(
        MCPREMOTEPROXIES,
        headers(
            addHeaders=[{"name": "X-Key", "value": "a"}],
            addHeadersFromSecret=[{"headerName": "x-key", "valueSecretRef": SECRET}],
        ),
        "spec.headerForward.addHeadersFromSecret",
        "a header name is given in both addHeaders and addHeadersFromSecret",
        id="rp-header-in-both-lists",
    ),
    pytest.param(
        MCPREMOTEPROXIES,
        headers(addHeaders=[{"name": "X-Key", "value": "a"}, {"name": "x-key", "value": "b"}]),
        "spec.headerForward.addHeaders",
        "addHeaders names must be unique without regard to case",
        id="rp-header-twice",
    ),
    pytest.param(
        MCPREMOTEPROXIES,
        headers(addHeaders=[{"name": "X-A", "value": "a\r\nX-B: b"}]),
        "spec.headerForward.addHeaders[0].value",
        "should match",
        id="rp-header-value-newline",
    ),
    pytest.param(
        MCPREMOTEPROXIES,
        remoteproxy(oidcConfig={"type": "inline"}),
        "spec.oidcConfig.inline",
        "inline is required when type is inline",
        id="rp-oidc",
    ),
    pytest.param(
        MCPEXTERNALAUTHCONFIGS,
        authconfig(type="bearerToken"),
        "spec.bearerToken",
        "bearerToken is required when type is bearerToken and not allowed otherwise",
        id="eac-bearer-missing",
    ),
    pytest.param(
        MCPEXTERNALAUTHCONFIGS,
        authconfig(type="unauthenticated", tokenExchange=EXCHANGE),
        "spec.tokenExchange",
        "tokenExchange is required when type is tokenExchange and not allowed otherwise",
        id="eac-member-for-unauthenticated",
    ),
    pytest.param(
        MCPEXTERNALAUTHCONFIGS,
        authconfig(
            type="headerInjection",
            headerInjection={"headerName": "X-Key", "valueSecretRef": SECRET},
            bearerToken={"secretRef": SECRET},
        ),
        "spec.bearerToken",
        "not allowed otherwise",
        id="eac-second-member",
    ),
    pytest.param(
        MCPEXTERNALAUTHCONFIGS,
        authconfig(
            type="headerInjection",
            headerInjection={"headerName": "Host", "valueSecretRef": SECRET},
        ),
        "spec.headerInjection.headerName",
        "headerName is a header the proxy sets itself",
        id="eac-reserved-header",
    ),
    pytest.param(
        MCPEXTERNALAUTHCONFIGS,
        authconfig(type="tokenExchange", tokenExchange={**EXCHANGE, "tokenUrl": "idp/token"}),
        "spec.tokenExchange.tokenUrl",
        "should match",
        id="eac-token-url",
    ),
    pytest.param(
        MCPEXTERNALAUTHCONFIGS,
        authconfig(type="bearerToken", bearerToken={"token": "s3cret"}),
        "spec.bearerToken.token",
        "unknown field",
        id="eac-inline-secret",
    ),
    pytest.param(
        MCPGROUPS,
        group(description="x" * 1025),
        "spec.description",
        "Too long",
        id="group-description",
    ),
    pytest.param(
        MCPSERVERS,
        mcpserver(externalAuthConfigRef={"name": "upstream"}),
        "spec.externalAuthConfigRef",
        "externalAuthConfigRef is only used with transport sse or streamable-http",
        id="server-stdio-auth",
    ),
]


@pytest.mark.parametrize(("kind", "body", "field", "expected"), REJECTED)
async def test_the_schema_rejects_with_a_message_naming_the_field(
    crds: list[str],
    kube: KubeClient,
    namespace: str,
    kind: ResourceKind,
    body: dict[str, Any],
    field: str,
    expected: str,
) -> None:
    with pytest.raises((errors.Invalid, errors.BadRequest)) as info:
        await create_strict(kube, kind, copy.deepcopy(body), namespace=namespace)
    message = info.value.message
    assert field in message, message
    assert expected in message, message


async def test_defaults_are_applied_by_the_apiserver(
    crds: list[str], kube: KubeClient, namespace: str
) -> None:
    proxy = await create_strict(kube, MCPREMOTEPROXIES, remoteproxy(), namespace=namespace)
    assert proxy["spec"] == {
        "remoteUrl": "https://mcp.example.com/mcp",
        "allowPrivateEndpoint": False,
        "transport": "streamable-http",
        "port": 8080,
        "audit": {"enabled": False},
        "replicas": 1,
        "sessionAffinity": "ClientIP",
        "trustProxyHeaders": False,
        "sessionStorage": {"type": "memory"},
    }
    config = await create_strict(
        kube,
        MCPEXTERNALAUTHCONFIGS,
        authconfig(type="tokenExchange", tokenExchange=EXCHANGE),
        namespace=namespace,
    )
    assert config["spec"]["tokenExchange"] == {
        **EXCHANGE,
        "clientAuthMethod": "client_secret_basic",
        "subjectTokenType": "urn:ietf:params:oauth:token-type:access_token",
    }


@pytest.mark.parametrize("transport", ["sse", "streamable-http"])
async def test_an_http_server_takes_an_auth_config_and_a_group(
    crds: list[str], kube: KubeClient, namespace: str, transport: str
) -> None:
    created = await create_strict(
        kube,
        MCPSERVERS,
        mcpserver(
            transport=transport,
            externalAuthConfigRef={"name": "upstream"},
            groupRef={"name": "team"},
        ),
        namespace=namespace,
    )
    assert created["spec"]["externalAuthConfigRef"] == {"name": "upstream"}
    assert created["spec"]["groupRef"] == {"name": "team"}


async def test_the_remote_check_is_written_through_the_status_subresource(
    crds: list[str], kube: KubeClient, namespace: str
) -> None:
    await create_strict(kube, MCPREMOTEPROXIES, remoteproxy(), namespace=namespace, dry_run=False)
    check = {
        "answered": True,
        "checkedAt": "2026-01-01T00:00:00Z",
        "protocolVersion": "2025-11-25",
        "serverName": "docs",
        "message": "initialize answered",
    }
    patched = await kube.patch(
        MCPREMOTEPROXIES,
        {"status": {"remoteCheck": check}},
        namespace=namespace,
        name="docs",
        subresource="status",
    )
    assert patched["status"]["remoteCheck"] == check


@pytest.mark.parametrize(
    ("resource", "columns"),
    [
        ("rp", ["NAME", "PHASE", "REMOTE", "URL", "URL", "READY", "AGE"]),
        ("mcpeac", ["NAME", "TYPE", "VALID", "AGE"]),
        ("mcpg", ["NAME", "MEMBERS", "PHASE", "AGE"]),
    ],
)
async def test_kubectl_get_shows_the_printer_columns(
    crds: list[str],
    kube: KubeClient,
    namespace: str,
    control_plane: ControlPlane,
    resource: str,
    columns: list[str],
) -> None:
    kind, body = {
        "rp": (MCPREMOTEPROXIES, remoteproxy()),
        "mcpeac": (MCPEXTERNALAUTHCONFIGS, authconfig(type="unauthenticated")),
        "mcpg": (MCPGROUPS, group()),
    }[resource]
    await create_strict(kube, kind, body, namespace=namespace, dry_run=False)
    out = control_plane.kubectl("get", resource, "-n", namespace).stdout.splitlines()
    assert out[0].split() == columns
    assert out[1].split()[0] == body["metadata"]["name"]
