"""The apiserver calls the webhook for MCPRemoteProxy, MCPExternalAuthConfig and MCPGroup (and the
MCPServer's new references): valid objects are admitted, bad ones rejected with our message naming
the field, warnings reach the client."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from testkit.remotekinds import authconfig, group, remoteproxy
from webhook_harness import Registration, mcpserver_body

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
EXCHANGE = {
    "tokenUrl": "https://idp.example.com/token",
    "clientId": "moorage",
    "clientSecretRef": {"name": "idp", "key": "secret"},
}


@pytest.mark.parametrize(
    ("kind", "body"),
    [
        pytest.param(
            MCPREMOTEPROXIES,
            remoteproxy(
                "docs",
                oidcConfig={"type": "kubernetes"},
                headerForward={
                    "addHeadersFromSecret": [{"headerName": "X-API-Key", "valueSecretRef": SECRET}]
                },
                externalAuthConfigRef={"name": "upstream"},
                groupRef={"name": "team"},
            ),
            id="remote-proxy",
        ),
        pytest.param(
            MCPEXTERNALAUTHCONFIGS,
            authconfig("upstream", type="tokenExchange", tokenExchange=EXCHANGE),
            id="auth-config",
        ),
        pytest.param(MCPGROUPS, group("team", description="The docs team"), id="group"),
        pytest.param(
            MCPSERVERS,
            mcpserver_body(
                "fetch",
                transport="streamable-http",
                externalAuthConfigRef={"name": "upstream"},
                groupRef={"name": "team"},
            ),
            id="server-references",
        ),
    ],
)
async def test_a_valid_object_of_each_new_kind_is_admitted(
    kube: KubeClient, registered_webhook: Registration, kind: ResourceKind, body: dict[str, Any]
) -> None:
    created = await kube.create(kind, body, namespace=registered_webhook.namespace)
    assert created["metadata"]["name"] == body["metadata"]["name"]


@pytest.mark.parametrize(
    ("kind", "body", "message"),
    [
        pytest.param(
            MCPREMOTEPROXIES,
            remoteproxy("internal", remoteUrl="http://10.0.0.5:9000/mcp"),
            'admission webhook "mcpremoteproxy.moorage.dev" denied the request: spec: remoteUrl: '
            "'http://10.0.0.5:9000/mcp' points at a private or loopback address; set "
            "allowPrivateEndpoint to reach it",
            id="private-remote",
        ),
        pytest.param(
            MCPREMOTEPROXIES,
            remoteproxy("sidecar", podTemplateSpec={"spec": {"containers": [{"name": "log"}]}}),
            'admission webhook "mcpremoteproxy.moorage.dev" denied the request: '
            "spec.podTemplateSpec.spec.containers[0].image: required: only container "
            '"proxyrunner" takes its image',
            id="sidecar-without-image",
        ),
        pytest.param(
            MCPREMOTEPROXIES,
            remoteproxy(
                "privileged",
                podTemplateSpec={
                    "spec": {
                        "containers": [
                            {"name": "proxyrunner", "securityContext": {"privileged": True}}
                        ]
                    }
                },
            ),
            'admission webhook "mcpremoteproxy.moorage.dev" denied the request: '
            "spec.podTemplateSpec.spec.containers[0].securityContext.privileged:",
            id="privileged-proxy-pod",
        ),
        pytest.param(
            MCPEXTERNALAUTHCONFIGS,
            authconfig(
                "scopes", type="tokenExchange", tokenExchange={**EXCHANGE, "scopes": ["a b"]}
            ),
            'admission webhook "mcpexternalauthconfig.moorage.dev" denied the request: '
            'spec.tokenExchange.scopes[0]: "a b" is not an OAuth scope',
            id="bad-scope",
        ),
        pytest.param(
            MCPEXTERNALAUTHCONFIGS,
            authconfig(
                "creds",
                type="tokenExchange",
                tokenExchange={**EXCHANGE, "tokenUrl": "https://a:b@idp.example.com/token"},
            ),
            'admission webhook "mcpexternalauthconfig.moorage.dev" denied the request: '
            "spec.tokenExchange.tokenUrl: 'https://a:b@idp.example.com/token' must not carry "
            "credentials",
            id="credentials-in-token-url",
        ),
        pytest.param(
            MCPGROUPS,
            group("lines", description="two\nlines"),
            'admission webhook "mcpgroup.moorage.dev" denied the request: spec.description: '
            "must be one line of printable text",
            id="multi-line-description",
        ),
    ],
)
async def test_invalid_objects_are_rejected_with_the_webhooks_message(
    kube: KubeClient,
    registered_webhook: Registration,
    kind: ResourceKind,
    body: dict[str, Any],
    message: str,
) -> None:
    with pytest.raises(errors.Invalid) as caught:
        await kube.create(kind, body, namespace=registered_webhook.namespace)
    assert message in caught.value.message
    assert caught.value.status == 422
    assert caught.value.causes, "field causes reach the client"


@pytest.mark.parametrize(
    ("kind", "body", "message"),
    [
        pytest.param(
            MCPSERVERS,
            mcpserver_body("stdio", externalAuthConfigRef={"name": "upstream"}),
            'spec.externalAuthConfigRef: Invalid value: "object": externalAuthConfigRef is '
            "only used with transport sse or streamable-http",
            id="stdio-auth-config",
        ),
        pytest.param(
            MCPEXTERNALAUTHCONFIGS,
            authconfig(
                "both",
                type="bearerToken",
                headerInjection={"headerName": "X-Key", "valueSecretRef": SECRET},
            ),
            'spec.bearerToken: Invalid value: "object": bearerToken is required when type is '
            "bearerToken and not allowed otherwise",
            id="member-of-another-type",
        ),
    ],
)
async def test_rules_the_schema_states_reject_before_the_webhook(
    kube: KubeClient,
    registered_webhook: Registration,
    kind: ResourceKind,
    body: dict[str, Any],
    message: str,
) -> None:
    with pytest.raises(errors.Invalid) as caught:
        await kube.create(kind, body, namespace=registered_webhook.namespace)
    assert message in caught.value.message
    assert "admission webhook" not in caught.value.message


def _kubectl_create(plane: ControlPlane, namespace: str, body: dict[str, Any]) -> tuple[int, str]:
    result = plane.kubectl(
        "create", "-n", namespace, "-f", "-", input=json.dumps(body), check=False
    )
    return result.returncode, result.stderr


async def test_warnings_reach_the_client(
    control_plane: ControlPlane, registered_webhook: Registration
) -> None:
    body = remoteproxy(
        "plain",
        remoteUrl="http://mcp.example.com/mcp",
        headerForward={"addHeaders": [{"name": "X-API-Key", "value": "s3cret"}]},
    )
    code, stderr = await asyncio.to_thread(
        _kubectl_create, control_plane, registered_webhook.namespace, body
    )
    assert code == 0, stderr
    assert "Warning: spec.remoteUrl: plain http" in stderr
    assert 'Warning: spec.headerForward.addHeaders[0].value: header "X-API-Key" looks like a ' in (
        stderr
    )
