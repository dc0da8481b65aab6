"""Step 3: real failure paths on real pods.

A server image that exits, the MCP server pod deleted mid-session, the proxy runner pod deleted,
the leader operator's process killed with SIGKILL (the `ha` component), and cert-manager renewing
the webhook's certificate while the apiserver keeps calling the webhook.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import ssl
import threading
import time
import urllib.request
from typing import Any

import pytest
from cryptography import x509
from mcp import Client
from realkit import (
    SYSTEM,
    apply_install,
    cluster_ip,
    create_namespace,
    dump,
    get,
    items,
    lease_holder,
    ready,
    ready_pods,
    renew_certificate,
    rollout,
    wait,
    wait_phase,
    wait_ready_pods,
)
from testkit.kustomize import Install

from moorage_dev.certmanager import CertManager
from moorage_dev.cluster import ControlPlane

NAMESPACE = "failures"
FAILING_IMAGE = "ghcr.io/moorage-dev/mcp-server-failing:0.1.0"
TIME_IMAGE = "ghcr.io/moorage-dev/mcp-server-time:2025.9.25"


def _server(name: str, image: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "moorage.dev/v1alpha1",
        "kind": "MCPServer",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {"image": image, "transport": "stdio", "port": 8080, **spec},
    }


def _apply(plane: ControlPlane, obj: dict[str, Any]) -> None:
    plane.kubectl("apply", "--server-side", "-f", "-", input=json.dumps(obj))


@pytest.fixture(scope="module")
def namespace(plane: ControlPlane, installed: Install) -> str:
    create_namespace(plane, NAMESPACE)
    return NAMESPACE


@pytest.fixture(scope="module")
def time_server(plane: ControlPlane, namespace: str) -> str:
    _apply(plane, _server("clock", TIME_IMAGE, args=["--local-timezone=UTC"]))
    try:
        wait_phase(plane, namespace, "clock", "Running", timeout=240)
    except AssertionError:
        print(dump(plane, namespace))
        raise
    return f"http://{cluster_ip(plane, namespace, 'mcp-clock-proxy', 8080)}:8080/mcp"


PROXY = "moorage.dev/mcpserver=clock,app.kubernetes.io/component!=mcp-server"


def _proxy_serving(plane: ControlPlane) -> bool:
    """The clock's proxy runner is Ready and its backend connected (`/health` on the pod IP)."""
    found = ready_pods(plane, NAMESPACE, PROXY)
    if len(found) != 1:
        return False
    url = f"http://{found[0]['status']['podIP']}:8080/health"
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def _now(result: Any) -> str:
    assert not result.is_error, result
    return str(json.loads("".join(c.text for c in result.content))["timezone"])


def test_a_server_that_exits_ends_in_failed_with_the_container_reason(
    plane: ControlPlane, namespace: str
) -> None:
    _apply(plane, _server("crasher", FAILING_IMAGE))
    failed = wait_phase(plane, namespace, "crasher", "Failed", timeout=300)
    conditions = {c["type"]: c for c in failed["status"].get("conditions", [])}
    text = json.dumps(failed["status"])
    assert "CrashLoopBackOff" in text, failed["status"]
    assert conditions, failed["status"]

    def backing_off() -> list[str]:
        # Between restarts the container is Running or Terminated for a moment: look again.
        pods = items(plane, "pods", "-n", namespace, "-l", "moorage.dev/mcpserver=crasher")
        return [
            s["state"]["waiting"]["reason"]
            for p in pods
            for s in p["status"].get("containerStatuses", [])
            if s["name"] == "mcp"
            and s["state"].get("waiting", {}).get("reason") == "CrashLoopBackOff"
        ]

    assert wait("the mcp container in CrashLoopBackOff", backing_off, timeout=120)


