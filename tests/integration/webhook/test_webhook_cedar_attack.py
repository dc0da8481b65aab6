"""The reported denial of service against the running webhook process: AdmissionReviews whose
Cedar policy crashed the native parser (about 700 nested parentheses in 2.5 KB; a 20,000-term
`&&` chain) are refused with a message naming the field and the bound, and the process lives on
to serve the next review. Then the same policy through the apiserver: the nested one is small
enough for the schema and refused by the webhook; the long one is refused by the schema itself.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from testkit.cedarattacks import LONG_AND_CHAIN, NESTED_PARENTHESES
from testkit.commands import free_port
from webhook_harness import (
    dry_run_create,
    mcpserver_body,
    registration,
    serving_pair,
    start_webhook_process,
    wait_until_enforced,
)

from moorage_core import errors
from moorage_core.kube import KubeClient
from moorage_core.tls import build_ca, write_pair

pytestmark = pytest.mark.integration

POLICIES_PATH = "spec.authzConfig.inline.policies[0]"


@dataclass
class WebhookProcess:
    process: asyncio.subprocess.Process
    base_url: str
    ssl_context: ssl.SSLContext
    ca_pem: bytes


@pytest_asyncio.fixture
async def webhook_process(tmp_path: Path) -> AsyncIterator[WebhookProcess]:
    ca = build_ca(common_name="cedar-attack-ca")
    write_pair(serving_pair(ca), tmp_path)
    port = free_port()
    process = await start_webhook_process(
        tmp_path, port=port, ca=ca, output=asyncio.subprocess.DEVNULL
    )
    try:
        yield WebhookProcess(
            process,
            f"https://127.0.0.1:{port}",
            ssl.create_default_context(cadata=ca.cert_pem.decode()),
            ca.cert_pem,
        )
    finally:
        if process.returncode is None:
            process.terminate()
            await asyncio.wait_for(process.wait(), timeout=30)


def _review(policy: str) -> dict[str, Any]:
    body = mcpserver_body("cedar", authzConfig={"type": "inline", "inline": {"policies": [policy]}})
    body["metadata"]["namespace"] = "default"
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": str(uuid.uuid4()),
            "kind": {"group": "moorage.dev", "version": "v1alpha1", "kind": "MCPServer"},
            "resource": {"group": "moorage.dev", "version": "v1alpha1", "resource": "mcpservers"},
            "name": "cedar",
            "namespace": "default",
            "operation": "CREATE",
            "userInfo": {"username": "attacker"},
            "object": body,
            "dryRun": True,
        },
    }


async def _send(webhook: WebhookProcess, review: dict[str, Any]) -> dict[str, Any]:
    connector = aiohttp.TCPConnector(ssl=webhook.ssl_context)
    async with (
        aiohttp.ClientSession(connector=connector) as http,
        http.post(f"{webhook.base_url}/validate/mcpserver", json=review) as resp,
    ):
        assert resp.status == 200, await resp.text()
        response: dict[str, Any] = (await resp.json())["response"]
    assert response["uid"] == review["request"]["uid"]
    return response


@pytest.mark.parametrize(
    ("policy", "message"),
    [
        pytest.param(
            NESTED_PARENTHESES,
            f"{POLICIES_PATH}: nests brackets 701 deep (at line 1, column 743); at most 32 levels "
            "of (, [ and { are allowed",
            id="nested-parentheses",
        ),
        pytest.param(
            LONG_AND_CHAIN,
            f"{POLICIES_PATH}: String should have at most 16384 characters",
            id="long-and-chain",
        ),
    ],
)
async def test_the_running_webhook_refuses_the_attack_and_serves_the_next_review(
    webhook_process: WebhookProcess, policy: str, message: str
) -> None:
    review = _review(policy)
    if policy is NESTED_PARENTHESES:
        assert len(json.dumps(review)) < 3_000, "the attack fits in about 2.5 KB"
    refused = await _send(webhook_process, review)
    assert refused["allowed"] is False
    assert refused["status"]["message"] == message
    assert webhook_process.process.returncode is None, "the webhook process is alive"

    admitted = await _send(webhook_process, _review("permit(principal, action, resource);"))
    assert admitted["allowed"] is True


async def test_through_the_apiserver_the_schema_or_the_webhook_refuses_the_attack(
    kube: KubeClient, namespace: str, crds: list[str], webhook_process: WebhookProcess
) -> None:
    async with registration(
        kube, namespace, base_url=webhook_process.base_url, ca_pem=webhook_process.ca_pem
    ):
        await wait_until_enforced(kube, namespace)
        nested = mcpserver_body(
            "nested",
            authzConfig={"type": "inline", "inline": {"policies": [NESTED_PARENTHESES]}},
        )
        with pytest.raises(errors.Invalid) as caught:
            await dry_run_create(kube, namespace, nested)
        assert 'admission webhook "mcpserver.moorage.dev" denied' in caught.value.message
        assert f"{POLICIES_PATH}: nests brackets 701 deep" in caught.value.message

        chained = mcpserver_body(
            "chained", authzConfig={"type": "inline", "inline": {"policies": [LONG_AND_CHAIN]}}
        )
        with pytest.raises(errors.Invalid) as caught:
            await dry_run_create(kube, namespace, chained)
        assert "admission webhook" not in caught.value.message, "the schema refused it first"
        assert f"{POLICIES_PATH}: Too long: may not be more than 16384 bytes" in (
            caught.value.message
        )

        # Still alive and enforcing after both.
        assert webhook_process.process.returncode is None
        await dry_run_create(kube, namespace, mcpserver_body("fine"))
