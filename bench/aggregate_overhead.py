"""The aggregator's overhead: a `tools/call` through it against calling the backend's own proxy,
and the time of a merged `tools/list` over 10 backends of 50 tools each.

1. Call: the toolbox (stdio) behind its own `moorage-proxyrunner run --local` (as a member's
   proxy in a cluster), and an aggregator (`run --local --config` with `aggregate`, strategy
   `priority`, so the tool keeps its name `echo`) in front of that proxy alone. Direct and
   aggregated calls alternate in blocks, with `bench/proxy_overhead.py`'s raw keep-alive client.
2. List: 10 `mcp` SDK servers of 50 generated tools each (`bench/many_tools_server.py`, on
   streamable HTTP), aggregated with strategy `prefix` (500 tools); `tools/list` through the
   aggregator (every listing fetches each backend's list afresh) against one backend's own.

Prints the figures and writes them as a section of docs/benchmarks.md.
Usage: `uv run python bench/aggregate_overhead.py [--calls 1000] [--lists 100]`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
from proxy_overhead import (
    PROXY,
    REPO,
    TOOLBOX,
    Timings,
    free_port,
    http_client,
    interleaved,
    open_session,
    process,
    read_answer,
    row,
    wait_for_port,
    write_section,
)

BEGIN, END = "<!-- aggregate_overhead:begin -->", "<!-- aggregate_overhead:end -->"
MANY_TOOLS = (sys.executable, str(REPO / "bench" / "many_tools_server.py"))
BACKENDS, TOOLS = 10, 50


def aggregate_config(urls: dict[str, str], strategy: str) -> dict[str, Any]:
    return {
        "schema_version": "moorage/v1",
        "name": "bench",
        "namespace": "local",
        "aggregate": {
            "backends": [{"name": name, "url": url} for name, url in urls.items()],
            "conflict_resolution": {"strategy": strategy},
        },
    }


@contextlib.asynccontextmanager
async def aggregator(workdir: Path, config: dict[str, Any]) -> AsyncIterator[str]:
    """The aggregator's proxy runner; yields its MCP URL."""
    path = workdir / f"aggregate-{len(config['aggregate']['backends'])}.json"
    path.write_text(json.dumps(config))
    port = free_port()
    async with process(
        *PROXY, "--port", str(port), "--config", str(path), port=port, ready_path="/health"
    ):
        yield f"http://127.0.0.1:{port}/mcp"


async def measure_call(workdir: Path, calls: int, warmup: int) -> tuple[Timings, Timings]:
    port = free_port()
    async with process(*PROXY, "--port", str(port), "--", *TOOLBOX, "stdio", port=port):
        await wait_for_port(port, path="/health")
        member = f"http://127.0.0.1:{port}/mcp"
        async with (
            aggregator(workdir, aggregate_config({"toolbox": member}, "priority")) as url,
            http_client(member) as direct,
            http_client(url) as aggregated,
        ):
            return await interleaved(direct, aggregated, calls, warmup)


@contextlib.asynccontextmanager
async def many_tools_servers() -> AsyncIterator[dict[str, str]]:
    ports = [free_port() for _ in range(BACKENDS)]
    processes = [
        await asyncio.create_subprocess_exec(
            *MANY_TOOLS,
            "--port",
            str(port),
            "--tools",
            str(TOOLS),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        for port in ports
    ]
    try:
        for port in ports:
            await wait_for_port(port)
        yield {f"b{i}": f"http://127.0.0.1:{port}/mcp" for i, port in enumerate(ports)}
    finally:
        for proc in processes:
            proc.terminate()
        for proc in processes:
            await proc.wait()


async def time_lists(url: str, count: int, expected: int) -> Timings:
    async with aiohttp.ClientSession() as http:
        headers = await open_session(http, url)
        samples: list[float] = []
        for i in range(count + max(5, count // 10)):
            body = {"jsonrpc": "2.0", "id": i + 1, "method": "tools/list"}
            started = time.perf_counter()
            async with http.post(url, json=body, headers=headers) as resp:
                answer = await read_answer(resp)
            elapsed = time.perf_counter() - started
            assert len(answer["result"]["tools"]) == expected, answer
            samples.append(elapsed)
        return Timings(samples[-count:])


async def measure_lists(workdir: Path, count: int) -> tuple[Timings, Timings]:
    async with many_tools_servers() as urls:
        one = await time_lists(next(iter(urls.values())), count, TOOLS)
        async with aggregator(workdir, aggregate_config(urls, "prefix")) as url:
            merged = await time_lists(url, count, BACKENDS * TOOLS)
    return one, merged


async def main(calls: int, lists: int) -> None:
    warmup = max(50, calls // 10)
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        direct, aggregated = await measure_call(workdir, calls, warmup)
        one, merged = await measure_lists(workdir, lists)
    lines = [
        "## Proxy runner: the aggregator's overhead",
        "",
        f"`bench/aggregate_overhead.py`, milliseconds, everything on loopback. `tools/call`: "
        f"{calls} sequential calls (echo) each way after {warmup} warm-up calls, alternating in "
        "blocks of 50, raw keep-alive JSON-RPC clients; the toolbox (stdio) behind its own "
        "proxy runner (as a member's proxy in a cluster), called directly and through an "
        "aggregator (`run --local --config` with `aggregate`, one backend, strategy `priority`) "
        "in front of that proxy.",
        "",
        "| path | direct p50 | aggregated p50 | overhead p50 | direct p99 | aggregated p99 | overhead p99 |",
        "|---|---|---|---|---|---|---|",
        row("`tools/call` via the member's proxy", direct, aggregated),
        "",
        f"`tools/list`: {lists} sequential listings after warm-up; {BACKENDS} `mcp` SDK "
        f"servers of {TOOLS} generated tools each (`bench/many_tools_server.py`, streamable "
        f"HTTP), aggregated with strategy `prefix` ({BACKENDS * TOOLS} tools); every listing "
        "through the aggregator fetches each backend's list afresh, concurrently.",
        "",
        "| listing | p50 | p99 |",
        "|---|---|---|",
        f"| one backend directly ({TOOLS} tools) | {one.p50:.3f} | {one.p99:.3f} |",
        f"| aggregator, {BACKENDS} x {TOOLS} tools | {merged.p50:.3f} | {merged.p99:.3f} |",
        "",
        f"- Machine: {os.cpu_count()} CPUs, Python {sys.version.split()[0]}, load average "
        f"{os.getloadavg()[0]:.1f} at the end; clients, proxies and servers share the CPUs with "
        "whatever else runs.",
    ]
    section = "\n".join(lines)
    print(section)
    write_section(section, BEGIN, END)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=1000, help="calls each way (default 1000)")
    parser.add_argument("--lists", type=int, default=100, help="listings each way (default 100)")
    options = parser.parse_args()
    asyncio.run(main(options.calls, options.lists))
