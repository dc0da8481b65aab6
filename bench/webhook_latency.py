"""Admission latency and throughput of `moorage-webhook` (spec §9).

Starts the real command as a subprocess pinned to one CPU, with a throw-away CA, and sends it
AdmissionReviews over HTTPS with keep-alive from a minimal HTTP/1.1 client pinned to the other
CPU (a full HTTP client library would cost more CPU than the server it measures). Two phases:

- fixed rate: 200 reviews/s, open loop over a pool of connections, so a slow answer delays no
  later request (the event loop's timer is millisecond-grained, so latency is measured from the
  moment a request is written, and how late requests left against the schedule is reported);
- saturation: several connections sending back to back; throughput and latency.

The reviews are a mix of what a cluster sends: MCPServers that pass (with env, secrets,
resources, a pod template and Cedar policies), MCPServers that are denied, and MCPToolConfigs.
Prints the figures and writes them into docs/benchmarks.md between this benchmark's markers,
leaving the rest of the file as it is.

    uv run python bench/webhook_latency.py [--rate 200] [--seconds 15] [--concurrency 8]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import signal
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import aiohttp

from moorage_core.tls import build_ca, build_leaf, write_pair
from moorage_dev.ports import free_port

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs" / "benchmarks.md"
START = "<!-- webhook_latency:begin -->"
END = "<!-- webhook_latency:end -->"
SERVER_CPU = 0
CLIENT_CPU = 1

POLICIES = [
    'permit(principal, action == Action::"call_tool", resource == Tool::"get_current_time");',
    'forbid(principal, action == Action::"call_tool", resource) when { context.dry == true };',
]


def _server(image: str, name: str) -> dict[str, Any]:
    return {
        "apiVersion": "moorage.dev/v1alpha1",
        "kind": "MCPServer",
        "metadata": {"name": name, "namespace": "team-a", "uid": "3f0c", "generation": 1},
        "spec": {
            "image": image,
            "transport": "stdio",
            "proxyMode": "streamable-http",
            "port": 8080,
            "targetPort": 8080,
            "args": ["--local-timezone", "Europe/Berlin"],
            "env": [{"name": "LOG_LEVEL", "value": "info"}, {"name": "TZ", "value": "UTC"}],
            "secrets": [{"name": "time-api", "key": "token", "targetEnvName": "API_TOKEN"}],
            "resources": {
                "limits": {"cpu": "500m", "memory": "256Mi"},
                "requests": {"cpu": "100m", "memory": "128Mi"},
            },
            "podTemplateSpec": {
                "metadata": {"labels": {"team": "a"}},
                "spec": {
                    "containers": [
                        {
                            "name": "mcp",
                            "securityContext": {
                                "runAsNonRoot": True,
                                "readOnlyRootFilesystem": True,
                                "allowPrivilegeEscalation": False,
                                "capabilities": {"drop": ["ALL"]},
                            },
                        }
                    ],
                    "tolerations": [{"key": "mcp", "operator": "Exists", "effect": "NoSchedule"}],
                    "nodeSelector": {"kubernetes.io/os": "linux"},
                },
            },
            "permissionProfile": {"type": "builtin", "name": "network"},
            "authzConfig": {
                "type": "inline",
                "inline": {"policies": POLICIES, "entitiesJson": "[]"},
            },
            "audit": {"enabled": True},
            "sessionAffinity": "ClientIP",
            "trustProxyHeaders": False,
        },
    }


def _toolconfig() -> dict[str, Any]:
    return {
        "apiVersion": "moorage.dev/v1alpha1",
        "kind": "MCPToolConfig",
        "metadata": {"name": "tools", "namespace": "team-a"},
        "spec": {
            "toolsFilter": ["now", "convert_time"],
            "toolsOverride": {"get_current_time": {"name": "now", "description": "Time now"}},
        },
    }


def _review(obj: dict[str, Any], uid: str) -> bytes:
    kind = obj["kind"]
    return json.dumps(
        {
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {
                "uid": uid,
                "kind": {"group": "moorage.dev", "version": "v1alpha1", "kind": kind},
                "resource": {
                    "group": "moorage.dev",
                    "version": "v1alpha1",
                    "resource": kind.lower() + "s",
                },
                "name": obj["metadata"]["name"],
                "namespace": "team-a",
                "operation": "CREATE",
                "userInfo": {"username": "kubernetes-admin", "groups": ["system:masters"]},
                "object": obj,
                "oldObject": None,
                "dryRun": False,
                "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"},
            },
        }
    ).encode()


def build_requests(count: int = 100) -> list[bytes]:
    """HTTP/1.1 requests: 8 in 10 valid MCPServers, 1 denied MCPServer, 1 MCPToolConfig."""
    requests: list[bytes] = []
    for i in range(count):
        uid = f"00000000-0000-4000-8000-{i:012d}"
        if i % 10 == 8:
            path, body = "/validate/mcpserver", _review(_server("Time:1.2", f"s{i}"), uid)
        elif i % 10 == 9:
            path, body = "/validate/mcptoolconfig", _review(_toolconfig(), uid)
        else:
            path, body = "/validate/mcpserver", _review(_server("ghcr.io/o/time:1.2", f"s{i}"), uid)
        head = (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        requests.append(head + body)
    return requests


class Connection:
    """One keep-alive HTTPS connection speaking just enough HTTP/1.1."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, port: int, context: ssl.SSLContext) -> Connection:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context)
        return cls(reader, writer)

    async def roundtrip(self, request: bytes) -> int:
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        start = head.lower().index(b"content-length:") + 15
        length = int(head[start : head.index(b"\r\n", start)])
        await self.reader.readexactly(length)
        return int(head[9:12])

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError, ssl.SSLError):
            await self.writer.wait_closed()


