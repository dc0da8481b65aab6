"""Step 10: three proxy replicas sharing their sessions through Redis in a pod, one of them
deleted while an `mcp` SDK client on the host keeps calling tools through the proxy Service.

The examples are applied as a user applies them (`kubectl apply` of deploy/examples/redis.yaml
and mcpserver-replicas-redis.yaml): Redis from docker/examples/redis with its password Secret,
and the toolbox server twice, over streamable HTTP and over stdio (one backend pod per proxy
replica), each with `replicas: 3`, `sessionStorage: redis` and no session affinity, so that the
Service spreads one session's requests over the replicas. Once the three proxy pods of a server
are ready and its PodDisruptionBudget is there, the client opens one session and calls tools
without pause while a proxy pod is deleted the ordinary way (SIGTERM: the handover). The deleted
pod's log shows the handover (drain, sessions released in Redis) and every call succeeds within
that one session: the client never sends a second `initialize`, and every request carries the
first session's id. Then the Deployment is back to three ready pods.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from realkit import (
    Obj,
    cluster_ip,
    create_namespace,
    dump,
    get,
    install_ready,
    items,
    wait,
    wait_ready_pods,
)
from realkit import wait_phase as wait_server_phase
from testkit.kustomize import Install

from moorage_dev.cluster import ControlPlane

REPO = Path(__file__).resolve().parents[3]
EXAMPLES = REPO / "deploy" / "examples"
NAMESPACE = "scaleout"
SERVERS = ["toolbox-replicas", "toolbox-stdio-replicas"]
REPLICAS = 3


@pytest.fixture(scope="module")
def scaleout(plane: ControlPlane, installed: Install, images: dict[str, str]) -> Iterator[str]:
    """The two examples applied and settled: the proxy pods' label selector. The install is
    applied again first (the Helm step uninstalls at its end); the namespace is deleted after."""
    install_ready(plane, installed, images)
    create_namespace(plane, NAMESPACE, {"pod-security.kubernetes.io/enforce": "restricted"})
    for name in ("redis.yaml", "mcpserver-replicas-redis.yaml"):
        plane.kubectl("apply", "--server-side", "-n", NAMESPACE, "-f", str(EXAMPLES / name))
    try:
        for server in SERVERS:
            wait_server_phase(plane, NAMESPACE, server, "Running", timeout=300)
            wait_ready_pods(plane, NAMESPACE, _proxy_selector(plane, server), REPLICAS, timeout=300)
        yield NAMESPACE
    except AssertionError:
        print(dump(plane, NAMESPACE))
        raise
    finally:
        plane.kubectl("delete", "namespace", NAMESPACE, "--wait=false", check=False)


def _proxy_deployment(plane: ControlPlane, server: str) -> Obj:
    """The MCPServer's proxy Deployment (the one it owns)."""
    for deployment in items(plane, "deployments", "-n", NAMESPACE):
        owners = deployment["metadata"].get("ownerReferences") or []
        if any(o["kind"] == "MCPServer" and o["name"] == server for o in owners):
            return deployment
    raise AssertionError(f"no proxy Deployment of {server} in {NAMESPACE}")


def _proxy_selector(plane: ControlPlane, server: str) -> str:
    labels = _proxy_deployment(plane, server)["spec"]["selector"]["matchLabels"]
    return ",".join(f"{key}={value}" for key, value in sorted(labels.items()))


