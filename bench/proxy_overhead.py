"""Proxy overhead on `tools/call`: through the proxy versus straight to the same server.

Runs on loopback only, in bounded loops, with lean raw clients (one JSON-RPC line over pipes
for stdio, one keep-alive HTTP POST for HTTP) so the figures show the proxy, not a client SDK:

- stdio: direct over the server's pipes vs. through `moorage-proxyrunner run --local` (a
  separate process) to the same kind of server;
- HTTP: direct to a streamable-HTTP server vs. through the proxy's HTTP backend;
- throughput: concurrent clients through the proxy to the stdio server;
- the proxy process's resident memory after the runs.

Prints the figures and writes them as a section of docs/benchmarks.md (other sections kept).
Usage: `uv run python bench/proxy_overhead.py [--calls 1000] [--clients 16]`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

REPO = Path(__file__).resolve().parents[1]
TOOLBOX = (
    sys.executable,
    str(REPO / "docker" / "examples" / "mcp-server-toolbox" / "toolbox_server.py"),
)
PROXY = (sys.executable, "-m", "moorage_proxyrunner", "run", "--local", "--log-level", "WARNING")
DOC = REPO / "docs" / "benchmarks.md"
BEGIN, END = "<!-- proxy_overhead:begin -->", "<!-- proxy_overhead:end -->"
HEADERS = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
INIT = {
    "protocolVersion": "2025-11-25",
    "capabilities": {},
    "clientInfo": {"name": "bench", "version": "1"},
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def call(request_id: int, text: str = "ping") -> dict[str, Any]:
    return {
        "jsonrpc": "2.0",
        "id": request_id,
        "method": "tools/call",
        "params": {"name": "echo", "arguments": {"text": text}},
    }


@dataclass
class Timings:
    samples: list[float]

    def pct(self, q: float) -> float:
        ordered = sorted(self.samples)
        return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] * 1000

    @property
    def p50(self) -> float:
        return self.pct(0.50)

    @property
    def p99(self) -> float:
        return self.pct(0.99)

    @property
    def mean(self) -> float:
        return statistics.fmean(self.samples) * 1000


Send = Callable[[int], Awaitable[None]]


async def interleaved(
    direct: Send, proxied: Send, calls: int, warmup: int, block: int = 50
) -> tuple[Timings, Timings]:
    """Time `calls` calls each way, alternating blocks so that load from anything else running on
    the machine falls on both sides alike."""
    for i in range(warmup):
        await direct(i)
        await proxied(i)
    samples: tuple[list[float], list[float]] = ([], [])
    sent = warmup
    while len(samples[1]) < calls:
        for side, send in enumerate((direct, proxied)):
            for _ in range(min(block, calls - len(samples[side]))):
                started = time.perf_counter()
                await send(sent)
                samples[side].append(time.perf_counter() - started)
                sent += 1
    return Timings(samples[0]), Timings(samples[1])


# ---- stdio, direct ----


@asynccontextmanager
async def stdio_direct() -> AsyncIterator[Send]:
    """A raw client on a stdio server's pipes; yields its `send(i)`."""
    process = await asyncio.create_subprocess_exec(
        *TOOLBOX,
        "stdio",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        limit=16 * 1024 * 1024,
    )
    assert process.stdin is not None
    assert process.stdout is not None
    stdin, stdout = process.stdin, process.stdout

    async def rpc(message: dict[str, Any]) -> None:
        stdin.write(json.dumps(message).encode() + b"\n")
        await stdin.drain()
        if "id" not in message:
            return
        while True:
            reply = json.loads(await stdout.readline())
            if reply.get("id") == message["id"] and "method" not in reply:
                return

    try:
        await rpc({"jsonrpc": "2.0", "id": "init", "method": "initialize", "params": INIT})
        await rpc({"jsonrpc": "2.0", "method": "notifications/initialized"})
        yield lambda i: rpc(call(i))
    finally:
        stdin.close()
        await process.wait()


# ---- HTTP clients ----


async def open_session(
    http: aiohttp.ClientSession, url: str, base: dict[str, str] = HEADERS
) -> dict[str, str]:
    """Initialises a session with headers `base`; the headers for its later requests."""
    async with http.post(
        url,
        json={"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": INIT},
        headers=base,
    ) as resp:
        assert resp.status == 200, await resp.text()
        session = resp.headers.get("Mcp-Session-Id")
        await resp.read()
    headers = dict(base)
    if session:
        headers["Mcp-Session-Id"] = session
    async with http.post(
        url, json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=headers
    ) as resp:
        await resp.read()
    return headers


async def read_answer(resp: aiohttp.ClientResponse) -> dict[str, Any]:
    body = await resp.read()
    if resp.content_type == "text/event-stream":
        data = [line[5:].strip() for line in body.decode().splitlines() if line.startswith("data:")]
        answer: dict[str, Any] = json.loads(data[-1])
        return answer
    decoded: dict[str, Any] = json.loads(body)
    return decoded


@asynccontextmanager
async def http_client(url: str, base: dict[str, str] = HEADERS) -> AsyncIterator[Send]:
    """A raw keep-alive client of one MCP session at `url` (requests with headers `base`);
    yields its `send(i)`."""
    async with aiohttp.ClientSession() as http:
        headers = await open_session(http, url, base)

        async def send(i: int) -> None:
            async with http.post(url, json=call(i), headers=headers) as resp:
                answer = await read_answer(resp)
                assert answer["result"]["content"][0]["text"] == "ping", answer

        yield send


