"""The manager: one place that owns the informers, the controllers, leader election and the
HTTPS metrics/health server, and runs them in the right order.

Every replica serves `/metrics`, `/healthz` and `/readyz` and keeps its caches warm (so a standby
can take over at once); only the leader runs controllers. `/readyz` answers 200 once every
informer has synced, 503 before. `/healthz` fails when a loop the process needs has died.

Lifecycle of `run()`:
1. start the HTTPS server and every informer;
2. acquire the Lease (when leader election is on), then start the controllers;
3. wait until `stop()` is called (SIGTERM), leadership is lost, or a loop crashes;
4. stop the controllers, letting reconciles in flight finish within `drain_timeout`;
5. release the Lease, stop the informers and the server.

`run()` returns normally after `stop()`; it raises `LeadershipLost` when the Lease was lost and
re-raises a crash of any loop (the loops run under a `TaskSupervisor`), so the process exits
non-zero and Kubernetes restarts it. An address the server cannot listen on is a
`StartupFailure` naming `ManagerOptions.metrics_setting`.

Reconcilers register through `add_controller()` and read caches through `informer()` /
`owned_informer()` (informers are shared per kind and selectors).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

import structlog
from prometheus_client import CollectorRegistry

from moorage_core.kube import KubeClient, ResourceKind
from moorage_core.serving import HealthChecks, HTTPSServer, make_health_app
from moorage_core.supervising import TaskSupervisor
from moorage_core.tls import ReloadingTLS
from moorage_operator.metrics import OperatorMetrics
from moorage_operator.runtime.controller import Controller, Reconciler
from moorage_operator.runtime.events import EventRecorder
from moorage_operator.runtime.informer import MANAGED_BY_SELECTOR, Informer, WatchPolicy
from moorage_operator.runtime.leaderelection import (
    LeaderElectionConfig,
    LeaderElector,
)

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class ManagerOptions:
    """How the manager runs; built from the operator's settings."""

    namespaces: tuple[str, ...] = ()
    """Namespaces to list and watch, one list/watch each; empty means cluster-wide."""
    concurrency: int = 4
    """Workers per controller (RECONCILE_CONCURRENCY)."""
    resync_period: float | None = 36000.0
    """Seconds between re-enqueues of every cached primary (jittered ±10 %); None disables."""
    leader_election: LeaderElectionConfig | None = None
    """The Lease to hold before running controllers; None runs them at once."""
    metrics_host: str = "0.0.0.0"  # noqa: S104 - probes and scrapes come from outside the pod
    metrics_port: int = 8443
    """Where the HTTPS metrics/health server listens (0: an ephemeral port, for tests)."""
    metrics_setting: str = "METRICS_BIND / --metrics-bind"
    """The setting named when that address cannot be used."""
    drain_timeout: float = 2.0
    """Seconds reconciles in flight may take to finish on shutdown before they are cancelled.
    Short on purpose: the Lease is released only after, and a standby waits for it."""
    watch_policy: WatchPolicy = field(default_factory=WatchPolicy)
    """Timing of every informer's list/watch loop."""