async def _call_until_answered(call: Any, *, timeout: float) -> str | None:
    """The time zone `call()` answers, retried while the proxy reconnects; None on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return _now(await call())
        except Exception:  # the proxy is re-attaching, or the session has to be replaced
            if time.monotonic() > deadline:
                return None
            await asyncio.sleep(0.5)


async def _answer_in_a_new_session(url: str, *, mode: str, timeout: float) -> str | None:
    """What a client that reconnects gets: a new session, retried while the proxy is away."""

    async def call() -> Any:
        async with Client(url, mode=mode) as client:
            return await client.call_tool("get_current_time", {"timezone": "UTC"})

    return await _call_until_answered(call, timeout=timeout)


@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
async def test_deleting_the_mcp_server_pod_mid_session_recovers(
    plane: ControlPlane, time_server: str, mode: str
) -> None:
    async with Client(time_server, mode=mode) as client:

        async def call() -> Any:
            return await client.call_tool("get_current_time", {"timezone": "UTC"})

        assert _now(await call()) == "UTC"
        before = get(plane, "pod", "-n", NAMESPACE, "clock-0")["metadata"]["uid"]
        plane.kubectl("delete", "pod", "-n", NAMESPACE, "clock-0", "--wait=false")

        def replaced() -> bool:
            pod = get(plane, "pod", "-n", NAMESPACE, "clock-0")
            return pod["metadata"]["uid"] != before and ready(pod)

        wait("clock-0 replaced and Ready", replaced, timeout=120)
        wait("the proxy re-attached", lambda: _proxy_serving(plane), timeout=120)
        answered = await _call_until_answered(call, timeout=10)
    if answered is None:
        # The legacy era binds state to a session: a new session is what the protocol asks for
        # once the server process behind it is new.
        assert mode == "legacy"
        answered = await _answer_in_a_new_session(time_server, mode=mode, timeout=60)
    assert answered == "UTC"


async def test_deleting_the_proxy_runner_pod_lets_clients_reconnect(
    plane: ControlPlane, time_server: str
) -> None:
    selector = PROXY
    wait("the proxy serving", lambda: _proxy_serving(plane), timeout=120)
    old = {p["metadata"]["name"] for p in ready_pods(plane, NAMESPACE, selector)}
    assert old
    plane.kubectl("delete", "pod", "-n", NAMESPACE, *old, "--wait=false")
    wait(
        "a new proxy runner pod Ready",
        lambda: [
            p for p in ready_pods(plane, NAMESPACE, selector) if p["metadata"]["name"] not in old
        ],
        timeout=180,
    )
    rollout(plane, NAMESPACE, "deployment/clock")
    answer = await _answer_in_a_new_session(time_server, mode="legacy", timeout=60)
    assert answer == "UTC"


def _container_pid(plane: ControlPlane, pod: dict[str, Any], container: str) -> int:
    """The host pid of `container`'s process, from the node's containerd."""
    assert plane.real_node is not None
    status = next(s for s in pod["status"]["containerStatuses"] if s["name"] == container)
    container_id = status["containerID"].split("://", 1)[1]
    out = plane.real_node.ctr("tasks", "ls").stdout
    for line in out.splitlines()[1:]:
        fields = line.split()
        if fields and fields[0] == container_id:
            return int(fields[1])
    raise AssertionError(f"no containerd task for {container_id}:\n{out}")


def test_with_the_ha_component_a_standby_leads_within_20s_after_kill_9(
    plane: ControlPlane, images: dict[str, str], installed: Install
) -> None:
    ha = Install(installed.overlay, ("ha",))
    apply_install(plane, ha, images)
    rollout(plane, SYSTEM, "deployment/moorage-operator", timeout=240)
    selector = "app.kubernetes.io/component=operator"
    operators = wait_ready_pods(plane, SYSTEM, selector, 2, timeout=120)
    names = {p["metadata"]["name"] for p in operators}
    leader = wait("a leader among the operators", lambda: lease_holder(plane) in names, timeout=60)
    assert leader
    holder = lease_holder(plane)
    leader_pod = next(p for p in operators if p["metadata"]["name"] == holder)
    os.kill(_container_pid(plane, leader_pod, "operator"), signal.SIGKILL)
    killed_at = time.monotonic()
    standby = (names - {holder}).pop()
    try:
        wait("the standby to take the Lease", lambda: lease_holder(plane) == standby, timeout=30)
    except AssertionError:
        print(
            f"killed {holder}; the Lease now: {get(plane, 'lease', '-n', SYSTEM, 'moorage-operator')}"
        )
        print(dump(plane, SYSTEM))
        raise
    took = time.monotonic() - killed_at
    print(f"failover after kill -9: {took:.1f}s")
    assert took <= 20


def _served_serial(host: str, port: int) -> int:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with (
        socket.create_connection((host, port), timeout=5) as raw,
        ctx.wrap_socket(raw, server_hostname="moorage-webhook.moorage-system.svc") as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return int(x509.load_der_x509_certificate(der).serial_number)


def test_a_renewed_webhook_certificate_is_served_without_restart_or_failed_admission(
    plane: ControlPlane, namespace: str, cert_manager: CertManager
) -> None:
    ip = cluster_ip(plane, SYSTEM, "moorage-webhook")
    port = int(get(plane, "service", "-n", SYSTEM, "moorage-webhook")["spec"]["ports"][0]["port"])
    webhook = "app.kubernetes.io/component=webhook"
    restarts = {
        p["metadata"]["name"]: sum(s["restartCount"] for s in p["status"]["containerStatuses"])
        for p in ready_pods(plane, SYSTEM, webhook)
    }
    before = _served_serial(ip, port)
    failures: list[str] = []
    admitted = 0
    stop = threading.Event()
    probe = json.dumps(_server("renewal-probe", TIME_IMAGE))

    def admit_continuously() -> None:
        nonlocal admitted
        while not stop.is_set():
            out = plane.kubectl(
                "apply", "--server-side", "--dry-run=server", "-f", "-", input=probe, check=False
            )
            if out.returncode == 0:
                admitted += 1
            else:
                failures.append(out.stderr)

    writer = threading.Thread(target=admit_continuously, daemon=True)
    writer.start()
    try:
        renew_certificate(plane, SYSTEM, "moorage-webhook")
        wait(
            "every webhook endpoint to serve the renewed certificate",
            lambda: all(_served_serial(ip, port) != before for _ in range(6)),
            timeout=240,
            interval=2,
        )
    finally:
        stop.set()
        writer.join(timeout=30)
    assert failures == []
    assert admitted > 0
    after = {
        p["metadata"]["name"]: sum(s["restartCount"] for s in p["status"]["containerStatuses"])
        for p in ready_pods(plane, SYSTEM, webhook)
    }
    assert after == restarts
