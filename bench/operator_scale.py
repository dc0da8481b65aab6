"""The operator at scale: N MCPServers applied at once on a local control plane (spec §9).

Starts its own control plane (`moorage_dev.cluster.ControlPlane`: etcd, kube-apiserver,
kube-controller-manager, kube-scheduler, kwok; with a service range wide enough for N ClusterIP
Services), installs the CRDs, runs `moorage-operator` as a
separate process (namespace mode, no leader election) and measures it from the outside:

- time from the first create until every MCPServer has a status (the operator writes the status
  after applying the children in the same reconcile; the children are counted at the end);
- API requests the operator made per MCPServer (its `moorage_rest_client_requests_total`), once
  every server has a status and again once the operator has gone quiet (Deployments rolled out
  by kube-controller-manager and kwok, their status changes reconciled);
- the operator's peak resident memory (VmHWM) and CPU seconds (utime + stime);
- writes during a forced resync afterwards: a second operator process starts on the settled
  cluster (a cold full reconcile of every object), then its periodic resync re-enqueues every
  MCPServer from warm caches; writes (create, update, apply, patch, delete) are counted for both.

With `--namespaces N` the servers are spread over N namespaces and the operator watches every
namespace (one cluster-wide list/watch per kind). The operator runs from an environment built
like the image's (`uv sync --no-dev`: the dev tools' packages, which some libraries import when
present, are not there).

Prints the figures and writes them as the section of docs/benchmarks.md for this configuration
(count, concurrency, namespaces); the sections of other configurations are kept.
Usage: `uv run python bench/operator_scale.py [--count 1000] [--concurrency 4] [--namespaces 1]`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from moorage_core.errors import Conflict, KubeError
from moorage_core.kube import (
    CONFIGMAPS,
    DEPLOYMENTS,
    MCPSERVERS,
    NAMESPACES,
    ROLEBINDINGS,
    ROLES,
    SERVICEACCOUNTS,
    SERVICES,
    KubeClient,
)
from moorage_dev.binaries import cache_root
from moorage_dev.cluster import DEFAULT_NODE_PODS, ControlPlane, Tuning

REPO = Path(__file__).resolve().parents[1]
CRD_DIR = REPO / "crds" / "manifests"
DOC = REPO / "docs" / "benchmarks.md"
NAMESPACE = "bench"
WRITE_VERBS = ("create", "update", "apply", "patch", "delete")
RESYNC_PERIOD_S = 40
CLK_TCK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def namespace_names(count: int) -> list[str]:
    """The benchmark's namespaces: `bench` alone, or `bench-000`… when there are several."""
    return [NAMESPACE] if count == 1 else [f"{NAMESPACE}-{i:03d}" for i in range(count)]


def control_plane_tuning(count: int) -> Tuning:
    """Above 1,000 MCPServers: room on the fake node for one pod per MCPServer, and client rates
    for the controller manager and the scheduler that do not make them the bottleneck of the
    settle phase (their defaults, 20 and 50 requests per second, would make it last an hour at
    10,000). Up to 1,000 the defaults stay: on 2 CPUs a faster controller manager only takes CPU
    from the apiserver while the operator creates the children."""
    if count <= DEFAULT_NODE_PODS:
        return Tuning()
    rates = ("--kube-api-qps=200", "--kube-api-burst=400")
    # Twice the apiserver's default in-flight limits, so its 429s do not add retries to the
    # operator's requests per server.
    inflight = ("--max-requests-inflight=800", "--max-mutating-requests-inflight=400")
    return Tuning(
        node_pods=count + 100,
        flags={
            "kube-controller-manager": rates,
            "kube-scheduler": rates,
            "kube-apiserver": inflight,
        },
    )


def server_body(index: int, namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "moorage.dev/v1alpha1",
        "kind": "MCPServer",
        "metadata": {"name": f"s{index:05d}", "namespace": namespace},
        "spec": {
            "image": "ghcr.io/example/mcp-time:1.0.0",
            "args": ["--local-timezone=UTC"],
            "env": [{"name": "PYTHONUNBUFFERED", "value": "1"}],
        },
    }


# ---- the operator process ------------------------------------------------------------------


