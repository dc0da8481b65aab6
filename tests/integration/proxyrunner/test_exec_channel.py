"""The websocket channel protocol end to end through the real apiserver and kwok's kubelet server.

`pods/exec` on the exec-capable fake node runs the command on this machine with stdin piped, so
stdin, stdout, stderr and the error channel all travel through the apiserver's stream handling.
`pods/attach` on that node follows a log file: it proves the attach request is accepted and
proxied, and that stdout arrives on the attach channel.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from kwok_exec_node import EXEC_POD_PLACEMENT, ExecNode
from testkit.waiting import eventually

from moorage_core.errors import KubeError
from moorage_core.kube import PODS, KubeClient
from moorage_proxyrunner.backends.stdio.attach import (
    V5_PROTOCOL,
    StreamChannel,
    open_attach_channel,
    open_exec_channel,
)
from moorage_proxyrunner.backends.stdio.channels import ChannelClosed
from moorage_proxyrunner.workload.builders import is_pod_ready

pytestmark = pytest.mark.integration

MCP_SERVER_TIME = str(Path(sys.executable).with_name("mcp-server-time"))


async def create_ready_pod(kube: KubeClient, namespace: str, name: str) -> dict[str, Any]:
    await kube.create(
        PODS,
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {
                **EXEC_POD_PLACEMENT,
                "containers": [
                    {"name": "mcp", "image": "example/mcp:1", "stdin": True, "tty": False}
                ],
            },
        },
        namespace=namespace,
    )

    async def ready() -> dict[str, Any] | None:
        pod = await kube.get(PODS, name=name, namespace=namespace)
        return pod if is_pod_ready(pod) else None

    return await eventually(ready, timeout=60, message=f"pod {name} ready")


@pytest_asyncio.fixture
async def exec_pod(kube: KubeClient, namespace: str, exec_node: ExecNode) -> str:
    await create_ready_pod(kube, namespace, "exec-target")
    return "exec-target"


@pytest_asyncio.fixture
async def channels() -> AsyncIterator[list[StreamChannel]]:
    opened: list[StreamChannel] = []
    yield opened
    for channel in opened:
        await channel.close()


async def test_exec_round_trips_lines_through_stdin_and_stdout(
    kube: KubeClient, namespace: str, exec_pod: str, channels: list[StreamChannel]
) -> None:
    channel = await open_exec_channel(kube, namespace=namespace, pod=exec_pod, command=["cat"])
    channels.append(channel)
    assert channel.protocol == V5_PROTOCOL
    lines = [json.dumps({"jsonrpc": "2.0", "id": i, "method": "ping"}).encode() for i in range(20)]
    for line in lines:
        await channel.send(line)
    assert [await channel.receive() for _ in lines] == lines


async def test_exec_reports_a_clean_exit(
    kube: KubeClient, namespace: str, exec_pod: str, channels: list[StreamChannel]
) -> None:
    # kwok never closes a process's stdin pipe (so a half-close cannot end `cat`): the command
    # exits by itself after one line.
    channel = await open_exec_channel(
        kube, namespace=namespace, pod=exec_pod, command=["sh", "-c", 'read line; echo "got $line"']
    )
    channels.append(channel)
    await channel.send(b"ping")
    assert await channel.receive() == b"got ping"
    with pytest.raises(ChannelClosed, match="process exited"):
        await channel.receive()
    assert channel.status is not None
    assert channel.status.success


async def test_exec_carries_a_line_of_several_megabytes(
    kube: KubeClient, namespace: str, exec_pod: str, channels: list[StreamChannel]
) -> None:
    channel = await open_exec_channel(kube, namespace=namespace, pod=exec_pod, command=["cat"])
    channels.append(channel)
    big = json.dumps({"jsonrpc": "2.0", "id": 1, "result": {"text": "x" * (3 * 1024 * 1024)}})
    await channel.send(big.encode())
    assert await channel.receive() == big.encode()


async def test_exec_reports_a_non_zero_exit_and_logs_stderr(
    kube: KubeClient,
    namespace: str,
    exec_pod: str,
    channels: list[StreamChannel],
    capsys: pytest.CaptureFixture[str],
) -> None:
    channel = await open_exec_channel(
        kube,
        namespace=namespace,
        pod=exec_pod,
        command=["sh", "-c", "echo out; echo complaint-on-stderr >&2; exit 3"],
    )
    channels.append(channel)
    assert await channel.receive() == b"out"
    # kwok wraps the exit error, so the Status is an InternalError naming it (a kubelet sends
    # NonZeroExitCode with the code, which the unit tests cover).
    with pytest.raises(ChannelClosed, match=r"^stream failed: .*exit status 3"):
        await channel.receive()
    assert channel.status is not None
    assert not channel.status.success
    assert "complaint-on-stderr" in capsys.readouterr().out


async def test_exec_speaks_mcp_with_a_real_stdio_server(
    kube: KubeClient, namespace: str, exec_pod: str, channels: list[StreamChannel]
) -> None:
    channel = await open_exec_channel(
        kube, namespace=namespace, pod=exec_pod, command=[MCP_SERVER_TIME]
    )
    channels.append(channel)
    initialize = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-06-18",
            "capabilities": {},
            "clientInfo": {"name": "moorage-tests", "version": "0"},
        },
    }
    await channel.send(json.dumps(initialize).encode())
    reply = json.loads(await channel.receive())
    assert reply["id"] == 1
    assert reply["result"]["serverInfo"]["name"] == "mcp-time"
    await channel.send(b'{"jsonrpc":"2.0","method":"notifications/initialized"}')
    await channel.send(b'{"jsonrpc":"2.0","id":2,"method":"tools/list"}')
    tools = json.loads(await channel.receive())
    assert {t["name"] for t in tools["result"]["tools"]} >= {"get_current_time"}


async def test_exec_into_a_missing_container_fails_clearly(
    kube: KubeClient, namespace: str, exec_pod: str
) -> None:
    with pytest.raises(KubeError, match="400"):
        await open_exec_channel(
            kube, namespace=namespace, pod=exec_pod, command=["cat"], container="nope"
        )


async def test_attach_streams_the_containers_output(
    kube: KubeClient,
    namespace: str,
    exec_pod: str,
    exec_node: ExecNode,
    channels: list[StreamChannel],
) -> None:
    channel = await open_attach_channel(kube, namespace=namespace, pod=exec_pod)
    channels.append(channel)
    marker = f'{{"jsonrpc":"2.0","method":"notifications/message","params":{{"ns":"{namespace}"}}}}'

    # kwok follows the file from its end once the attach is set up; write until it is seen.
    async def delivered() -> bool:
        stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        with exec_node.attach_log.open("a") as log:
            log.write(f"{stamp} stdout F {marker}\n")
        try:
            async with asyncio.timeout(1):
                while await channel.receive() != marker.encode():
                    pass
        except TimeoutError:
            return False
        return True

    assert await eventually(delivered, timeout=30, message="attached stdout")