@dataclass(frozen=True, slots=True)
class Phase:
    name: str
    requests: int
    seconds: float
    latencies: list[float]
    server_cpu_seconds: float
    errors: int
    lags: list[float]
    """How late each request left against its schedule (fixed rate only): the client's timer."""
    handler: list[float] = field(default_factory=list)
    """Seconds inside the webhook's handler (`duration_ms` of its log lines): the server's own
    work, without TLS, HTTP parsing and waiting for a CPU."""

    @property
    def throughput(self) -> float:
        return self.requests / self.seconds

    def quantile(self, q: float, *, handler: bool = False) -> float:
        ordered = sorted(self.handler if handler else self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _handler_seconds(log_path: Path, start: int) -> list[float]:
    with log_path.open("rb") as log:
        log.seek(start)
        lines = log.read().splitlines()
    return [
        json.loads(line)["duration_ms"] / 1000
        for line in lines
        if line.startswith(b"{") and b'"review_finished"' in line
    ]


def in_process_review_cost(requests: list[bytes], *, pause: float, count: int = 400) -> float:
    """Median seconds of `admission.review_body` in this process, `pause` apart (busy-waiting,
    so the CPU never idles): how much the same work slows down when other work runs between."""
    from moorage_webhook.admission import ENDPOINTS, review_body

    by_path = {endpoint.path: endpoint for endpoint in ENDPOINTS}
    bodies = []
    for request in requests:
        head, _, body = request.partition(b"\r\n\r\n")
        bodies.append((by_path[head.split(b" ")[1].decode()], body))
    for endpoint, body in bodies:
        review_body(endpoint, body)
    times: list[float] = []
    for index in range(count):
        endpoint, body = bodies[index % len(bodies)]
        began = time.perf_counter()
        review_body(endpoint, body)
        times.append(time.perf_counter() - began)
        until = time.perf_counter() + pause
        while time.perf_counter() < until:
            pass
    return statistics.median(times)


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


async def fixed_rate(
    port: int,
    context: ssl.SSLContext,
    requests: list[bytes],
    *,
    rate: float,
    seconds: float,
    pid: int,
) -> Phase:
    pool: asyncio.Queue[Connection] = asyncio.Queue()
    for _ in range(8):
        pool.put_nowait(await Connection.open(port, context))
    latencies: list[float] = []
    lags: list[float] = []
    errors = 0
    total = int(rate * seconds)

    async def one(index: int, scheduled: float) -> None:
        nonlocal errors
        connection = await pool.get()
        began = time.perf_counter()
        lags.append(began - scheduled)
        try:
            if await connection.roundtrip(requests[index % len(requests)]) != 200:
                errors += 1
        finally:
            pool.put_nowait(connection)
        latencies.append(time.perf_counter() - began)

    cpu_before = _cpu_seconds(pid)
    started = time.perf_counter()
    tasks: list[asyncio.Task[None]] = []
    for index in range(total):
        scheduled = started + index / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(index, scheduled)))
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - started
    cpu = _cpu_seconds(pid) - cpu_before
    while not pool.empty():
        await pool.get_nowait().close()
    return Phase(f"{rate:.0f} req/s", total, elapsed, latencies, cpu, errors, lags)