@dataclass
class OperatorProcess:
    proc: subprocess.Popen[bytes]
    metrics_port: int
    log: Path

    def proc_status(self, field: str) -> int:
        """A `VmRSS`/`VmHWM` line of /proc/<pid>/status, in bytes."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
        raise RuntimeError(f"no {field} for pid {self.proc.pid}")

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        # After the command: state is field 3; utime and stime are fields 14 and 15.
        return (int(fields[11]) + int(fields[12])) / CLK_TCK


def process_cpu_seconds(pid: int) -> float:
    """utime + stime of a process (seconds); 0 when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def machine_cpu_seconds() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]
    return (sum(values) - idle) / CLK_TCK, sum(values) / CLK_TCK


@dataclass
class CpuWindow:
    """CPU seconds spent by the control plane's processes, the operator, this benchmark and
    the whole machine over a stretch of time (the machine is shared with whatever else runs)."""

    plane: dict[str, float]
    operator: float
    bench: float
    machine_busy: float
    machine_total: float

    @classmethod
    def sample(cls, plane: ControlPlane, op: OperatorProcess) -> CpuWindow:
        busy, total = machine_cpu_seconds()
        return cls(
            plane={name: process_cpu_seconds(pid) for name, pid in plane.pids.items()},
            operator=op.cpu_seconds(),
            bench=time.process_time(),
            machine_busy=busy,
            machine_total=total,
        )

    def since(self, start: CpuWindow) -> CpuWindow:
        return CpuWindow(
            plane={k: v - start.plane.get(k, 0.0) for k, v in self.plane.items()},
            operator=self.operator - start.operator,
            bench=self.bench - start.bench,
            machine_busy=self.machine_busy - start.machine_busy,
            machine_total=self.machine_total - start.machine_total,
        )

    @property
    def others(self) -> float:
        """Busy CPU seconds of processes outside the benchmark (other work on the machine)."""
        return max(0.0, self.machine_busy - sum(self.plane.values()) - self.operator - self.bench)

    def describe(self) -> str:
        parts = [
            f"{name} {sec:.0f} s" for name, sec in sorted(self.plane.items(), key=lambda i: -i[1])
        ]
        return (
            f"{', '.join(parts)}, operator {self.operator:.0f} s, benchmark client "
            f"{self.bench:.0f} s, other processes on the machine {self.others:.0f} s; machine "
            f"busy {self.machine_busy / self.machine_total * 100:.0f} % of "
            f"{self.machine_total:.0f} CPU-seconds"
        )


def image_environment() -> Path:
    """The Python of an environment built as the image builds its own (`uv sync --frozen
    --no-dev --no-editable`), kept under the cache directory and refreshed on every run."""
    venv = cache_root() / "bench" / "operator-env"
    subprocess.run(
        # As the Dockerfile, the project is reinstalled: uv judges a built local project stale
        # from pyproject.toml alone.
        [
            *("uv", "sync", "--quiet", "--frozen", "--no-dev", "--no-editable"),
            *("--reinstall-package", "moorage"),
        ],
        cwd=REPO,
        env={**os.environ, "UV_PROJECT_ENVIRONMENT": str(venv)},
        check=True,
    )
    return venv / "bin" / "python"


@contextmanager
def operator_process(
    kubeconfig: Path,
    workdir: Path,
    *,
    name: str,
    concurrency: int,
    resync: str,
    watch: str,
    python: str,
) -> Iterator[OperatorProcess]:
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "UV_"))},
        "KUBECONFIG": str(kubeconfig),
        "LEADER_ELECTION": "false",
        "WATCH_NAMESPACES": watch,
        "METRICS_BIND": f"127.0.0.1:{port}",
        "RECONCILE_CONCURRENCY": str(concurrency),
        "RESYNC_PERIOD": resync,
        "PROXYRUNNER_IMAGE": "moorage/proxyrunner:bench",
        "LOG_FORMAT": "json",
        "LOG_LEVEL": os.environ.get("LOG_LEVEL", "warning"),
        "POD_NAME": name,
    }
    log = workdir / f"{name}.log"
    with log.open("wb") as handle:
        proc = subprocess.Popen(
            [python, "-m", "moorage_operator"],
            env=env,
            stdout=handle,
            stderr=subprocess.STDOUT,
        )
    try:
        yield OperatorProcess(proc, port, log)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


