"""`moorage-webhook --cert-dir DIR [--bind HOST:PORT] [--metrics-bind HOST:PORT]`.

Parses settings, configures logging, loads Kubernetes credentials (to follow MCPTenants, unless
`--mcptenants false`), serves until SIGTERM or SIGINT, then stops accepting and lets
in-flight reviews finish (bounded by `--drain-timeout`). A certificate directory or an address
that cannot be used ends the start-up with one `startup_failed` line naming the setting. Exit
codes: 0 after a graceful stop, 1 when an address is in use or a background task failed, 2 for a
bad setting.
"""

from __future__ import annotations

import gc
import sys
from collections.abc import Sequence

import structlog

from moorage_core.loggers import configure_logging
from moorage_core.running import Lifecycle, run_service
from moorage_core.settings import SettingError
from moorage_core.startup import connect_kube
from moorage_core.supervising import TaskSupervisor
from moorage_webhook.server import WebhookServer
from moorage_webhook.settings import WebhookSettings

log = structlog.get_logger(__name__)


async def run_webhook(settings: WebhookSettings, *, lifecycle: Lifecycle) -> int:
    """Serve until `lifecycle.stop` (SIGTERM/SIGINT); the process exit code."""
    supervisor = TaskSupervisor(on_failure=lifecycle.stop.set)
    kube = None
    if settings.mcptenants:
        kube = await connect_kube(
            kubeconfig=settings.kubeconfig,
            setting="KUBECONFIG / --kubeconfig",
            user_agent="moorage-webhook",
        )
    server = WebhookServer(settings, supervisor=supervisor, kube=kube)
    try:
        await server.start()
    except BaseException:
        if kube is not None:
            await kube.close()
        raise
    # Everything alive now (modules, validators, compiled schemas) lives as long as the process.
    # Freezing it keeps the collector's full passes, which would scan it all, to the objects
    # reviews leave behind: a full pass over the start-up heap is a pause of tens of ms.
    gc.collect()
    gc.freeze()
    lifecycle.serving()
    try:
        await supervisor.wait(lifecycle.stop)
    finally:
        await server.stop()
        await supervisor.aclose()
        if kube is not None:
            await kube.close()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    try:
        settings = WebhookSettings.from_env_and_args(sys.argv[1:] if argv is None else argv)
    except SettingError as exc:
        print(f"moorage-webhook: {exc}", file=sys.stderr)
        return 2
    if settings.cert_dir is None:
        print(
            "moorage-webhook: --cert-dir (CERT_DIR) is required: the apiserver only calls a "
            "webhook whose certificate it trusts",
            file=sys.stderr,
        )
        return 2
    configure_logging(fmt=settings.log_format, level=settings.log_level)
    return run_service(
        lambda lifecycle: run_webhook(settings, lifecycle=lifecycle),
        drain_timeout=settings.drain_timeout,
    )


if __name__ == "__main__":
    sys.exit(main())
