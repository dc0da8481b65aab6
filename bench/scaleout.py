"""Scale-out of the proxy runner: `tools/call` throughput and p50/p99 latency with 1, 2 and 3
replicas behind HAProxy sharing a real Redis, 200 concurrent sessions; and what Redis costs per
request against in-memory session storage (one replica behind the same HAProxy, same load).
Both ways a proxy meets its MCP server: stdio and streamable HTTP.

Every replica is `moorage-proxyrunner run --local` with a RunConfig naming the session storage,
in front of its own toolbox server over stdio (one backend per replica, as in a cluster), or of
one toolbox server on streamable HTTP that all the replicas share; HAProxy (Debian's `haproxy`,
`tests/testkit/balancer.py`: round-robin per request) is in front; Redis is Debian's
`redis-server`. The load generator is one asyncio process with raw aiohttp (the `mcp` SDK is
too heavy for 200 sessions on 2 cores): each session does a real handshake (`initialize`,
`notifications/initialized`) and then calls `echo` back to back for the measured time, every
answer checked to be its own; a failed request is counted, not timed. All of this shares the
machine's 2 cores: read the scaling as a ratio.

While a timed run goes, /work/quiet exists (others pause their tests). Prints the figures and
writes them as a section of docs/benchmarks.md. Usage:
`uv run python bench/scaleout.py [--backend both] [--sessions 200] [--seconds 20] [--rounds 2]`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from statistics import fmean
from typing import Any

import aiohttp

REPO_TESTS = Path(__file__).resolve().parents[1] / "tests"
sys.path.insert(0, str(REPO_TESTS))

from proxy_overhead import (  # noqa: E402
    TOOLBOX,
    Timings,
    call,
    cpu_seconds,
    free_port,
    http_client,
    interleaved,
    open_session,
    process,
    read_answer,
    write_section,
)
from testkit.balancer import Balancer  # noqa: E402
from testkit.redisserver import RedisServer  # noqa: E402
from testkit.replicas import is_healthy, running_replicas  # noqa: E402
from testkit.waiting import eventually  # noqa: E402

BEGIN, END = "<!-- scaleout:begin -->", "<!-- scaleout:end -->"
QUIET = Path("/work/quiet")
BACKENDS = ("stdio", "http")
CONFIGS = [("redis", 1), ("redis", 2), ("redis", 3), ("memory", 1)]


@dataclass
class Run:
    backend: str
    storage: str
    replicas: int
    calls: int
    errors: int
    seconds: float
    timings: Timings
    # Cores the shared HTTP server kept busy during the load (None: stdio, a server per replica).
    server_cores: float | None = None

    @property
    def throughput(self) -> float:
        return self.calls / self.seconds


def binary(name: str) -> str:
    found = shutil.which(name) or shutil.which(name, path="/usr/bin:/usr/sbin")
    if found is None:
        raise SystemExit(f"{name} is not installed (Debian package {name})")
    return found


def runconfig(storage: str, redis: RedisServer) -> dict[str, Any]:
    if storage == "memory":
        return {"schema_version": "moorage/v1", "session_storage": {"type": "memory"}}
    return {
        "schema_version": "moorage/v1",
        "session_storage": {
            "type": "redis",
            "redis": {"address": redis.address, "key_prefix": "moorage:bench:"},
        },
    }


async def load(url: str, sessions: int, warmup: float, seconds: float) -> tuple[int, int, Timings]:
    """`sessions` clients calling back to back; (calls, errors, timings) of the measured part."""
    samples: list[float] = []
    counts = {"calls": 0, "errors": 0}
    timeout = aiohttp.ClientTimeout(total=30)
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
        loop = asyncio.get_running_loop()
        # Sessions open 25 at a time, as clients arriving over a moment would (200 handshakes
        # at once would measure a burst of connections, not the steady load).
        gate = asyncio.Semaphore(25)

        async def opening() -> dict[str, str]:
            async with gate:
                return await open_session(http, url)

        opened = await asyncio.gather(*(opening() for _ in range(sessions)))
        start = loop.time() + warmup
        end = start + seconds

        async def client(index: int, headers: dict[str, str]) -> None:
            sent = 0
            while (now := loop.time()) < end:
                text = f"c{index}-{sent}"
                body = call(sent, text)
                sent += 1
                began = time.perf_counter()
                try:
                    async with http.post(url, json=body, headers=headers) as resp:
                        answer = await read_answer(resp)
                    ok = answer.get("result", {}).get("content", [{}])[0].get("text") == text
                except (aiohttp.ClientError, TimeoutError, ValueError, IndexError):
                    ok = False
                if now < start:
                    continue
                if ok:
                    samples.append(time.perf_counter() - began)
                    counts["calls"] += 1
                else:
                    counts["errors"] += 1

        await asyncio.gather(*(client(i, h) for i, h in enumerate(opened)))
    return counts["calls"], counts["errors"], Timings(samples)


@contextlib.asynccontextmanager
async def serving(backend: str) -> AsyncIterator[tuple[tuple[str, ...], int | None]]:
    """The `run --local` arguments of every replica: its own toolbox server over stdio, or
    the one toolbox server on streamable HTTP started here for all of them (and its pid)."""
    quiet_proxy = ("--log-level", "WARNING")
    if backend == "stdio":
        yield (*quiet_proxy, "--", *TOOLBOX, "stdio"), None
        return
    port = free_port()
    async with process(*TOOLBOX, "http", "--port", str(port), port=port) as server:
        url = f"http://127.0.0.1:{port}/mcp"
        yield (*quiet_proxy, "--transport", "streamable-http", "--target-url", url), server.pid


@contextlib.asynccontextmanager
async def cluster(
    workdir: Path, backend: str, storage: str, replicas: int
) -> AsyncIterator[tuple[str, int | None]]:
    """Redis, the `backend`, `replicas` replicas with `storage` and HAProxy, all up; yields
    the MCP URL and the shared HTTP server's pid."""
    directory = workdir / f"{backend}-{storage}-{replicas}"
    directory.mkdir(parents=True)
    redis = RedisServer(binary("redis-server"), directory)
    redis.start()
    try:
        config = runconfig(storage, redis)
        async with serving(backend) as (args, server):
            with running_replicas(directory, config, args, count=replicas) as started:
                for replica in started:
                    await eventually(lambda r=replica: is_healthy(r.base), timeout=120)
                balancer = Balancer(binary("haproxy"), directory, [r.address for r in started])
                balancer.start()
                try:
                    await eventually(lambda: set(balancer.server_states().values()) == {"UP"})
                    yield f"{balancer.base}/mcp", server
                finally:
                    balancer.stop()
    finally:
        redis.stop()