class Scraper:
    """Reads an operator's /metrics (HTTPS, self-signed)."""

    def __init__(self, session: aiohttp.ClientSession) -> None:
        self.session = session
        self.ssl = ssl.create_default_context()
        self.ssl.check_hostname = False
        self.ssl.verify_mode = ssl.CERT_NONE

    async def samples(
        self, op: OperatorProcess
    ) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        url = f"https://127.0.0.1:{op.metrics_port}/metrics"
        async with self.session.get(url, ssl=self.ssl) as resp:
            text = await resp.text()
        out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
        return out

    async def total(self, op: OperatorProcess, metric: str, **labels: str) -> float:
        samples = await self.samples(op)
        return sum(
            value
            for (name, pairs), value in samples.items()
            if name == metric and all(dict(pairs).get(k) == v for k, v in labels.items())
        )

    async def reconcile_time(self, op: OperatorProcess) -> tuple[float, float]:
        """(seconds, reconciles) so far of the `mcpserver` controller's reconcile histogram."""
        metric = "moorage_controller_reconcile_time_seconds"
        return (
            await self.total(op, f"{metric}_sum", controller="mcpserver"),
            await self.total(op, f"{metric}_count", controller="mcpserver"),
        )

    async def requests(self, op: OperatorProcess) -> dict[str, float]:
        samples = await self.samples(op)
        by_verb: dict[str, float] = {}
        for (name, pairs), value in samples.items():
            if name == "moorage_rest_client_requests_total":
                verb = dict(pairs)["verb"]
                by_verb[verb] = by_verb.get(verb, 0.0) + value
        return by_verb

    async def wait_ready(self, op: OperatorProcess, *, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        url = f"https://127.0.0.1:{op.metrics_port}/readyz"
        while time.monotonic() < deadline:
            if op.proc.poll() is not None:
                raise RuntimeError(f"operator exited; see {op.log}")
            try:
                async with self.session.get(url, ssl=self.ssl) as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.2)
        raise RuntimeError(f"operator not ready after {timeout}s; see {op.log}")

    async def wait_quiet(self, op: OperatorProcess, *, quiet_for: float, timeout: float) -> bool:
        """Wait until the operator's queues are empty and it made no request for `quiet_for`
        seconds; False on timeout."""
        deadline = time.monotonic() + timeout
        last = -1.0
        since = time.monotonic()
        while time.monotonic() < deadline:
            samples = await self.samples(op)
            made = sum(
                v for (n, _), v in samples.items() if n == "moorage_rest_client_requests_total"
            )
            depth = sum(v for (n, _), v in samples.items() if n == "moorage_workqueue_depth")
            active = sum(
                v for (n, _), v in samples.items() if n == "moorage_controller_active_workers"
            )
            if made != last or depth or active:
                last, since = made, time.monotonic()
            elif time.monotonic() - since >= quiet_for:
                return True
            await asyncio.sleep(0.5)
        return False


def mean_ms(now: tuple[float, float], before: tuple[float, float]) -> float:
    """Mean milliseconds per reconcile between two (seconds, reconciles) readings."""
    done = now[1] - before[1]
    return (now[0] - before[0]) / done * 1000 if done else 0.0


def writes(before: dict[str, float], after: dict[str, float]) -> int:
    return int(sum(after.get(v, 0) - before.get(v, 0) for v in WRITE_VERBS))


def verb_delta(before: dict[str, float], after: dict[str, float]) -> dict[str, int]:
    return {v: int(after[v] - before.get(v, 0)) for v in after if after[v] != before.get(v, 0)}


def total_requests(before: dict[str, float], after: dict[str, float]) -> int:
    return int(sum(after.values()) - sum(before.values()))


# ---- the cluster side ------------------------------------------------------------------------


def install_crds(plane: ControlPlane) -> None:
    files = sorted(p for p in CRD_DIR.glob("*.yaml") if p.name != "kustomization.yaml")
    names: list[str] = []
    for path in files:
        out = plane.kubectl("apply", "--server-side", "-f", str(path), "-o", "name")
        names.extend(line.strip() for line in out.stdout.splitlines() if line.strip())
    plane.kubectl("wait", "--for=condition=Established", "--timeout=60s", *names)


