"""Helpers for running the webhook against the test apiserver (used by conftest and tests)."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import ssl
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from testkit.commands import free_port
from testkit.waiting import eventually

from moorage_core import errors
from moorage_core.kube import MCPSERVERS, VALIDATING_WEBHOOKS, KubeClient
from moorage_core.tls import CertificatePair, build_leaf
from moorage_webhook.registration import desired_local_configuration
from moorage_webhook.server import WebhookServer

# Accepted by the CRD's image pattern (32+ hex digits), refused by the webhook (sha256 is 64).
SHORT_DIGEST_IMAGE = "ghcr.io/moorage/time@sha256:" + "ab" * 20


def serving_pair(ca: CertificatePair) -> CertificatePair:
    return build_leaf(ca, common_name="moorage-webhook", hosts=["127.0.0.1", "localhost"])


def mcpserver_body(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "moorage.dev/v1alpha1",
        "kind": "MCPServer",
        "metadata": {"name": name},
        "spec": {"image": "ghcr.io/moorage/time:1.2.0", **spec},
    }


@dataclass
class LocalWebhook:
    server: WebhookServer
    cert_dir: Path
    ca: CertificatePair

    @property
    def base_url(self) -> str:
        return f"https://127.0.0.1:{self.server.port}"


@dataclass
class Registration:
    name: str
    namespace: str
    webhook: LocalWebhook


async def dry_run_create(kube: KubeClient, namespace: str, body: dict[str, Any]) -> Any:
    return await kube.request(
        "POST",
        MCPSERVERS.path(namespace=namespace),
        verb="create",
        query={"dryRun": "All"},
        body=body,
    )


async def wait_until_enforced(kube: KubeClient, namespace: str) -> None:
    """The apiserver loads webhook configurations asynchronously; probe with a dry run."""
    probe = mcpserver_body("enforcement-probe", image=SHORT_DIGEST_IMAGE)

    async def rejected_by_us() -> bool:
        try:
            await dry_run_create(kube, namespace, probe)
        except errors.Invalid as exc:
            return 'admission webhook "mcpserver.moorage.dev" denied' in exc.message
        return False

    await eventually(rejected_by_us, timeout=30, message="webhook configuration not enforced")


@contextlib.asynccontextmanager
async def registration(
    kube: KubeClient, namespace: str, *, base_url: str, ca_pem: bytes
) -> AsyncIterator[str]:
    """A configuration for `namespace` only, deleted on the way out whatever happened."""
    name = f"moorage-webhook-test-{secrets.token_hex(4)}"
    config = desired_local_configuration(
        name,
        base_url=base_url,
        ca_pem=ca_pem,
        namespace_selector={"matchLabels": {"kubernetes.io/metadata.name": namespace}},
    )
    await kube.create(VALIDATING_WEBHOOKS, config)
    try:
        yield name
    finally:
        with contextlib.suppress(errors.NotFound):
            await kube.delete(VALIDATING_WEBHOOKS, name=name)


async def start_webhook_process(
    cert_dir: Path,
    *,
    port: int,
    ca: CertificatePair,
    output: int = asyncio.subprocess.PIPE,
    kubeconfig: Path | None = None,
) -> asyncio.subprocess.Process:
    """`python -m moorage_webhook` serving `cert_dir`'s pair on `port`, once it is ready (JSON
    logs to `output`, stderr with them); following the MCPTenants of the cluster `kubeconfig`
    names, or none (`--mcptenants false`) without one."""
    tenants = ["--kubeconfig", str(kubeconfig)] if kubeconfig else ["--mcptenants", "false"]
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "moorage_webhook",
        "--cert-dir",
        str(cert_dir),
        "--bind",
        f"127.0.0.1:{port}",
        "--metrics-bind",
        f"127.0.0.1:{free_port()}",
        "--log-format",
        "json",
        *tenants,
        stdout=output,
        stderr=asyncio.subprocess.STDOUT,
    )
    context = ssl.create_default_context(cadata=ca.cert_pem.decode())

    async def ready() -> bool:
        try:
            async with (
                aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context)) as http,
                http.get(f"https://127.0.0.1:{port}/readyz") as resp,
            ):
                return resp.status == 200
        except aiohttp.ClientError:
            return False

    try:
        await eventually(ready, timeout=30, message="moorage-webhook ready")
    except BaseException:
        process.kill()
        await process.wait()
        raise
    return process
