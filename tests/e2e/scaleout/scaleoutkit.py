"""Three proxy runner replicas behind a real HAProxy, sharing a real Redis (issue #19's "Done
when"): `scaled_out` starts the Redis, the replicas (`moorage-proxyrunner run --local`, one
RunConfig with `session_storage: redis`) in front of one backend, and HAProxy round-robin over
them, and waits until HAProxy sees every replica up. Each replica can be killed and started
again on its own port; Redis can be stopped and started again on its own.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from e2e.proxy.proxykit import TIME_SERVER, TOOLBOX
from mcp import types as mcp_types
from testkit.balancer import Balancer, running_balancer
from testkit.redisserver import RedisServer, running_redis
from testkit.replicas import Replica, is_healthy, metric, running_replicas
from testkit.waiting import eventually

REPLICAS = 3
KEY_PREFIX = "moorage:e2e:scaleout:"

STDIO_TOOLBOX = ("--", *TOOLBOX, "stdio")
STDIO_TIME = ("--", *TIME_SERVER)
REQUESTS = "moorage_proxy_requests_total"


def http_backend(transport: str, url: str) -> tuple[str, ...]:
    """`run --local` arguments for an MCP server on HTTP (`streamable-http` or `sse`)."""
    return ("--transport", transport, "--target-url", url)


def runconfig(redis: RedisServer, **extra: Any) -> dict[str, Any]:
    """A RunConfig whose sessions (and rate limits) live in `redis`."""
    return {
        "schema_version": "moorage/v1",
        "session_storage": {
            "type": "redis",
            "redis": {"address": redis.address, "key_prefix": KEY_PREFIX},
        },
        **extra,
    }


@dataclass
class ScaledOut:
    redis: RedisServer
    replicas: list[Replica]
    balancer: Balancer

    @property
    def mcp(self) -> str:
        return f"{self.balancer.base}/mcp"

    @property
    def sse(self) -> str:
        return f"{self.balancer.base}/sse"

    async def served(self) -> list[float]:
        """MCP requests each replica has answered so far (a killed one: 0)."""
        return [
            await metric(replica.base, REQUESTS) if replica.alive else 0.0
            for replica in self.replicas
        ]

    async def all_up(self) -> None:
        """Wait until every running replica is healthy and HAProxy has it in rotation."""
        for replica in self.replicas:
            if replica.alive:
                await eventually(
                    lambda replica=replica: is_healthy(replica.base),
                    message=f"replica {replica.index} healthy",
                    timeout=90,
                )
        expected = {f"r{r.index}": "UP" if r.alive else "DOWN" for r in self.replicas}
        await eventually(
            lambda: self.balancer.server_states() == expected,
            message=f"HAProxy sees {expected}",
            timeout=30,
        )

    async def kill(self, index: int) -> None:
        """SIGKILL one replica and wait until HAProxy has taken it out."""
        self.replicas[index].kill()
        await eventually(
            lambda: self.balancer.server_states()[f"r{index}"].startswith("DOWN"),
            message=f"HAProxy takes r{index} out",
            timeout=30,
        )

    async def restart(self, index: int) -> None:
        self.replicas[index].start()
        await self.all_up()

    def assert_alive(self) -> None:
        """Redis aside, every process is still running (none crashed)."""
        assert self.balancer.process is not None
        assert self.balancer.process.poll() is None
        for replica in self.replicas:
            assert replica.alive, replica.log.read_text()[-3000:]


@contextlib.asynccontextmanager
async def scaled_out(
    directory: Path,
    backend: Sequence[str],
    *,
    count: int = REPLICAS,
    env: dict[str, str] | None = None,
    **config: Any,
) -> AsyncIterator[ScaledOut]:
    """Redis, `count` replicas in front of `backend` (RunConfig `config` besides the session
    storage), HAProxy in front of them; all up."""
    with (
        running_redis(directory) as redis,
        running_replicas(
            directory, runconfig(redis, **config), backend, count=count, env=env
        ) as replicas,
        running_balancer(directory, [r.address for r in replicas]) as balancer,
    ):
        cluster = ScaledOut(redis, replicas, balancer)
        await cluster.all_up()
        yield cluster


async def greet(context: Any, params: Any) -> mcp_types.ElicitResult:
    """An SDK client's elicitation answer: the toolbox's `ask_name` greets "Ada"."""
    return mcp_types.ElicitResult(action="accept", content={"name": "Ada"})


def text_of(result: Any) -> str:
    return " ".join(c.text for c in result.content if isinstance(c, mcp_types.TextContent))


def spread(before: list[float], after: list[float]) -> list[float]:
    """Requests each replica served between two `served()` readings."""
    return [b - a for a, b in zip(before, after, strict=True)]