async def create_servers(
    kube: KubeClient, count: int, namespaces: list[str], *, parallel: int = 32
) -> None:
    gate = asyncio.Semaphore(parallel)

    async def one(index: int) -> None:
        namespace = namespaces[index % len(namespaces)]
        async with gate:
            for attempt in range(5):
                try:
                    await kube.create(
                        MCPSERVERS, server_body(index, namespace), namespace=namespace
                    )
                    return
                except Conflict:
                    return  # an earlier attempt that timed out had created it
                except KubeError:
                    if attempt == 4:
                        raise
                    await asyncio.sleep(0.5)

    await asyncio.gather(*(one(i) for i in range(count)))


def key(obj: dict[str, Any]) -> str:
    return f"{obj['metadata'].get('namespace')}/{obj['metadata']['name']}"


async def wait_all_have_status(
    kube: KubeClient, count: int, scope: str | None, *, timeout: float
) -> float:
    """Watch MCPServers until `count` of them have `status.phase`; the monotonic time then."""
    done: set[str] = set()
    deadline = time.monotonic() + timeout
    listed = await kube.list(MCPSERVERS, namespace=scope)
    for obj in listed.items:
        if (obj.get("status") or {}).get("phase"):
            done.add(key(obj))
    rv = listed.resource_version
    while len(done) < count:
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"only {len(done)}/{count} MCPServers have a status after {timeout}s"
            )
        async for event in kube.watch(
            MCPSERVERS, namespace=scope, resource_version=rv, timeout_seconds=30
        ):
            rv = event.object.get("metadata", {}).get("resourceVersion", rv)
            if event.type in ("ADDED", "MODIFIED") and (event.object.get("status") or {}).get(
                "phase"
            ):
                done.add(key(event.object))
            if len(done) >= count:
                break
    return time.monotonic()


async def count_children(kube: KubeClient, scope: str | None) -> dict[str, int]:
    counts = {}
    for kind in (SERVICEACCOUNTS, ROLES, ROLEBINDINGS, CONFIGMAPS, DEPLOYMENTS, SERVICES):
        listed = await kube.list(
            kind, namespace=scope, label_selector="app.kubernetes.io/managed-by=moorage"
        )
        counts[kind.kind] = len(listed.items)
    return counts


async def server_states(kube: KubeClient, scope: str | None) -> dict[str, tuple[Any, ...]]:
    """What each MCPServer's status says (phase, message, ready replicas)."""
    listed = await kube.list(MCPSERVERS, namespace=scope)
    return {
        key(s): (
            (s.get("status") or {}).get("phase"),
            (s.get("status") or {}).get("message"),
            (s.get("status") or {}).get("readyReplicas"),
        )
        for s in listed.items
    }


def changed(before: dict[str, tuple[Any, ...]], after: dict[str, tuple[Any, ...]]) -> int:
    return sum(1 for name, state in after.items() if before.get(name) != state)


async def ready_deployments(kube: KubeClient, scope: str | None) -> int:
    listed = await kube.list(
        DEPLOYMENTS, namespace=scope, label_selector="app.kubernetes.io/managed-by=moorage"
    )
    return sum(1 for d in listed.items if (d.get("status") or {}).get("readyReplicas"))


# ---- the run -------------------------------------------------------------------------------------


@dataclass
class Figures:
    count: int = 0
    concurrency: int = 0
    namespaces: int = 1
    seconds_to_status: float = 0.0
    children: dict[str, int] | None = None
    requests_at_status: int = 0
    requests_settled: int = 0
    writes_settled: int = 0
    settled: bool = False
    ready_deployments: int = 0
    seconds_to_settle: float = 0.0
    cpu_at_status: float = 0.0
    cpu_settled: float = 0.0
    peak_rss: int = 0
    rss_idle: int = 0
    rss_settled: int = 0
    restart_reconciles: int = 0
    restart_writes: int = 0
    resync_reconciles: int = 0
    resync_writes: int = 0
    restart_peak_rss: int = 0
    restart_sync_seconds: float = 0.0
    create_reconcile_ms: float = 0.0
    restart_reconcile_ms: float = 0.0
    resync_reconcile_ms: float = 0.0
    cpu_window: str = ""
    restart_changed: int = 0
    resync_changed: int = 0