class Manager:
    """Owns informers, controllers, leader election and the health server; see the module."""

    def __init__(
        self,
        kube: KubeClient,
        *,
        options: ManagerOptions | None = None,
        metrics: OperatorMetrics | None = None,
        tls: ReloadingTLS | None = None,
        event_instance: str = "",
    ) -> None:
        self.kube = kube
        self.options = options or ManagerOptions()
        self.metrics = metrics or OperatorMetrics(CollectorRegistry())
        self.tls = tls
        self.health = HealthChecks()
        """Add checks before `run()`; the manager adds its own for informers and loops."""
        self._informers: dict[tuple[ResourceKind, str | None, str | None], Informer] = {}
        self._controllers: list[Controller] = []
        self._elector: LeaderElector | None = None
        if self.options.leader_election is not None:
            self._elector = LeaderElector(
                kube,
                self.options.leader_election,
                gauge=self.metrics.leader(self.options.leader_election.name),
            )
        self._event_instance = event_instance or (
            self.options.leader_election.identity if self.options.leader_election else "moorage"
        )
        self._server: HTTPSServer | None = None
        self._stop = asyncio.Event()
        self._loops = TaskSupervisor(on_failure=self._stop.set)
        """Informers, the leading loop and the certificate reload: each runs until cancelled."""
        self._running = False
        self.health.liveness["loops"] = self._check_loops
        self.health.readiness["informers"] = self._check_synced

    # -- registration -----------------------------------------------------------------------

    def informer(
        self,
        kind: ResourceKind,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> Informer:
        """The informer for `kind` with these selectors, created on first use and shared.

        Informers created while the manager runs start at once.
        """
        key = (kind, label_selector, field_selector)
        informer = self._informers.get(key)
        if informer is None:
            informer = Informer(
                self.kube,
                kind,
                namespaces=self.options.namespaces,
                label_selector=label_selector,
                field_selector=field_selector,
                policy=self.options.watch_policy,
            )
            self._informers[key] = informer
            if self._running:
                self._start_informer(informer)
        return informer

    def owned_informer(self, kind: ResourceKind) -> Informer:
        """The informer for objects of `kind` that Moorage created (label
        `app.kubernetes.io/managed-by=moorage`), which is all an owner needs to see."""
        return self.informer(kind, label_selector=MANAGED_BY_SELECTOR)

    @property
    def informers(self) -> list[Informer]:
        return list(self._informers.values())

    def add_controller(
        self,
        name: str,
        reconciler: Reconciler,
        *,
        for_kind: ResourceKind,
        concurrency: int | None = None,
    ) -> Controller:
        """A controller reconciling objects of `for_kind` (all of them, through the shared
        informer) with `reconciler`. Declare its owned/watched kinds on the result:

            ctl = manager.add_controller("mcpserver", reconciler, for_kind=MCPSERVERS)
            ctl.owns(manager.owned_informer(DEPLOYMENTS))
            ctl.watches(manager.informer(MCPTOOLCONFIGS), mapper=servers_referencing)
        """
        if self._running:
            raise RuntimeError("add controllers before the manager runs")
        if any(c.name == name for c in self._controllers):
            raise ValueError(f"a controller named {name!r} already exists")
        controller = Controller(
            name,
            reconciler,
            primary=self.informer(for_kind),
            concurrency=concurrency or self.options.concurrency,
            resync_period=self.options.resync_period,
            metrics=self.metrics,
        )
        self._controllers.append(controller)
        return controller

    @property
    def controllers(self) -> list[Controller]:
        return list(self._controllers)

    def event_recorder(self) -> EventRecorder:
        """An `EventRecorder` reporting as this replica."""
        return EventRecorder(self.kube, reporting_instance=self._event_instance)

    # -- state ------------------------------------------------------------------------------

    @property
    def is_leader(self) -> bool:
        """True while controllers may run (always, without leader election)."""
        return self._elector.is_leader if self._elector is not None else self._running

    @property
    def metrics_port(self) -> int:
        """The port the HTTPS server listens on (resolved once it started)."""
        return self._server.port if self._server is not None else self.options.metrics_port

    def has_synced(self) -> bool:
        return all(informer.has_synced() for informer in self._informers.values())

    async def _check_synced(self) -> None:
        pending = [i.name for i in self._informers.values() if not i.has_synced()]
        if pending:
            raise RuntimeError(f"caches not synced: {', '.join(sorted(pending))}")

    async def _check_loops(self) -> None:
        dead = self._loops.dead()
        if dead:
            raise RuntimeError(f"loops stopped: {', '.join(sorted(dead))}")

    # -- running ----------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask `run()` to shut down gracefully (safe to call from a signal handler)."""
        self._stop.set()

    async def run(self) -> None:
        """Run until `stop()`; see the module docstring for the order of things."""
        if self._running:
            raise RuntimeError("the manager is already running")
        self._running = True
        self._server = HTTPSServer(
            make_health_app(self.metrics.registry, self.health),
            host=self.options.metrics_host,
            port=self.options.metrics_port,
            tls=self.tls,
            setting=self.options.metrics_setting,
            supervisor=self._loops,
        )
        await self._server.start()
        try:
            for informer in self._informers.values():
                self._start_informer(informer)
            self._spawn("leading", self._lead())
            await self._wait_for_stop()
        finally:
            await self._shutdown()

    def _start_informer(self, informer: Informer) -> None:
        self._spawn(f"informer {informer.name}", informer.run())

    def _spawn(self, name: str, coro: Coroutine[Any, Any, None]) -> None:
        self._loops.spawn(name, coro)

    async def _lead(self) -> None:
        """Acquire the Lease if needed, then run the controllers and keep the Lease."""
        if self._elector is not None:
            await self._elector.acquire()
        tasks = [
            asyncio.create_task(
                controller.run(drain_timeout=self.options.drain_timeout),
                name=f"controller {controller.name}",
            )
            for controller in self._controllers
        ]
        if self._elector is not None:
            tasks.append(asyncio.create_task(self._elector.hold(), name="lease renewal"))
        try:
            if not tasks:
                # Nothing to run: stay here, so that a finished "leading" task means trouble.
                await asyncio.Event().wait()
            # All of these run until cancelled; the first to end brings everything down
            # (LeadershipLost from the renewal, or a crashed controller).
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()
            raise RuntimeError(f"{', '.join(t.get_name() for t in done)} ended unexpectedly")
        finally:
            # Cancelling a controller makes it drain its queue (bounded by drain_timeout).
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _wait_for_stop(self) -> None:
        # A loop that ended on its own has failed (they all run until cancelled): re-raise it.
        await self._loops.wait(self._stop)

    async def _shutdown(self) -> None:
        log.info("manager_stopping")
        leading = self._loops.pop("leading")
        if leading is not None:
            # Cancelling it stops the controllers, which drain their queues (bounded).
            leading.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await leading
        if self._elector is not None:
            await self._elector.release()
        await self._loops.aclose()
        if self._server is not None:
            await self._server.stop()
        log.info("manager_stopped")
