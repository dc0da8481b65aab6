"""Two proxy runners of one stdio server sharing sessions through Redis (`proxy_replicas: 2`)
against the real apiserver: the StatefulSet runs two backend pods, each runner holds the Lease
of a different ordinal and attaches to that pod only, both serve an MCP client, and a live change
of `proxy_replicas` scales the backend pods without restarting them."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from kwok_exec_node import EXEC_POD_PLACEMENT, ExecNode
from mcp import Client
from runconfig_files import write_runconfig
from test_cluster_runner import MCP_SERVER_TIME, backend_ready, running_proxy
from testkit.redisserver import running_redis
from testkit.waiting import eventually

from moorage_api.constants import RUNCONFIG_KEY
from moorage_core.kube import CONFIGMAPS, LEASES, STATEFULSETS, KubeClient
from moorage_dev.cluster import ControlPlane
from moorage_proxyrunner.backends.stdio.attach import open_exec_channel
from moorage_proxyrunner.startup.cluster import ClusterOptions

pytestmark = pytest.mark.integration


def recording_opener(kube: KubeClient, namespace: str, opened: list[str]) -> Callable[[str], Any]:
    """pods/exec in place of pods/attach (kwok), remembering which pod each channel went to."""

    async def open_channel(pod: str) -> Any:
        opened.append(pod)
        return await open_exec_channel(
            kube, namespace=namespace, pod=pod, command=[MCP_SERVER_TIME]
        )

    return open_channel


@contextlib.asynccontextmanager
async def redis_address(tmp_path: Path) -> AsyncIterator[str]:
    directory = tmp_path / "redis"
    directory.mkdir()
    with running_redis(directory) as server:
        yield server.address


async def test_two_stdio_proxies_attach_to_their_own_backend_pods(
    kube: KubeClient,
    namespace: str,
    owner: dict[str, Any],
    exec_node: ExecNode,
    control_plane: ControlPlane,
    tmp_path: Path,
) -> None:
    async with redis_address(tmp_path) as address:
        config = write_runconfig(
            tmp_path,
            namespace=namespace,
            owner=owner,
            pod_template_spec={"spec": EXEC_POD_PLACEMENT},
            session_storage={"type": "redis", "redis": {"address": address, "key_prefix": "t:"}},
            proxy_replicas=2,
        )

        def options(holder: str) -> ClusterOptions:
            return ClusterOptions(
                config=config,
                host="127.0.0.1",
                port=0,
                kubeconfig=str(control_plane.kubeconfig),
                readiness_timeout=90,
                drain_timeout=2,
                lease_holder=holder,
            )

        opened: dict[str, list[str]] = {"time-proxy-a": [], "time-proxy-b": []}
        async with (
            running_proxy(
                options("time-proxy-a"),
                open_channel=recording_opener(kube, namespace, opened["time-proxy-a"]),
            ) as a,
            running_proxy(
                options("time-proxy-b"),
                open_channel=recording_opener(kube, namespace, opened["time-proxy-b"]),
            ) as b,
        ):
            ports = await asyncio.gather(a.port(), b.port())
            sts = await kube.get(STATEFULSETS, name="time", namespace=namespace)
            assert sts["spec"]["replicas"] == 2
            for port in ports:
                await eventually(
                    lambda port=port: backend_ready(port), timeout=60, message="attached"
                )
            holders = {}
            for ordinal in (0, 1):
                lease = await kube.get(LEASES, name=f"time-stdio-{ordinal}", namespace=namespace)
                holders[lease["spec"]["holderIdentity"]] = ordinal
            assert set(holders) == {"time-proxy-a", "time-proxy-b"}
            for holder, pods in opened.items():
                assert set(pods) == {f"time-{holders[holder]}"}, opened
            for port in ports:
                async with Client(f"http://127.0.0.1:{port}/mcp", mode="legacy") as client:
                    result = await client.call_tool("get_current_time", {"timezone": "UTC"})
                    assert not result.is_error

            # Scaled to three (a live RunConfig change in the ConfigMap): the running proxies
            # scale the backend pods themselves, no restart.
            rescaled = json.loads(config.read_text()) | {"proxy_replicas": 3}
            await kube.create(
                CONFIGMAPS,
                {
                    "apiVersion": "v1",
                    "kind": "ConfigMap",
                    "metadata": {"name": "time-runconfig"},
                    "data": {RUNCONFIG_KEY: json.dumps(rescaled)},
                },
                namespace=namespace,
            )

            async def three() -> bool:
                live = await kube.get(STATEFULSETS, name="time", namespace=namespace)
                assert live["spec"]["replicas"] == 3, live["spec"]["replicas"]
                return True

            await eventually(three, timeout=30, message="StatefulSet scaled to 3")
            assert not a.task.done()
            assert not b.task.done()

        # Both stopped: their Leases were released for the next replicas.
        for ordinal in (0, 1):
            lease = await kube.get(LEASES, name=f"time-stdio-{ordinal}", namespace=namespace)
            assert not lease["spec"].get("holderIdentity"), lease["spec"]