async def run(
    count: int,
    concurrency: int,
    namespace_count: int,
    python: str,
    workdir: Path,
    *,
    settle_timeout: float | None = None,
) -> Figures:
    figures = Figures(count=count, concurrency=concurrency, namespaces=namespace_count)
    namespaces = namespace_names(namespace_count)
    # One namespace: the operator watches it alone; several: it watches the whole cluster.
    scope = NAMESPACE if namespace_count == 1 else None
    watch = scope or ""
    # Long enough for the slowest phase at this count on 2 CPUs.
    patience = max(600.0, count * 0.3)
    plane = ControlPlane(
        workdir / "controlplane",
        report=lambda m: print(m, flush=True),
        tuning=control_plane_tuning(count),
    )
    plane.start()
    try:
        install_crds(plane)
        kube = await KubeClient.connect(
            kubeconfig=str(plane.kubeconfig), user_agent="moorage-bench"
        )
        async with kube, aiohttp.ClientSession() as session:
            scraper = Scraper(session)
            for namespace in namespaces:
                await kube.create(
                    NAMESPACES,
                    {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}},
                )
            with operator_process(
                plane.kubeconfig,
                workdir,
                name="operator-1",
                concurrency=concurrency,
                resync="10h",
                watch=watch,
                python=python,
            ) as op:
                await scraper.wait_ready(op)
                # Idle: caches synced, no MCPServer yet, nothing left to do for a few seconds.
                await scraper.wait_quiet(op, quiet_for=5, timeout=60)
                figures.rss_idle = op.proc_status("VmRSS")
                before = await scraper.requests(op)
                cpu_before = op.cpu_seconds()
                window_start = CpuWindow.sample(plane, op)
                print(f"creating {count} MCPServers", flush=True)
                started = time.monotonic()
                waiter = asyncio.create_task(
                    wait_all_have_status(kube, count, scope, timeout=patience * 1.5)
                )
                await create_servers(kube, count, namespaces)
                print(f"created in {time.monotonic() - started:.1f}s", flush=True)
                finished = await waiter
                figures.seconds_to_status = finished - started
                figures.cpu_at_status = op.cpu_seconds() - cpu_before
                figures.cpu_window = CpuWindow.sample(plane, op).since(window_start).describe()
                print(f"CPU until then: {figures.cpu_window}", flush=True)
                at_status = await scraper.requests(op)
                figures.create_reconcile_ms = mean_ms(await scraper.reconcile_time(op), (0.0, 0.0))
                figures.requests_at_status = total_requests(before, at_status)
                figures.children = await count_children(kube, scope)
                print(
                    f"every MCPServer has a status after {figures.seconds_to_status:.1f}s; "
                    f"children {figures.children}",
                    flush=True,
                )
                figures.settled = await scraper.wait_quiet(
                    op, quiet_for=10, timeout=settle_timeout or patience * 2
                )
                figures.seconds_to_settle = time.monotonic() - started
                settled = await scraper.requests(op)
                figures.requests_settled = total_requests(before, settled)
                figures.writes_settled = writes(before, settled)
                figures.cpu_settled = op.cpu_seconds() - cpu_before
                figures.peak_rss = op.proc_status("VmHWM")
                figures.rss_settled = op.proc_status("VmRSS")
                figures.ready_deployments = await ready_deployments(kube, scope)
                print(f"settled after {figures.seconds_to_settle:.1f}s: {settled}", flush=True)
            with operator_process(
                plane.kubeconfig,
                workdir,
                name="operator-2",
                concurrency=concurrency,
                resync=f"{RESYNC_PERIOD_S}s",
                watch=watch,
                python=python,
            ) as op:
                spawned = time.monotonic()
                await scraper.wait_ready(op)
                figures.restart_sync_seconds = time.monotonic() - spawned

                async def reconciles() -> int:
                    return int(
                        await scraper.total(
                            op, "moorage_controller_reconcile_total", controller="mcpserver"
                        )
                    )

                async def wait_reconciles(target: int, *, timeout: float) -> None:
                    deadline = time.monotonic() + timeout
                    while True:
                        if await reconciles() >= target:
                            return
                        if time.monotonic() > deadline:
                            raise RuntimeError(f"fewer than {target} reconciles after {timeout}s")
                        await asyncio.sleep(0.5)

                states = await server_states(kube, scope)
                start = await scraper.requests(op)
                await wait_reconciles(count, timeout=patience)
                await scraper.wait_quiet(op, quiet_for=3, timeout=patience)
                restart_time = await scraper.reconcile_time(op)
                figures.restart_reconcile_ms = mean_ms(restart_time, (0.0, 0.0))
                after_restart = await scraper.requests(op)
                figures.restart_reconciles = await reconciles()
                figures.restart_writes = writes(start, after_restart)
                states_after_restart = await server_states(kube, scope)
                figures.restart_changed = changed(states, states_after_restart)
                print(
                    f"restart: {figures.restart_reconciles} reconciles, "
                    f"requests {verb_delta(start, after_restart)}, "
                    f"statuses that changed {figures.restart_changed}",
                    flush=True,
                )
                await wait_reconciles(
                    figures.restart_reconciles + count, timeout=RESYNC_PERIOD_S * 2 + patience
                )
                await scraper.wait_quiet(op, quiet_for=3, timeout=patience)
                figures.resync_reconcile_ms = mean_ms(
                    await scraper.reconcile_time(op), restart_time
                )
                after_resync = await scraper.requests(op)
                figures.resync_reconciles = await reconciles() - figures.restart_reconciles
                figures.resync_writes = writes(after_restart, after_resync)
                figures.resync_changed = changed(
                    states_after_restart, await server_states(kube, scope)
                )
                figures.restart_peak_rss = op.proc_status("VmHWM")
                print(
                    f"resync: {figures.resync_reconciles} reconciles, "
                    f"requests {verb_delta(after_restart, after_resync)}, "
                    f"statuses that changed {figures.resync_changed}",
                    flush=True,
                )
    finally:
        plane.stop()
    return figures


