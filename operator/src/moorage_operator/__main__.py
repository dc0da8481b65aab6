"""`moorage-operator`: parse settings, configure logging, connect to the apiserver, run the manager.

Start-up: load the credentials (`KUBECONFIG`), wait for the apiserver to answer (at most
`STARTUP_TIMEOUT`), load the metrics certificate (`METRICS_CERT_DIR`) and bind `METRICS_BIND`.
A failure of any step is one `startup_failed` line naming the setting. SIGTERM/SIGINT end the
process at any stage: during start-up at once, afterwards after the manager's drain.

Exit codes: 0 after a graceful stop (SIGTERM/SIGINT), 1 when leadership was lost, a loop
crashed, the apiserver did not answer or an address is in use (Kubernetes restarts the pod), 2
for a bad setting.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Callable, Sequence
from typing import Final

import structlog
from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector

from moorage_core.loggers import configure_logging
from moorage_core.running import Lifecycle, run_service
from moorage_core.settings import SettingError
from moorage_core.startup import connect_kube, load_tls, wait_for_apiserver
from moorage_operator.metrics import OperatorMetrics
from moorage_operator.runtime.controller import Controller
from moorage_operator.runtime.leaderelection import LeaderElectionConfig, LeadershipLost
from moorage_operator.runtime.manager import Manager, ManagerOptions
from moorage_operator.settings import OperatorSettings
from moorage_operator.wiring import build_controllers

log = structlog.get_logger(__name__)

USER_AGENT = "moorage-operator"
LEASE_NAME = "moorage-operator"
KUBECONFIG_SETTING = "KUBECONFIG / --kubeconfig"
DRAIN_TIMEOUT = ManagerOptions().drain_timeout + 3.0
"""Seconds from SIGTERM to exit: the manager's drain, releasing the Lease, closing the server."""

Registration = Callable[[Manager, OperatorSettings], list[Controller]]


def manager_options(settings: OperatorSettings) -> ManagerOptions:
    """The manager's options for these settings."""
    election = (
        LeaderElectionConfig(
            namespace=settings.pod_namespace, identity=settings.pod_name, name=LEASE_NAME
        )
        if settings.leader_election
        else None
    )
    host, port = settings.metrics_bind
    return ManagerOptions(
        namespaces=settings.watch_namespaces,
        concurrency=settings.reconcile_concurrency,
        resync_period=settings.resync_period,
        leader_election=election,
        metrics_host=host,
        metrics_port=port,
    )


WATCHES_PER_SCOPE: Final = 24
"""Informers the operator may run: each holds one watch connection per scope (per namespace in
WATCH_NAMESPACES, or one cluster-wide). The controllers use 16 today."""
REQUEST_CONNECTIONS: Final = 32
"""Connections for everything else: reconciles' reads and writes, the Lease, Events."""


def connection_budget(settings: OperatorSettings) -> int:
    """Connections the kube client may hold: every watch at once, plus room for requests (a
    watch waiting for a connection would starve the Lease renewal and every reconcile)."""
    scopes = len(settings.watch_namespaces) or 1
    return scopes * WATCHES_PER_SCOPE + REQUEST_CONNECTIONS


def check_watch_budget(informers: int) -> None:
    """Refuse to run with more informers than `connection_budget` made room for."""
    if informers > WATCHES_PER_SCOPE:
        raise RuntimeError(
            f"{informers} informers need more watch connections than WATCHES_PER_SCOPE "
            f"({WATCHES_PER_SCOPE}) provides: raise it"
        )


async def run_operator(
    settings: OperatorSettings,
    *,
    register: Registration = build_controllers,
    lifecycle: Lifecycle | None = None,
) -> int:
    """Run the operator until `lifecycle.stop` (SIGTERM/SIGINT); the process exit code.

    Without a lifecycle it runs until cancelled."""
    lifecycle = lifecycle or Lifecycle(drain_timeout=DRAIN_TIMEOUT)
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    metrics = OperatorMetrics(registry)
    kube = await connect_kube(
        kubeconfig=settings.kubeconfig,
        setting=KUBECONFIG_SETTING,
        user_agent=USER_AGENT,
        observer=metrics.observe_request,
        max_connections=connection_budget(settings),
    )
    async with kube:
        await wait_for_apiserver(
            kube,
            timeout=settings.startup_timeout,
            setting="STARTUP_TIMEOUT / --startup-timeout",
            credentials_setting=KUBECONFIG_SETTING,
        )
        tls = load_tls(
            settings.metrics_cert_dir,
            setting="METRICS_CERT_DIR / --metrics-cert-dir",
            hosts=["localhost", "127.0.0.1", settings.pod_name],
            common_name=USER_AGENT,
        )
        manager = Manager(
            kube,
            options=manager_options(settings),
            metrics=metrics,
            tls=tls,
            event_instance=settings.pod_name,
        )
        controllers = register(manager, settings)
        check_watch_budget(len(manager.informers))
        log.info(
            "operator_starting",
            pod=settings.pod_name,
            namespace=settings.pod_namespace,
            watch_namespaces=list(settings.watch_namespaces) or "*",
            leader_election=settings.leader_election,
            controllers=[c.name for c in controllers],
        )

        async def stop_on_request() -> None:
            await lifecycle.stop.wait()
            manager.stop()

        # From here a signal stops the manager, which drains and releases the Lease.
        stopper = asyncio.create_task(stop_on_request(), name="stop-on-signal")
        lifecycle.serving()
        try:
            await manager.run()
        except LeadershipLost as exc:
            log.error("operator_exiting", reason=str(exc))
            return 1
        finally:
            stopper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await stopper
    log.info("operator_exited")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point."""
    try:
        settings = OperatorSettings.from_env_and_args(sys.argv[1:] if argv is None else argv)
    except SettingError as exc:
        print(f"moorage-operator: {exc}", file=sys.stderr)
        return 2
    configure_logging(fmt=settings.log_format, level=settings.log_level)
    return run_service(
        lambda lifecycle: run_operator(settings, lifecycle=lifecycle),
        drain_timeout=DRAIN_TIMEOUT,
    )


if __name__ == "__main__":
    sys.exit(main())
