"""A webhook on loopback that the test apiserver really calls.

`local_webhook` runs `WebhookServer` in the test's event loop on free ports, with a serving
certificate for 127.0.0.1 signed by a CA made for the test. `registered_webhook` points a
ValidatingWebhookConfiguration (scoped to the test's namespace) at it and waits until the apiserver
enforces it; the configuration is deleted in teardown whatever happens, since a fail-closed
webhook left behind would block every later test's writes of our kinds.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest_asyncio
from webhook_harness import (
    LocalWebhook,
    Registration,
    registration,
    serving_pair,
    wait_until_enforced,
)

from moorage_core.kube import KubeClient
from moorage_core.tls import build_ca, write_pair
from moorage_webhook.server import WebhookServer
from moorage_webhook.settings import WebhookSettings


@pytest_asyncio.fixture
async def local_webhook(tmp_path: Path) -> AsyncIterator[LocalWebhook]:
    ca = build_ca(common_name="webhook-test-ca")
    cert_dir = tmp_path / "webhook-certs"
    write_pair(serving_pair(ca), cert_dir)
    settings = WebhookSettings(
        cert_dir=cert_dir,
        bind=("127.0.0.1", 0),
        metrics_bind=("127.0.0.1", 0),
        tls_poll_interval=0.1,
    )
    server = WebhookServer(settings)
    await server.start()
    try:
        yield LocalWebhook(server=server, cert_dir=cert_dir, ca=ca)
    finally:
        await server.stop()


@pytest_asyncio.fixture
async def registered_webhook(
    kube: KubeClient, namespace: str, crds: list[str], local_webhook: LocalWebhook
) -> AsyncIterator[Registration]:
    async with registration(
        kube, namespace, base_url=local_webhook.base_url, ca_pem=local_webhook.ca.cert_pem
    ) as name:
        await wait_until_enforced(kube, namespace)
        yield Registration(name=name, namespace=namespace, webhook=local_webhook)