def mib(value: int) -> str:
    return f"{value / 2**20:.0f} MiB"


def section_key(f: Figures) -> str:
    """What names a configuration's section in docs/benchmarks.md."""
    return f"{f.count}-c{f.concurrency}-ns{f.namespaces}"


def report(f: Figures) -> str:
    n = f.count
    status_cpu_share = f.cpu_at_status / f.seconds_to_status * 100 / (os.cpu_count() or 1)
    where = (
        "in one namespace, which the operator watches alone (namespace mode)"
        if f.namespaces == 1
        else f"spread over {f.namespaces} namespaces, the operator watching every namespace"
    )
    per_server = (f.peak_rss - f.rss_idle) / n
    return "\n".join(
        [
            f"## Operator: {n:,} MCPServers, RECONCILE_CONCURRENCY={f.concurrency}"
            + ("" if f.namespaces == 1 else f", {f.namespaces} namespaces"),
            "",
            f"`bench/operator_scale.py --count {n} --concurrency {f.concurrency} --namespaces "
            f"{f.namespaces}`: {n} MCPServers (stdio) created at once (32 concurrent creates) "
            f"{where}, on a local control plane (etcd, kube-apiserver, kube-controller-manager, "
            "kube-scheduler and kwok on the same 2 CPUs"
            + (
                "), "
                if n <= DEFAULT_NODE_PODS
                else "; the controller manager and the scheduler at 200 requests per second, "
                "the apiserver with twice its default in-flight limits), "
            )
            + "`moorage-operator` as its own process from an "
            "environment built like the image's (`uv sync --no-dev`), no leader election. The operator writes a server's status after applying its "
            "children in the same reconcile.",
            "",
            "| what | measured | target (spec §9) |",
            "|---|---|---|",
            f"| every MCPServer has its children and a status | {f.seconds_to_status:.1f} s | ≤ 60 s at 1,000 |",
            f"| operator CPU until then | {f.cpu_at_status:.1f} s ({status_cpu_share:.0f} % of the machine) | ≤ 25 % of the run |",
            f"| API requests per new MCPServer, until every status was written | {f.requests_at_status / n:.2f} | ≤ 12 |",
            f"| API requests per MCPServer, until the operator went quiet | {f.requests_settled / n:.2f} (writes {f.writes_settled / n:.2f}) | ≤ 12 |",
            f"| writes during a cold restart (every MCPServer reconciled; {f.restart_reconciles} reconciles) | {f.restart_writes} (statuses whose content changed meanwhile: {f.restart_changed}) | 0 |",
            f"| writes during the periodic resync ({f.resync_reconciles} reconciles, warm caches) | {f.resync_writes} (statuses whose content changed meanwhile: {f.resync_changed}) | 0 |",
            f"| operator peak RSS (VmHWM) | {mib(f.peak_rss)} (restarted operator {mib(f.restart_peak_rss)}) | ≤ 150 MB at 1,000 |",
            f"| operator idle RSS, caches synced, no MCPServer | {mib(f.rss_idle)} | ≤ 60 MiB |",
            f"| operator RSS once quiet with every MCPServer | {mib(f.rss_settled)} | |",
            f"| peak RSS above idle, per MCPServer | {per_server / 1024:.1f} KiB | |",
            f"| operator CPU until quiet | {f.cpu_settled:.1f} s | |",
            f"| restarted operator: caches synced (process start to ready) | {f.restart_sync_seconds:.1f} s | |",
            f"| mean reconcile time: creating the children and status / cold restart / resync (no write) | {f.create_reconcile_ms:.1f} / {f.restart_reconcile_ms:.1f} / {f.resync_reconcile_ms:.1f} ms | |",
            "",
            f"- Children found: {f.children}.",
            f"- CPU seconds from the first create until every status was written: {f.cpu_window}.",
            f"- Quiet (no request for 10 s, queues empty) after {f.seconds_to_settle:.0f} s"
            + ("" if f.settled else " (gave up waiting)")
            + f"; {f.ready_deployments}/{n} proxy Deployments had a ready replica (kwok).",
            "- Requests counted by the operator's `moorage_rest_client_requests_total` "
            "(all verbs: list, watch, apply, patch, create for Events).",
            "- A write during a restart or resync is only expected where the cluster changed "
            "what a status reports (e.g. the node lifecycle controller marking kwok's pods "
            "not ready after a missed node heartbeat); the figures in brackets count MCPServers "
            "whose phase, message or ready replicas differ between the start and the end of "
            "the window.",
            f"- Machine: {os.cpu_count()} CPUs, Python {platform.python_version()}.",
        ]
    )


