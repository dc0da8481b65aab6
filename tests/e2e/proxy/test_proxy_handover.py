"""A replica's handover through a real Redis: two `moorage-proxyrunner run --local` processes in
front of the toolbox server on stdio, sharing their sessions. SIGTERM to the replica holding a
session with a call in flight: the call is answered, a new session is refused there with 503,
the process exits 0, the session's record is left in Redis without an owner, and the session's
next request on the other replica is served."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from proxykit import JSON, TOOLBOX, call, initialize, initialize_request
from testkit.redisserver import running_redis
from testkit.replicas import is_healthy, metric, running_replicas
from testkit.waiting import eventually

from moorage_api.runconfig import RunConfigRedis
from moorage_proxyrunner.sessionstore.redisstore import open_redis_store

pytestmark = pytest.mark.e2e

PREFIX = "moorage:e2e:handover:"


async def test_a_replica_stopped_with_a_call_in_flight_hands_its_session_over(
    tmp_path: Path,
) -> None:
    with running_redis(tmp_path) as redis:
        config: dict[str, Any] = {
            "schema_version": "moorage/v1",
            "session_storage": {
                "type": "redis",
                "redis": {"address": redis.address, "key_prefix": PREFIX},
            },
        }
        env = {"MOORAGE_DRAIN_TIMEOUT": "20s"}
        with running_replicas(tmp_path, config, ["--", *TOOLBOX, "stdio"], count=2, env=env) as (
            first,
            second,
        ):
            for replica in (first, second):
                await eventually(
                    lambda replica=replica: is_healthy(replica.base),
                    message=f"{replica.base} healthy",
                    timeout=90,
                )
            store = open_redis_store(
                RunConfigRedis(address=redis.address, key_prefix=PREFIX), resume_window=16
            )
            try:
                async with aiohttp.ClientSession() as http:
                    session_id = await initialize(http, f"{first.base}/mcp")
                    record = await store.load(session_id)
                    assert record is not None
                    assert record.owner == first.address
                    headers = {**JSON, "Mcp-Session-Id": session_id}
                    slow = asyncio.ensure_future(
                        http.post(
                            f"{first.base}/mcp",
                            json=call("wait", {"seconds": 3.5}),
                            headers=headers,
                        )
                    )

                    async def in_flight() -> bool:
                        inflight = await metric(
                            first.base, "moorage_proxy_backend_inflight_requests"
                        )
                        return inflight == 1.0

                    await eventually(in_flight, message="call in flight")
                    assert first.process is not None
                    first.process.send_signal(signal.SIGTERM)
                    await eventually(
                        lambda: _is_unready(http, first.base), message="not ready once signalled"
                    )
                    async with http.post(
                        f"{first.base}/mcp", json=initialize_request(), headers=JSON
                    ) as resp:
                        assert resp.status == 503
                        error = (await resp.json())["error"]
                    assert error["code"] == -32000
                    assert "shutting down" in error["message"]
                    async with await slow as resp:
                        answer = await resp.json()
                    assert answer["result"]["content"][0]["text"] == "waited 3.5"
                    assert await asyncio.to_thread(first.process.wait, 30) == 0

                    record = await store.load(session_id)
                    assert record is not None
                    assert record.owner == ""
                    async with http.post(
                        f"{second.base}/mcp",
                        json=call("echo", {"text": "adopted"}, 8),
                        headers=headers,
                    ) as resp:
                        assert resp.status == 200, await resp.text()
                        served = await resp.json()
                    assert served["result"]["content"][0]["text"] == "adopted"
                    record = await store.load(session_id)
                    assert record is not None
                    assert record.owner == second.address
            finally:
                await store.close()


async def _is_unready(http: aiohttp.ClientSession, base: str) -> bool:
    async with http.get(f"{base}/health") as resp:
        return resp.status == 503