async def saturation(
    port: int,
    context: ssl.SSLContext,
    requests: list[bytes],
    *,
    concurrency: int,
    seconds: float,
    pid: int,
) -> Phase:
    connections = [await Connection.open(port, context) for _ in range(concurrency)]
    latencies: list[float] = []
    errors = 0
    deadline = 0.0

    async def worker(connection: Connection, offset: int) -> None:
        nonlocal errors
        index = offset
        while time.perf_counter() < deadline:
            began = time.perf_counter()
            if await connection.roundtrip(requests[index % len(requests)]) != 200:
                errors += 1
            latencies.append(time.perf_counter() - began)
            index += concurrency

    cpu_before = _cpu_seconds(pid)
    started = time.perf_counter()
    deadline = started + seconds
    await asyncio.gather(*(worker(c, i) for i, c in enumerate(connections)))
    elapsed = time.perf_counter() - started
    cpu = _cpu_seconds(pid) - cpu_before
    for connection in connections:
        await connection.close()
    return Phase(
        f"saturation, {concurrency} connections",
        len(latencies),
        elapsed,
        latencies,
        cpu,
        errors,
        [],
    )


def _pin(cpu: int, niceness: int = 0) -> None:
    if len(os.sched_getaffinity(0)) > 1:
        os.sched_setaffinity(0, {cpu})
    if niceness:
        os.setpriority(os.PRIO_PROCESS, 0, niceness)


async def _wait_ready(port: int, context: ssl.SSLContext) -> None:
    deadline = time.monotonic() + 30
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context)) as session:
        while True:
            try:
                async with session.get(f"https://127.0.0.1:{port}/readyz") as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("moorage-webhook did not become ready")
            await asyncio.sleep(0.1)


BASELINE_ANSWER = (
    b'{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview",'
    b'"response":{"uid":"00000000-0000-4000-8000-000000000000","allowed":true}}'
)


def serve_baseline(cert_dir: Path, port: int) -> None:
    """A bare aiohttp HTTPS server answering every review `allowed` without looking at it: what
    TLS, HTTP, the event loop and this machine cost before any webhook logic."""
    from aiohttp import web

    async def answer(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(body=BASELINE_ANSWER, content_type="application/json")

    async def ready(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/validate/mcpserver", answer)
    app.router.add_post("/validate/mcptoolconfig", answer)
    app.router.add_get("/readyz", ready)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert_dir / "tls.crt", cert_dir / "tls.key")
    web.run_app(app, host="127.0.0.1", port=port, ssl_context=context, access_log=None, print=None)


def _start(command: list[str], *, log: Any, niceness: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        command,
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},  # as in the Deployment
        preexec_fn=lambda: _pin(SERVER_CPU, niceness),
    )


