"""The npm "everything" server over stdio behaves behind the proxy as it does directly.

The server (`@modelcontextprotocol/server-everything`, the version the example image pins,
installed by `scripts/node.sh`) speaks only the handshake era. It asks `roots/list` as soon as it
is initialised; directly that is its one client, behind the proxy it is before any client
exists, so the proxy holds the request until a client that declared roots opens a stream.
It asks for sampling when a resource is subscribed, sends resource updates every 10 s, and
answers `sampleLLM`, `startElicitation` and `longRunningOperation` with sampling, elicitation
and progress.

Each story runs once against the server directly (its stdio, the SDK client) and once through
the proxy, over streamable HTTP and over legacy HTTP+SSE, and both must tell the same. A
2026-07-28 client through the proxy gets the same tool results, its questions coming back as
`input_required` rounds.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from mcp import Client, MCPError, StdioServerParameters
from mcp import types as mcp_types
from mcp.client.sse import sse_client
from mcp.client.subscriptions import SubscriptionLost
from proxykit import node_binary, node_tools, running_proxy, stdio_backend
from testkit.waiting import eventually

from moorage_proxyrunner.policy.reload import load_local_runconfig
from moorage_proxyrunner.startup.local import LocalConfig

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

ROOTS = [mcp_types.Root(uri="file:///work/project", name="project")]
SUBSCRIBED = "test://static/resource/1"


@pytest.fixture(scope="module")
def everything() -> tuple[str, ...]:
    root = node_tools()
    server = root / "node_modules" / "@modelcontextprotocol" / "server-everything" / "dist"
    return (node_binary(root), str(server / "index.js"), "stdio")


@dataclass
class Observed:
    """What one client saw of the server: what it was asked and what it was told."""

    roots_asked: int = 0
    sampled: list[str] = field(default_factory=list)
    logs: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)

    async def list_roots(self, context: Any) -> mcp_types.ListRootsResult:
        self.roots_asked += 1
        return mcp_types.ListRootsResult(roots=ROOTS)

    async def sample(self, context: Any, params: Any) -> mcp_types.CreateMessageResult:
        prompt = params.messages[0].content.text
        self.sampled.append(prompt)
        return mcp_types.CreateMessageResult(
            role="assistant",
            content=mcp_types.TextContent(type="text", text=f"sampled {len(prompt)} chars"),
            model="test-model",
            stopReason="endTurn",
        )

    async def elicit(self, context: Any, params: Any) -> mcp_types.ElicitResult:
        return mcp_types.ElicitResult(
            action="accept", content={"color": "teal", "number": 7, "pets": "cats"}
        )

    async def log(self, params: mcp_types.LoggingMessageNotificationParams) -> None:
        self.logs.append(str(params.data))

    async def handle(self, message: Any) -> None:
        notification = getattr(message, "root", message)
        if isinstance(notification, mcp_types.ResourceUpdatedNotification):
            self.updated.append(str(notification.params.uri))

    def client(self, target: Any, mode: str = "legacy") -> Client:
        return Client(
            target,
            mode=mode,  # type: ignore[arg-type]
            list_roots_callback=self.list_roots,
            sampling_callback=self.sample,
            elicitation_callback=self.elicit,
            logging_callback=self.log,
            message_handler=self.handle,
        )


def _texts(result: Any) -> list[str]:
    return [c.text for c in result.content if isinstance(c, mcp_types.TextContent)]


async def tool_story(client: Client) -> dict[str, Any]:
    """Sampling, elicitation and progress, as the client sees them."""
    progress: list[tuple[float, float | None]] = []

    async def on_progress(done: float, total: float | None, message: str | None) -> None:
        progress.append((done, total))

    sampled = await client.call_tool("sampleLLM", {"prompt": "say hi", "maxTokens": 20})
    elicited = await client.call_tool("startElicitation", {})
    long_running = await client.call_tool(
        "longRunningOperation", {"duration": 0.3, "steps": 3}, progress_callback=on_progress
    )
    return {
        "sampleLLM": _texts(sampled),
        "startElicitation": _texts(elicited),
        "longRunningOperation": _texts(long_running),
        "progress": progress,
    }


async def session_story(client: Client, observed: Observed) -> dict[str, Any]:
    """A handshake-era client's whole story: the start-up roots request and the log line that
    follows it, the tools, and a resource subscription (sampling, then updates)."""
    await eventually(lambda: observed.roots_asked == 1, message="the server asked for roots")
    await eventually(
        lambda: any("Initial roots received" in line for line in observed.logs),
        message="the server logged the roots it got",
    )
    roots = await client.call_tool("listRoots", {})
    story = await tool_story(client)
    await client.subscribe_resource(SUBSCRIBED)
    await eventually(
        lambda: SUBSCRIBED in observed.updated, timeout=30, message="a resource update came"
    )
    return {
        **story,
        "listRoots": _texts(roots),
        "roots_asked": observed.roots_asked,
        "startup_logs": [line for line in observed.logs if "roots" in line],
        "subscription_sampled": [p for p in observed.sampled if "subscription" in p],
    }


async def direct_story(everything: tuple[str, ...]) -> dict[str, Any]:
    observed = Observed()
    command, *args = everything
    async with observed.client(StdioServerParameters(command=command, args=args)) as client:
        return await session_story(client, observed)


@pytest.mark.parametrize(
    "connect",
    [
        pytest.param(lambda proxy: proxy.mcp, id="streamable-http"),
        pytest.param(lambda proxy: sse_client(proxy.sse), id="legacy-sse"),
    ],
)
async def test_a_handshake_era_client_sees_what_it_sees_directly(
    everything: tuple[str, ...], connect: Callable[[Any], Any]
) -> None:
    expected = await direct_story(everything)
    observed = Observed()
    async with (
        running_proxy(stdio_backend(everything)) as proxy,
        observed.client(connect(proxy)) as client,
    ):
        assert await session_story(client, observed) == expected
    assert expected["roots_asked"] == 1
    assert "Current MCP Roots (1 total)" in expected["listRoots"][0]
    assert expected["progress"] == [(1.0, 3.0), (2.0, 3.0), (3.0, 3.0)]
    assert expected["subscription_sampled"]


async def test_a_2026_07_28_client_gets_the_same_tool_results_through_input_required(
    everything: tuple[str, ...],
) -> None:
    direct = Observed()
    command, *args = everything
    async with direct.client(StdioServerParameters(command=command, args=args)) as client:
        expected = await tool_story(client)
    modern = Observed()
    async with (
        running_proxy(stdio_backend(everything)) as proxy,
        modern.client(proxy.mcp, mode="2026-07-28") as client,
    ):
        assert await tool_story(client) == expected
    assert modern.sampled == direct.sampled
    assert expected["startElicitation"][0].startswith("✅")


def write_policies(path: Path, *policies: str) -> LocalConfig:
    path.write_text(json.dumps({"schema_version": "moorage/v1", "authz": {"policies": policies}}))
    return LocalConfig(path=path, runconfig=load_local_runconfig(path.read_text()))


async def test_a_subscription_the_policy_stops_allowing_ends_and_its_client_is_told(
    everything: tuple[str, ...], tmp_path: Path
) -> None:
    path = tmp_path / "runconfig.json"
    config = write_policies(path, "permit(principal, action, resource);")
    observed = Observed()
    kept = "test://static/resource/2"
    async with (
        running_proxy(stdio_backend(everything), config=config) as proxy,
        observed.client(proxy.mcp) as client,
    ):
        await client.subscribe_resource(SUBSCRIBED)
        await client.subscribe_resource(kept)
        write_policies(
            path,
            "permit(principal, action, resource);",
            f'forbid(principal, action == Action::"read_resource", resource == Resource::"{SUBSCRIBED}");',
        )
        await eventually(
            lambda: any(
                f"subscription to {SUBSCRIBED} has ended" in line for line in observed.logs
            ),
            message="the client was told its subscription ended",
        )
        # The other subscription stays, and updates keep coming for it alone.
        observed.updated.clear()
        await eventually(lambda: kept in observed.updated, message="updates for the kept URI")
        assert SUBSCRIBED not in observed.updated
        with pytest.raises(MCPError, match="Forbidden"):
            await client.read_resource(SUBSCRIBED)


async def test_a_listen_stream_the_policy_stops_allowing_ends_with_an_error(
    everything: tuple[str, ...], tmp_path: Path
) -> None:
    path = tmp_path / "runconfig.json"
    config = write_policies(path, "permit(principal, action, resource);")
    async with running_proxy(stdio_backend(everything), config=config) as proxy:
        ended = await lose_listen_stream(proxy.mcp, path, SUBSCRIBED)
    assert "no longer allows reading" in ended


async def lose_listen_stream(target: Any, path: Path, uri: str) -> str:
    """Listen to `uri` as a 2026-07-28 client, then forbid reading it in the policy file at
    `path`: the error the stream ended with."""
    async with (
        Client(target, mode="2026-07-28") as client,
        client.listen(resource_subscriptions=[uri]) as subscription,
    ):
        assert subscription.honored.resource_subscriptions == [uri]
        write_policies(
            path,
            "permit(principal, action, resource);",
            f'forbid(principal, action, resource == Resource::"{uri}");',
        )
        with pytest.raises(SubscriptionLost) as ended:
            async for _ in subscription:
                pass
    return str(ended.value.__cause__)