@pytest.mark.parametrize("server", SERVERS)
def test_three_proxy_replicas_run_with_a_disruption_budget(
    plane: ControlPlane, scaleout: str, server: str
) -> None:
    deployment = _proxy_deployment(plane, server)
    assert deployment["spec"]["replicas"] == REPLICAS
    budget = get(plane, "pdb", "-n", NAMESPACE, deployment["metadata"]["name"])
    assert budget["spec"]["maxUnavailable"] == 1
    assert (
        budget["spec"]["selector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]
    )
    env = {
        e["name"]
        for c in deployment["spec"]["template"]["spec"]["containers"]
        for e in c.get("env", [])
    }
    assert "POD_IP" in env


class _Requests:
    """What the client sent: the JSON-RPC methods of its POSTs and every session id it named."""

    def __init__(self) -> None:
        self.methods: list[str] = []
        self.session_ids: set[str] = set()

    async def __call__(self, request: httpx2.Request) -> None:
        session_id = request.headers.get("mcp-session-id")
        if session_id is not None:
            self.session_ids.add(session_id)
        if request.method == "POST":
            body: Any = json.loads(request.content)
            for message in body if isinstance(body, list) else [body]:
                if "method" in message:
                    self.methods.append(message["method"])


def _text(result: Any) -> str:
    return "".join(getattr(c, "text", "") for c in result.content)


@pytest.mark.parametrize("server", SERVERS)
async def test_a_session_survives_a_proxy_pod_being_deleted(
    plane: ControlPlane, scaleout: str, server: str
) -> None:
    url = f"http://{cluster_ip(plane, NAMESPACE, f'mcp-{server}-proxy', 8080)}:8080/mcp"
    selector = _proxy_selector(plane, server)
    sent = _Requests()
    victim = sorted(
        p["metadata"]["name"] for p in items(plane, "pods", "-n", NAMESPACE, "-l", selector)
    )[0]
    outcomes: list[str] = []
    deleted = asyncio.Event()
    # Until kube-proxy drops the deleted pod from the Service's rules (moments after its
    # handover ends and it stops listening), a new connection may still be sent there and be
    # refused before a byte of the request is written: the transport retries those, which is
    # always safe. A request that reached a pod is never retried.
    http = httpx2.AsyncClient(
        transport=httpx2.AsyncHTTPTransport(retries=3),
        timeout=httpx2.Timeout(30, read=300),
        event_hooks={"request": [sent]},
    )
    async with http, Client(streamable_http_client(url, http_client=http), mode="legacy") as client:

        async def call_until_done() -> None:
            turn = 0
            # Before, during and after the deletion; a few more once the pod is gone.
            after = 0
            while after < 20:
                turn += 1
                if turn % 4 == 0:
                    result = await client.call_tool("wait", {"seconds": 0.5})
                    expected = "waited 0.5"
                else:
                    result = await client.call_tool("echo", {"text": f"call {turn}"})
                    expected = f"call {turn}"
                assert not result.is_error, _text(result)
                assert expected in _text(result), _text(result)
                outcomes.append(expected)
                if deleted.is_set():
                    after += 1

        calls = asyncio.create_task(call_until_done())
        await asyncio.sleep(2)
        assert not calls.done()
        # The victim's log, followed until its container ends.
        log = await asyncio.create_subprocess_exec(
            str(plane.binaries["kubectl"]),
            f"--kubeconfig={plane.kubeconfig}",
            *("logs", "-f", "-n", NAMESPACE, victim, "-c", "proxyrunner"),
            stdout=asyncio.subprocess.PIPE,
        )
        done = await asyncio.to_thread(
            plane.kubectl,
            "delete",
            "pod",
            "-n",
            NAMESPACE,
            victim,
            "--wait=true",
            check=False,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        deleted.set()
        await asyncio.wait_for(calls, timeout=240)
        lines, _ = await asyncio.wait_for(log.communicate(), timeout=60)

    events = [json.loads(line).get("event") for line in lines.splitlines() if line.startswith(b"{")]
    assert "proxy_draining" in events, lines.decode()[-3000:]
    assert "sessions_released" in events, lines.decode()[-3000:]

    assert len(outcomes) >= 20
    assert sent.methods.count("initialize") == 1, sent.methods
    assert len(sent.session_ids) == 1, sent.session_ids
    found = wait_ready_pods(plane, NAMESPACE, selector, REPLICAS, timeout=240)
    assert victim not in {p["metadata"]["name"] for p in found}
    wait(
        "the disruption budget to see three healthy proxies",
        lambda: _healthy(plane, server) == REPLICAS or None,
        timeout=120,
    )


def _healthy(plane: ControlPlane, server: str) -> int:
    name = _proxy_deployment(plane, server)["metadata"]["name"]
    status = get(plane, "pdb", "-n", NAMESPACE, name).get("status") or {}
    return int(status.get("currentHealthy", 0))