async def run(args: argparse.Namespace) -> list[Phase]:
    work = Path(tempfile.mkdtemp(prefix="webhook-bench-"))
    ca = build_ca(common_name="bench-ca")
    write_pair(build_leaf(ca, common_name="moorage-webhook", hosts=["127.0.0.1"]), work)
    port, metrics_port, baseline_port = free_port(), free_port(), free_port()
    log_path = work / "webhook.log"
    log = log_path.open("wb")
    process = _start(
        [
            sys.executable,
            "-m",
            "moorage_webhook",
            f"--cert-dir={work}",
            f"--bind=127.0.0.1:{port}",
            f"--metrics-bind=127.0.0.1:{metrics_port}",
            "--log-format=json",
            # No cluster: MCPTenant allowances are a dict lookup either way.
            "--mcptenants=false",
        ],
        log=log,
        niceness=args.nice,
    )
    baseline = _start(
        [sys.executable, __file__, "--serve-baseline", f"{work}:{baseline_port}"],
        log=subprocess.DEVNULL,
        niceness=args.nice,
    )
    _pin(CLIENT_CPU, args.nice)
    context = ssl.create_default_context(cadata=ca.cert_pem.decode())
    requests = build_requests()
    try:
        await _wait_ready(port, context)
        await _wait_ready(baseline_port, context)
        # Warm-up: imports, caches, TLS session state.
        await saturation(port, context, requests, concurrency=4, seconds=2, pid=process.pid)
        await saturation(
            baseline_port, context, requests, concurrency=4, seconds=1, pid=baseline.pid
        )
        start = log_path.stat().st_size
        rate = await fixed_rate(
            port, context, requests, rate=args.rate, seconds=args.seconds, pid=process.pid
        )
        rate = replace(rate, handler=_handler_seconds(log_path, start))
        floor = await fixed_rate(
            baseline_port, context, requests, rate=args.rate, seconds=args.seconds, pid=baseline.pid
        )
        floor = replace(floor, name=f"baseline: bare aiohttp handler, {args.rate:.0f} req/s")
        start = log_path.stat().st_size
        sat = await saturation(
            port,
            context,
            requests,
            concurrency=args.concurrency,
            seconds=args.seconds,
            pid=process.pid,
        )
        phases = [rate, floor, replace(sat, handler=_handler_seconds(log_path, start))]
        args.review_cost = (
            in_process_review_cost(requests, pause=0.0),
            in_process_review_cost(requests, pause=1 / args.rate),
        )
    finally:
        for child in (process, baseline):
            child.send_signal(signal.SIGTERM)
            child.wait(timeout=30)
        log.close()
    return phases


