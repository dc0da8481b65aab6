"""A remote MCP server (an MCPRemoteProxy) behind two proxy replicas sharing their sessions
through a real Redis: two `moorage-proxyrunner run --local` processes with one RunConfig naming
the remote, its fixed credential and the Redis, and an `mcp` SDK client whose requests alternate
between them. Over streamable HTTP each replica serves the session's requests itself; over
legacy HTTP+SSE the POSTs landing on the replica without the stream are forwarded to the one
holding it. Either way every request reaching the remote carries the remote's credential, never
the caller's."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx2
import pytest
from e2e.proxy.test_proxy_http_replicas import rotating, rotating_client
from e2e.scaleout.scaleoutkit import runconfig
from mcp import Client
from mcp.client.sse import sse_client
from mcp.shared._httpx_utils import create_mcp_http_client
from remotekit import remote_upstream
from testkit.redisserver import running_redis
from testkit.replicas import is_healthy, metric, running_replicas
from testkit.waiting import eventually

pytestmark = [pytest.mark.e2e, pytest.mark.filterwarnings("ignore::DeprecationWarning")]

UPSTREAM_TOKEN = "remote-static-token"
ISSUER = "http://127.0.0.1:9"  # the static verifier never asks it
AUTH = {"type": "bearerToken", "config_name": "b", "bearer_token": {"env": "REMOTE_TOKEN"}}


@pytest.mark.parametrize("transport", ["streamable-http", "sse"])
async def test_a_remote_session_alternates_between_replicas_with_the_remotes_credential(
    tmp_path: Path, transport: str
) -> None:
    options = ("--static", UPSTREAM_TOKEN, *(("--transport", "sse") if transport == "sse" else ()))
    with running_redis(tmp_path) as redis:
        async with remote_upstream(tmp_path, ISSUER, *options) as upstream:
            remote = {"url": upstream.url, "transport": transport, "allow_private_endpoint": True}
            config = runconfig(redis, remote=remote, outgoing_auth=AUTH)
            env = {"REMOTE_TOKEN": UPSTREAM_TOKEN}
            with running_replicas(tmp_path, config, (), count=2, env=env) as started:
                bases = [replica.base for replica in started]
                for base in bases:
                    await eventually(lambda base=base: is_healthy(base), message=base, timeout=90)
                if transport == "streamable-http":
                    async with rotating_client(bases, "a-caller-credential") as client:
                        await echo_four_times(client)
                    calls = "moorage_proxy_requests_total"
                    served = [await metric(base, calls, method="tools/call") for base in bases]
                    assert sum(served) == 4  # each replica served its share itself
                    assert min(served) >= 1, served
                else:
                    headers = {"Authorization": "Bearer a-caller-credential"}

                    def factory(**options: Any) -> httpx2.AsyncClient:
                        client = create_mcp_http_client(**options)
                        client.event_hooks["request"].append(
                            rotating(bases, methods=frozenset({"POST"}))
                        )
                        return client

                    stream = sse_client(
                        f"{bases[0]}/sse", headers=headers, httpx_client_factory=factory
                    )
                    async with Client(stream, mode="legacy") as client:
                        await echo_four_times(client)
                    forwarded = "moorage_proxy_requests_forwarded_total"
                    # Half the POSTs (initialize, initialized, four calls) went through the second.
                    assert await metric(bases[1], forwarded, outcome="ok") == 3
    seen = {authorization for authorization, _ in upstream.received()}
    assert seen == {f"Bearer {UPSTREAM_TOKEN}"}


async def echo_four_times(client: Client) -> None:
    for index in range(4):
        echoed = await client.call_tool("echo", {"text": f"hi {index}"})
        assert echoed.content[0].text == f"hi {index}"  # type: ignore[union-attr]
