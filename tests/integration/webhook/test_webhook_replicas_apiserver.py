"""More than one proxy replica needs `sessionStorage.type: redis`, on every kind that runs a proxy,
through the real apiserver with the webhook registered: `replicas: 3` with memory storage is
refused with the message saying why (the CRD's rule answers before the webhook is asked, and the
webhook, asked directly, refuses it with the same message at `spec.replicas`); with Redis it is
admitted."""

from __future__ import annotations

import ssl
import uuid
from typing import Any

import aiohttp
import pytest
from testkit.remotekinds import remoteproxy, virtualmcpserver
from webhook_harness import Registration, mcpserver_body

from moorage_api.sessionstorage import REPLICAS_NEED_REDIS
from moorage_core import errors
from moorage_core.kube import (
    MCPREMOTEPROXIES,
    MCPSERVERS,
    VIRTUALMCPSERVERS,
    KubeClient,
    ResourceKind,
)

pytestmark = pytest.mark.integration

REDIS = {"type": "redis", "redis": {"address": "redis.cache:6379"}}

KINDS = {
    "mcpserver": (MCPSERVERS, lambda name, **spec: mcpserver_body(name, **spec)),
    "mcpremoteproxy": (MCPREMOTEPROXIES, lambda name, **spec: remoteproxy(name, **spec)),
    "virtualmcpserver": (
        VIRTUALMCPSERVERS,
        lambda name, **spec: virtualmcpserver(name, groupRef={"name": "tools"}, **spec),
    ),
}


@pytest.mark.parametrize("kind", list(KINDS))
async def test_three_replicas_with_memory_storage_are_refused_saying_why(
    kube: KubeClient, registered_webhook: Registration, kind: str
) -> None:
    resource, build = KINDS[kind]
    with pytest.raises(errors.Invalid) as caught:
        await kube.create(
            resource, build("many", replicas=3), namespace=registered_webhook.namespace
        )
    assert "spec.replicas" in caught.value.message, caught.value.message
    assert REPLICAS_NEED_REDIS in caught.value.message, caught.value.message


@pytest.mark.parametrize("kind", list(KINDS))
async def test_three_replicas_sharing_redis_are_admitted(
    kube: KubeClient, registered_webhook: Registration, kind: str
) -> None:
    resource, build = KINDS[kind]
    created = await kube.create(
        resource,
        build("shared", replicas=3, sessionStorage=REDIS),
        namespace=registered_webhook.namespace,
    )
    assert created["spec"]["replicas"] == 3
    assert created["spec"]["sessionStorage"]["type"] == "redis"


def _review(resource: ResourceKind, body: dict[str, Any], namespace: str) -> dict[str, Any]:
    body = {**body, "metadata": {**body["metadata"], "namespace": namespace}}
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": str(uuid.uuid4()),
            "kind": {"group": resource.group, "version": resource.version, "kind": resource.kind},
            "resource": {
                "group": resource.group,
                "version": resource.version,
                "resource": resource.plural,
            },
            "name": body["metadata"]["name"],
            "namespace": namespace,
            "operation": "CREATE",
            "userInfo": {"username": "tests"},
            "object": body,
            "dryRun": True,
        },
    }


@pytest.mark.parametrize("kind", list(KINDS))
async def test_the_webhook_itself_refuses_them_at_spec_replicas(
    registered_webhook: Registration, kind: str
) -> None:
    resource, build = KINDS[kind]
    webhook = registered_webhook.webhook
    review = _review(resource, build("many", replicas=3), registered_webhook.namespace)
    context = ssl.create_default_context(cadata=webhook.ca.cert_pem.decode())
    async with (
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context)) as http,
        http.post(f"{webhook.base_url}/validate/{kind}", json=review) as resp,
    ):
        assert resp.status == 200, await resp.text()
        response = (await resp.json())["response"]
    assert response["allowed"] is False
    assert f"spec.replicas: {REPLICAS_NEED_REDIS}" in response["status"]["message"]