def render(phases: list[Phase], *, args: argparse.Namespace) -> str:
    rows = [
        "| phase | reviews | throughput (reviews/s) | p50 (ms) | p99 (ms) | max (ms) | "
        "handler p50 / p99 (ms) | server CPU (cores) | reviews per CPU-second | errors |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for phase in phases:
        handler = (
            f"{phase.quantile(0.5, handler=True) * 1000:.2f} / "
            f"{phase.quantile(0.99, handler=True) * 1000:.2f}"
            if phase.handler
            else "-"
        )
        rows.append(
            f"| {phase.name} | {phase.requests} | {phase.throughput:,.0f} | "
            f"{phase.quantile(0.50) * 1000:.2f} | {phase.quantile(0.99) * 1000:.2f} | "
            f"{max(phase.latencies) * 1000:.2f} | {handler} | "
            f"{phase.server_cpu_seconds / phase.seconds:.2f} | "
            f"{phase.requests / phase.server_cpu_seconds:,.0f} | {phase.errors} |"
        )
    rate, floor, sat = phases
    verdicts = [
        f"p50 {rate.quantile(0.5) * 1000:.2f} ms (target ≤ 1 ms): "
        f"{'met' if rate.quantile(0.5) <= 0.001 else 'NOT met'}",
        f"p99 {rate.quantile(0.99) * 1000:.2f} ms (target ≤ 5 ms): "
        f"{'met' if rate.quantile(0.99) <= 0.005 else 'NOT met'}",
        f"{sat.throughput:,.0f} reviews/s on one core (target ≥ 1,500): "
        f"{'met' if sat.throughput >= 1500 else 'NOT met'}",
        f"the same client against a bare aiohttp HTTPS handler at {args.rate:.0f} req/s: p50 "
        f"{floor.quantile(0.5) * 1000:.2f} ms, p99 {floor.quantile(0.99) * 1000:.2f} ms (the "
        "floor of this machine)",
        f"in process, one review costs {args.review_cost[0] * 1e6:.0f} µs back to back and "
        f"{args.review_cost[1] * 1e6:.0f} µs with {1000 / args.rate:g} ms of busy waiting "
        "between reviews: on this virtual machine the same code runs several times slower after "
        "a pause, so at a fixed rate every review pays that, as the handler columns show",
    ]
    mean = statistics.fmean(rate.latencies) * 1000
    lag = sorted(rate.lags)[int(0.99 * len(rate.lags))] * 1000
    return "\n".join(
        [
            "## Webhook admission latency",
            "",
            f"`uv run python bench/webhook_latency.py{f' --nice {args.nice}' if args.nice else ''}` "
            f"on {platform.machine()}, "
            f"{os.cpu_count()} CPUs, Python {platform.python_version()}: the `moorage-webhook` "
            f"command pinned to one CPU, a keep-alive HTTPS client on the other; {args.seconds:g} s "
            "per phase after a 2 s warm-up; 8 in 10 reviews are valid MCPServers (env, secrets, "
            "resources, pod template, two Cedar policies), 1 a denied MCPServer, 1 an "
            "MCPToolConfig. The servers share their pod template and policies, as one platform's "
            "servers do, so the webhook's memos of both are warm. Latency is client-side, from writing a request to reading the whole "
            f"answer (fixed-rate mean {mean:.2f} ms; requests left at most {lag:.2f} ms after "
            "their scheduled time at p99, on free connections, so nothing queued behind a slow "
            "answer). The handler column is the webhook's own view (its log's `duration_ms`: "
            "body read to response built); reviews per CPU-second is what one whole core "
            "would serve at that load. The machine is shared: load average "
            f"{args.load} (1/5/15 min) when the run started"
            + (f"; webhook and client ran at nice {args.nice}." if args.nice else "."),
            "",
            *rows,
            "",
            *[f"- {v}" for v in verdicts],
        ]
    )


def update_docs(section: str) -> None:
    block = f"{START}\n{section}\n{END}"
    if DOCS.exists():
        text = DOCS.read_text()
        if START in text and END in text:
            head, _, rest = text.partition(START)
            _, _, tail = rest.partition(END)
            text = head + block + tail
        else:
            text = text.rstrip("\n") + "\n\n" + block + "\n"
    else:
        text = (
            "# Benchmarks\n\nFigures measured by the scripts in `bench/` (spec §9).\n\n"
            + block
            + "\n"
        )
    DOCS.write_text(text)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=200.0, help="reviews per second")
    parser.add_argument("--seconds", type=float, default=15.0, help="length of each phase")
    parser.add_argument("--concurrency", type=int, default=8, help="connections at saturation")
    parser.add_argument("--no-docs", action="store_true", help="print only")
    parser.add_argument("--serve-baseline", metavar="CERT_DIR:PORT", help=argparse.SUPPRESS)
    parser.add_argument(
        "--nice",
        type=int,
        default=0,
        help="niceness for the webhook and the client (negative needs root): on a shared machine "
        "-20 keeps other work from preempting the measurement",
    )
    args = parser.parse_args()
    if args.serve_baseline:
        cert_dir, _, port = args.serve_baseline.rpartition(":")
        serve_baseline(Path(cert_dir), int(port))
        return 0
    args.load = " / ".join(f"{v:.2f}" for v in os.getloadavg())
    phases = asyncio.run(run(args))
    section = render(phases, args=args)
    print(section)
    if not args.no_docs:
        update_docs(section)
        print(f"\nwritten to {DOCS.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