def write_section(key: str, section: str) -> None:
    """Replace this configuration's section of docs/benchmarks.md (or append it)."""
    begin, end = f"<!-- operator_scale:{key}:begin -->", f"<!-- operator_scale:{key}:end -->"
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
    DOC.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1000, help="MCPServers to create")
    parser.add_argument("--concurrency", type=int, default=4, help="RECONCILE_CONCURRENCY")
    parser.add_argument(
        "--namespaces", type=int, default=1, help="namespaces to spread the MCPServers over"
    )
    parser.add_argument(
        "--dev-env",
        action="store_true",
        help="run the operator with this Python (the dev environment), not the image's set",
    )
    parser.add_argument(
        "--settle-timeout",
        type=float,
        default=None,
        help="seconds to wait for the operator to go quiet (default: 0.6 s per MCPServer)",
    )
    parser.add_argument("--no-docs", action="store_true", help="do not update docs/benchmarks.md")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs)")
    args = parser.parse_args()
    python = sys.executable if args.dev_env else str(image_environment())
    workdir = Path(tempfile.mkdtemp(prefix="moorage-bench-"))
    try:
        figures = asyncio.run(
            run(
                args.count,
                args.concurrency,
                args.namespaces,
                python,
                workdir,
                settle_timeout=args.settle_timeout,
            )
        )
    finally:
        if args.keep:
            print(f"logs kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    section = report(figures)
    print(section)
    if not args.no_docs:
        write_section(section_key(figures), section)


if __name__ == "__main__":
    main()
