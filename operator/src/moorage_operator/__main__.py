"""`moorage-operator`: parse settings, configure logging, connect to the apiserver, run the manager.

Exit codes: 0 after a graceful stop (SIGTERM/SIGINT), 1 when leadership was lost or a loop
crashed (Kubernetes restarts the pod), 2 for a bad setting.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Callable, Sequence

import structlog
from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector

from moorage_core.kube import KubeClient
from moorage_core.loggers import configure_logging
from moorage_core.settings import SettingError
from moorage_core.tls import ReloadingTLS
from moorage_operator.controllers import build_controllers
from moorage_operator.metrics import OperatorMetrics
from moorage_operator.runtime.controller import Controller
from moorage_operator.runtime.leaderelection import LeaderElectionConfig, LeadershipLost
from moorage_operator.runtime.manager import Manager, ManagerOptions
from moorage_operator.settings import Settings

log = structlog.get_logger(__name__)

USER_AGENT = "moorage-operator"
LEASE_NAME = "moorage-operator"

Registration = Callable[[Manager, Settings], list[Controller]]


def manager_options(settings: Settings) -> ManagerOptions:
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


async def run_operator(settings: Settings, *, register: Registration = build_controllers) -> int:
    """Run the operator until SIGTERM/SIGINT; the process exit code."""
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    metrics = OperatorMetrics(registry)
    kube = await KubeClient.connect(
        kubeconfig=settings.kubeconfig, user_agent=USER_AGENT, observer=metrics.observe_request
    )
    async with kube:
        tls = ReloadingTLS.from_dir(
            settings.metrics_cert_dir,
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
        log.info(
            "operator_starting",
            pod=settings.pod_name,
            namespace=settings.pod_namespace,
            watch_namespaces=list(settings.watch_namespaces) or "*",
            leader_election=settings.leader_election,
            controllers=[c.name for c in controllers],
        )
        loop = asyncio.get_running_loop()
        signals = (signal.SIGTERM, signal.SIGINT)
        for sig in signals:
            loop.add_signal_handler(sig, manager.stop)
        try:
            await manager.run()
        except LeadershipLost as exc:
            log.error("operator_exiting", reason=str(exc))
            return 1
        finally:
            for sig in signals:
                loop.remove_signal_handler(sig)
    log.info("operator_exited")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point."""
    try:
        settings = Settings.from_env_and_args(sys.argv[1:] if argv is None else argv)
    except SettingError as exc:
        print(f"moorage-operator: {exc}", file=sys.stderr)
        return 2
    configure_logging(fmt=settings.log_format, level=settings.log_level)
    return asyncio.run(run_operator(settings))


if __name__ == "__main__":
    sys.exit(main())
