"""The middleware against the real control plane.

- A change of the MCPToolConfig goes through the operator (its MCPServer controller renders the
  RunConfig ConfigMap) to a running proxy runner (`run_cluster`, which watches that ConfigMap),
  and a client session that stays open sees the new tool list, told by `tools/list_changed`.
  The MCP server runs as a local subprocess (`open_channel`), the StatefulSet is real.
- A bad edit of the ConfigMap is refused and the proxy keeps its configuration.
- `kubernetes` authentication takes projected service-account tokens from the TokenRequest API,
  their keys discovered from the apiserver.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from mcp import Client
from prometheus_client import CollectorRegistry
from testkit.waiting import eventually

from moorage_api.runconfig import RunConfigOIDC
from moorage_core.errors import NotFound
from moorage_core.kube import CONFIGMAPS, MCPSERVERS, MCPTOOLCONFIGS, SERVICEACCOUNTS, KubeClient
from moorage_dev.cluster import ControlPlane
from moorage_proxyrunner.backends.stdio.processes import subprocess_factory
from moorage_proxyrunner.config.settings import ProxyRunnerSettings
from moorage_proxyrunner.startup.cluster import ClusterOptions, run_cluster
from moorage_proxyrunner.startup.local import LocalBackend, run_local

# The operator's own test harness runs its manager in-process; reuse it rather than copy it.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "operator"))
from operator_harness import run_operator

pytestmark = pytest.mark.integration

TIME = (str(Path(sys.executable).with_name("mcp-server-time")), "--local-timezone", "UTC")


async def configmap_text(kube: KubeClient, namespace: str) -> str | None:
    try:
        cm = await kube.get(CONFIGMAPS, name="time-runconfig", namespace=namespace)
    except NotFound:
        return None
    text = (cm.get("data") or {}).get("runconfig.json")
    return text if isinstance(text, str) else None


class LocalChannel:
    """A subprocess channel standing in for `pods/attach` (what the attach factory reads)."""

    protocol = "local"

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.ended = asyncio.Event()
        self._closing: set[asyncio.Task[None]] = set()

    async def send(self, line: bytes) -> None:
        await self.inner.send(line)

    async def receive(self) -> bytes:
        try:
            data: bytes = await self.inner.receive()
        except Exception:
            self.ended.set()
            raise
        return data

    async def close(self) -> None:
        self.ended.set()
        await self.inner.close()

    def abort(self, reason: str) -> None:
        task = asyncio.create_task(self.close())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)


async def healthy(base: str) -> bool:
    async with aiohttp.ClientSession() as http, http.get(f"{base}/health") as resp:
        return resp.status == 200


@contextlib.asynccontextmanager
async def proxy_runner(
    control_plane: ControlPlane, config: Path, registry: CollectorRegistry
) -> AsyncIterator[str]:
    """`run_cluster` with the MCP server as a local subprocess; yields its /mcp URL."""
    stop = asyncio.Event()
    listening: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    local = subprocess_factory(TIME)

    async def open_channel(pod: str) -> Any:
        return LocalChannel(await local())

    options = ClusterOptions(
        config=config,
        host="127.0.0.1",
        port=0,
        kubeconfig=str(control_plane.kubeconfig),
        readiness_timeout=90,
        drain_timeout=2,
    )
    task = asyncio.create_task(
        run_cluster(
            options,
            stop=stop,
            on_listening=listening.set_result,
            open_channel=open_channel,
            registry=registry,
        )
    )
    try:
        done, _ = await asyncio.wait(
            {listening, task}, timeout=120, return_when=asyncio.FIRST_COMPLETED
        )
        assert listening in done, f"the proxy ended first: {task}"
        base = f"http://127.0.0.1:{listening.result()}"
        await eventually(lambda: healthy(base), timeout=60, message="backend connected")
        yield f"{base}/mcp"
    finally:
        stop.set()
        await asyncio.wait({task}, timeout=60)
        if not task.done():
            task.cancel()
            await asyncio.wait({task})


async def test_a_tool_config_change_reaches_an_open_session_through_the_operator(
    control_plane: ControlPlane, crds: list[str], kube: KubeClient, namespace: str, tmp_path: Path
) -> None:
    await kube.create(
        MCPTOOLCONFIGS,
        {
            "apiVersion": "moorage.dev/v1alpha1",
            "kind": "MCPToolConfig",
            "metadata": {"name": "tools", "namespace": namespace},
            "spec": {"toolsFilter": ["get_current_time"]},
        },
        namespace=namespace,
    )
    await kube.create(
        MCPSERVERS,
        {
            "apiVersion": "moorage.dev/v1alpha1",
            "kind": "MCPServer",
            "metadata": {"name": "time", "namespace": namespace},
            "spec": {"image": "ghcr.io/example/mcp-time:1.0", "toolConfigRef": {"name": "tools"}},
        },
        namespace=namespace,
    )
    registry = CollectorRegistry()
    heard: list[str] = []

    async def on_message(message: Any) -> None:
        method = getattr(getattr(message, "root", message), "method", None)
        if isinstance(method, str):
            heard.append(method)

    async with run_operator(control_plane, namespaces=(namespace,)):
        first = await eventually(
            lambda: configmap_text(kube, namespace), timeout=60, message="RunConfig rendered"
        )
        config = tmp_path / "runconfig.json"
        config.write_text(first)
        async with (
            proxy_runner(control_plane, config, registry) as url,
            Client(url, mode="legacy", message_handler=on_message) as client,
        ):
            assert [t.name for t in (await client.list_tools()).tools] == ["get_current_time"]
            await kube.patch(
                MCPTOOLCONFIGS,
                name="tools",
                namespace=namespace,
                body={
                    "spec": {
                        "toolsFilter": ["get_current_time", "convert"],
                        "toolsOverride": {"convert_time": {"name": "convert"}},
                    }
                },
            )
            await eventually(
                lambda: "notifications/tools/list_changed" in heard,
                timeout=60,
                message="the open session is told the tool list changed",
            )
            names = sorted(t.name for t in (await client.list_tools()).tools)
            assert names == ["convert", "get_current_time"]
            converted = await client.call_tool(
                "convert", {"source_timezone": "UTC", "time": "12:00", "target_timezone": "UTC"}
            )
            assert not converted.is_error

            # A broken edit straight to the ConfigMap is refused; the session keeps working.
            rejected = {"result": "rejected"}
            await kube.patch(
                CONFIGMAPS,
                name="time-runconfig",
                namespace=namespace,
                body={"data": {"runconfig.json": '{"schema_version": "moorage/v1", "name": 1}'}},
            )
            await eventually(
                lambda: registry.get_sample_value("moorage_proxy_config_reloads_total", rejected),
                timeout=30,
                message="the bad RunConfig is refused",
            )
            names = sorted(t.name for t in (await client.list_tools()).tools)
            assert names == ["convert", "get_current_time"]


async def service_account_token(
    kube: KubeClient, namespace: str, name: str, *, audience: str
) -> str:
    await kube.create(
        SERVICEACCOUNTS,
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name}},
        namespace=namespace,
    )
    answer = await kube.request(
        "POST",
        SERVICEACCOUNTS.path(namespace=namespace, name=name, subresource="token"),
        verb="create",
        body={
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {"audiences": [audience], "expirationSeconds": 600},
        },
    )
    token: str = answer["status"]["token"]
    return token


async def test_service_account_tokens_of_the_cluster_are_accepted_as_configured(
    control_plane: ControlPlane,
    kube: KubeClient,
    namespace: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(control_plane.kubeconfig))
    allowed = await service_account_token(kube, namespace, "bot", audience="moorage")
    other = await service_account_token(kube, namespace, "other", audience="moorage")
    elsewhere = await service_account_token(kube, namespace, "aud", audience="someone-else")
    settings = ProxyRunnerSettings(
        port=0,
        oidc=RunConfigOIDC(
            type="kubernetes", audience="moorage", allowed_service_accounts=[f"{namespace}/bot"]
        ),
    )
    stop = asyncio.Event()
    port: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(
        run_local(
            LocalBackend(transport="stdio", command=TIME),
            settings,
            stop=stop,
            registry=CollectorRegistry(),
            on_listening=port.set_result,
            handle_signals=False,
        )
    )
    initialize = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-06-18",
            "capabilities": {},
            "clientInfo": {"name": "t", "version": "1"},
        },
    }
    try:
        url = f"http://127.0.0.1:{await port}/mcp"

        async def status(token: str) -> int:
            headers = {
                "Authorization": f"Bearer {token}",
                "Accept": "application/json, text/event-stream",
            }
            async with (
                aiohttp.ClientSession() as http,
                http.post(url, json=initialize, headers=headers) as resp,
            ):
                await resp.read()
                return resp.status

        await eventually(lambda: _is(status(allowed), 200), timeout=30, message="bot let in")
        assert await status(other) == 403
        assert await status(elsewhere) == 401
        assert await status(allowed + "x") == 401
    finally:
        stop.set()
        await task


async def _is(value: Any, expected: int) -> bool:
    return bool(await value == expected)