async def throughput(url: str, clients: int, calls_each: int) -> float:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:

        async def client(index: int) -> None:
            headers = await open_session(http, url)
            for i in range(calls_each):
                async with http.post(url, json=call(i, f"c{index}-{i}"), headers=headers) as resp:
                    answer = await read_answer(resp)
                    assert answer["result"]["content"][0]["text"] == f"c{index}-{i}", answer

        started = time.perf_counter()
        await asyncio.gather(*(client(i) for i in range(clients)))
        return clients * calls_each / (time.perf_counter() - started)


# ---- processes ----


async def wait_for_port(port: int, *, path: str = "", timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as http:
        while True:
            try:
                async with http.get(f"http://127.0.0.1:{port}{path}") as resp:
                    if not path or resp.status == 200:
                        return
            except aiohttp.ClientConnectionError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing ready on port {port}{path}")
            await asyncio.sleep(0.1)


@asynccontextmanager
async def process(
    *argv: str, port: int, ready_path: str = ""
) -> AsyncIterator[asyncio.subprocess.Process]:
    proc = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.DEVNULL)
    try:
        await wait_for_port(port, path=ready_path)
        yield proc
    finally:
        proc.terminate()
        await proc.wait()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


# ---- report ----


def row(name: str, direct: Timings, proxied: Timings) -> str:
    return (
        f"| {name} | {direct.p50:.3f} | {proxied.p50:.3f} | {proxied.p50 - direct.p50:+.3f} "
        f"| {direct.p99:.3f} | {proxied.p99:.3f} | {proxied.p99 - direct.p99:+.3f} |"
    )


def write_section(section: str, begin: str = BEGIN, end: str = END) -> None:
    """`section` between the markers `begin` and `end` of docs/benchmarks.md (replacing what
    they held; appended when they are not there yet)."""
    text = (
        DOC.read_text()
        if DOC.exists()
        else "# Benchmarks\n\nFigures measured by `bench/` on the 2-core machine.\n"
    )
    block = f"{begin}\n{section}\n{end}"
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        text = head + block + rest.split(end, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    DOC.parent.mkdir(parents=True, exist_ok=True)
    DOC.write_text(text)


async def main(calls: int, clients: int) -> None:
    warmup = max(50, calls // 10)
    print(
        f"tools/call echo, {calls} sequential calls after {warmup} warm-up calls; loopback",
        flush=True,
    )
    proxy_port = free_port()
    async with process(
        *PROXY,
        "--port",
        str(proxy_port),
        "--",
        *TOOLBOX,
        "stdio",
        port=proxy_port,
        ready_path="/health",
    ) as proxy:
        url = f"http://127.0.0.1:{proxy_port}/mcp"
        async with stdio_direct() as direct, http_client(url) as proxied:
            cpu_before = cpu_seconds(proxy.pid)
            stdio_d, stdio_p = await interleaved(direct, proxied, calls, warmup)
            stdio_cpu = (cpu_seconds(proxy.pid) - cpu_before) / (calls + warmup) * 1e6
        rate = await throughput(url, clients, max(20, calls // clients))
        rss_stdio = rss_mib(proxy.pid)
    server_port = free_port()
    async with process(*TOOLBOX, "http", "--port", str(server_port), port=server_port):
        server_url = f"http://127.0.0.1:{server_port}/mcp"
        proxy_port = free_port()
        async with process(
            *PROXY,
            "--port",
            str(proxy_port),
            "--transport",
            "streamable-http",
            "--target-url",
            server_url,
            port=proxy_port,
            ready_path="/health",
        ) as proxy:
            async with (
                http_client(server_url) as direct,
                http_client(f"http://127.0.0.1:{proxy_port}/mcp") as proxied,
            ):
                cpu_before = cpu_seconds(proxy.pid)
                http_d, http_p = await interleaved(direct, proxied, calls, warmup)
                http_cpu = (cpu_seconds(proxy.pid) - cpu_before) / (calls + warmup) * 1e6
            rss_http = rss_mib(proxy.pid)
    lines = [
        "## Proxy runner: overhead on `tools/call`",
        "",
        f"`bench/proxy_overhead.py`, {calls} sequential `tools/call` (echo) each way after {warmup} warm-up calls, "
        "direct and proxied calls alternating in blocks of 50, raw JSON-RPC clients on loopback, milliseconds. Direct stdio is one line over the server's pipes; "
        "through the proxy it is an HTTP POST to `moorage-proxyrunner run --local` (its own process) in front "
        "of the same server. Target (spec §9): overhead p50 ≤ 1 ms, p99 ≤ 3 ms.",
        "",
        "| backend | direct p50 | proxy p50 | overhead p50 | direct p99 | proxy p99 | overhead p99 |",
        "|---|---|---|---|---|---|---|",
        row("stdio (toolbox server)", stdio_d, stdio_p),
        row("streamable HTTP (toolbox server)", http_d, http_p),
        "",
        f"- Throughput through the proxy to one shared stdio server, {clients} concurrent clients: "
        f"**{rate:.0f} calls/s**.",
        f"- Proxy CPU time (user + system) per proxied call: {stdio_cpu:.0f} µs (stdio backend), "
        f"{http_cpu:.0f} µs (HTTP backend).",
        f"- Proxy resident memory after the runs: {rss_stdio:.1f} MiB (stdio backend), {rss_http:.1f} MiB (HTTP backend).",
        f"- Machine: {os.cpu_count()} CPUs, Python {sys.version.split()[0]}, load average {os.getloadavg()[0]:.1f} at the end; "
        "client, proxy and server share the CPUs with whatever else runs.",
    ]
    section = "\n".join(lines)
    print(section)
    write_section(section)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--calls", type=int, default=1000, help="sequential calls per measurement (default 1000)"
    )
    parser.add_argument(
        "--clients", type=int, default=16, help="concurrent clients for throughput (default 16)"
    )
    options = parser.parse_args()
    asyncio.run(main(options.calls, options.clients))