async def measure(
    workdir: Path, backend: str, storage: str, replicas: int, sessions: int, seconds: float
) -> Run:
    async with cluster(workdir, backend, storage, replicas) as (url, server):
        with quiet():
            began, cpu = time.perf_counter(), cpu_seconds(server) if server else 0.0
            calls, errors, timings = await load(url, sessions, warmup=3.0, seconds=seconds)
            cores = (cpu_seconds(server) - cpu) / (time.perf_counter() - began) if server else None
    run = Run(backend, storage, replicas, calls, errors, seconds, timings, cores)
    print(
        f"{backend:5} {storage:6} x{replicas}: {run.throughput:7.0f} calls/s, "
        f"p50 {timings.p50:7.2f} ms, p99 {timings.p99:7.2f} ms, {errors} errors",
        flush=True,
    )
    return run


async def one_session(workdir: Path, backend: str, calls: int) -> tuple[Timings, Timings]:
    """Per-request latency without load: one session on one replica each way, memory and
    Redis, sequential calls alternating in blocks."""
    async with (
        cluster(workdir / "sequential", backend, "memory", 1) as (memory_url, _),
        cluster(workdir / "sequential", backend, "redis", 1) as (redis_url, _),
        http_client(memory_url) as memory,
        http_client(redis_url) as redis,
    ):
        with quiet():
            return await interleaved(memory, redis, calls, warmup=max(50, calls // 10))


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """/work/quiet while a timed run goes, removed after (also on SIGTERM and Ctrl-C); waits
    for someone else's timed run to end first."""
    while QUIET.exists():
        time.sleep(5)
    previous = signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    QUIET.touch()
    try:
        yield
    finally:
        QUIET.unlink(missing_ok=True)
        signal.signal(signal.SIGTERM, previous)


def table_row(run: Run, base: Run) -> str:
    return (
        f"| {run.storage} | {run.replicas} | {run.throughput:,.0f} | "
        f"{run.throughput / base.throughput:.2f} | {run.timings.p50:.1f} | "
        f"{run.timings.p99:.1f} | {run.errors} |"
    )


def pooled(runs: list[Run]) -> Run:
    """Runs of one configuration as one: calls, errors, time and samples added up (the
    server's cores averaged)."""
    cores = [r.server_cores for r in runs if r.server_cores is not None]
    return Run(
        runs[0].backend,
        runs[0].storage,
        runs[0].replicas,
        sum(r.calls for r in runs),
        sum(r.errors for r in runs),
        sum(r.seconds for r in runs),
        Timings([sample for r in runs for sample in r.timings.samples]),
        fmean(cores) if cores else None,
    )


HEADINGS = {
    "stdio": "stdio: each replica in front of its own toolbox server",
    "http": "Streamable HTTP: one toolbox server shared by the replicas",
}
SPREADING = {
    "stdio": "With two or three replicas, a request that lands on a replica other than its "
    "session's owner reads the session's record from Redis and is forwarded to the owner (a "
    "stdio session's live parts stay there): one more hop for two requests in three with "
    "three replicas, which is what the replica rows pay for on the same cores.",
    "http": "With two or three replicas, any replica serves any request of a session itself, "
    "nothing is forwarded: the session lives in the upstream server, so a replica that has not "
    "seen it yet reads its record from Redis once and from then on sends its requests straight "
    "to the server (a Redis read every 30 s keeps the record alive). The server is one process "
    "for all the replicas, though, the same one at every replica count, and one more process "
    "on the same 2 cores.",
}


def backend_part(
    backend: str, runs: list[Run], memory: Run, sequential: tuple[Timings, Timings], calls: int
) -> list[str]:
    """The table of one backend and what it shows."""
    one = runs[0]
    per_request = 1000 * (1 / one.throughput - 1 / memory.throughput)
    return [
        f"### {HEADINGS[backend]}",
        "",
        "| session storage | replicas | calls/s | vs 1 replica | p50 | p99 | errors |",
        "|---|---|---|---|---|---|---|",
        *(table_row(run, one) for run in [*runs, memory]),
        "",
        f"- Redis against memory, one replica, the same sessions: {one.throughput:,.0f} against "
        f"{memory.throughput:,.0f} calls/s, p50 {one.timings.p50:.1f} against "
        f"{memory.timings.p50:.1f} ms (the difference of the inverse throughputs: "
        f"{per_request:+.2f} ms of the saturated replica per request). Without load ({calls} "
        "sequential calls of one session each way, alternating in blocks of 50): memory p50 "
        f"{sequential[0].p50:.3f} ms, p99 {sequential[0].p99:.3f} ms; Redis p50 "
        f"{sequential[1].p50:.3f} ms, p99 {sequential[1].p99:.3f} ms: "
        f"{sequential[1].p50 - sequential[0].p50:+.3f} ms at p50 per request. On one replica "
        "every request is its session's owner's, served from local state: Redis is written when "
        "a session opens or ends and by the heartbeat, not read per call.",
        f"- {SPREADING[backend]}",
        *server_line([*runs, memory]),
        "",
    ]


def server_line(runs: list[Run]) -> list[str]:
    """How busy the shared HTTP server was (nothing for stdio)."""
    cores = [run.server_cores for run in runs]
    if None in cores:
        return []
    one, two, three = (f"{run.server_cores:.2f}" for run in runs[:3])
    return [
        f"- The shared toolbox server kept {one}, {two} and {three} of the 2 cores busy with 1, 2 "
        f"and 3 Redis replicas ({runs[3].server_cores:.2f} in front of memory; its CPU time over "
        "the whole load, handshakes and warm-up included). It is one Python process, so it can "
        "keep about one core busy at most, whatever the number of replicas in front of it."
    ]


async def main(backends: list[str], sessions: int, seconds: float, rounds: int, calls: int) -> None:
    configs = [(backend, *config) for backend in backends for config in CONFIGS]
    measured: dict[tuple[str, str, int], list[Run]] = {config: [] for config in configs}
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        for round_ in range(rounds):
            # Every other round in the reverse order, so that load from anything else running
            # on the machine falls on every configuration alike.
            for backend, storage, count in configs if round_ % 2 == 0 else configs[::-1]:
                run = await measure(
                    workdir / f"round{round_}", backend, storage, count, sessions, seconds
                )
                measured[(backend, storage, count)].append(run)
        sequential = {backend: await one_session(workdir, backend, calls) for backend in backends}
    parts = [
        backend_part(
            backend,
            [pooled(measured[(backend, "redis", count)]) for count in (1, 2, 3)],
            pooled(measured[(backend, "memory", 1)]),
            sequential[backend],
            calls,
        )
        for backend in backends
    ]
    lines = [
        "## Proxy runner: scale-out",
        "",
        f"`bench/scaleout.py`: {sessions} concurrent sessions calling `tools/call` (the toolbox's "
        f"`echo`) back to back for {seconds:.0f} s after 3 s of warm-up, {rounds} "
        f"round{'s' if rounds > 1 else ''} of every configuration (alternating order; the "
        "figures pool them), through HAProxy (round-robin per request) in front of N proxy "
        "runner replicas; sessions in a real Redis (or in memory: one replica). Each replica "
        "is in front of its own toolbox server over stdio, or of one toolbox server on "
        "streamable HTTP that all of them share; both backends measured in the same run. The "
        "load generator is one asyncio process with raw aiohttp clients, each session opened "
        "with a real handshake; every answer is checked to be the session's own. Latency in "
        "milliseconds, from sending a call to reading its answer.",
        "",
        *(line for part in parts for line in part),
        f"The 2 cores limit it: {os.cpu_count()} CPUs (load average {os.getloadavg()[0]:.1f} at "
        "the end) run the replicas, the toolbox servers (one per replica over stdio, one in all "
        "over HTTP), HAProxy, Redis and the load generator together, so a second or third "
        "replica adds processes, not cores. Read the replica rows as a ratio: what sharing "
        "sessions through Redis and spreading them over replicas costs or gains on a fixed "
        "budget of CPU, not how far replicas on their own machines would scale.",
    ]
    section = "\n".join(lines)
    print(section)
    write_section(section, BEGIN, END)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--backend", choices=[*BACKENDS, "both"], default="both", help="MCP server transport"
    )
    parser.add_argument("--sessions", type=int, default=200, help="concurrent sessions (200)")
    parser.add_argument("--seconds", type=float, default=20.0, help="measured seconds per run")
    parser.add_argument("--rounds", type=int, default=2, help="runs of each configuration (2)")
    parser.add_argument(
        "--calls", type=int, default=1000, help="sequential calls each way without load (1000)"
    )
    options = parser.parse_args()
    backends = list(BACKENDS) if options.backend == "both" else [options.backend]
    asyncio.run(main(backends, options.sessions, options.seconds, options.rounds, options.calls))
