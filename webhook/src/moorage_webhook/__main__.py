"""`moorage-webhook --cert-dir DIR [--bind HOST:PORT] [--metrics-bind HOST:PORT]`.

Parses settings, configures logging, serves until SIGTERM or SIGINT, then stops accepting and lets
in-flight reviews finish. Exit codes: 0 after a graceful stop, 2 for a bad setting.
"""

from __future__ import annotations

import asyncio
import gc
import signal
import sys
from collections.abc import Sequence

import structlog

from moorage_core.loggers import configure_logging
from moorage_core.settings import SettingError
from moorage_webhook.server import WebhookServer
from moorage_webhook.settings import WebhookSettings

log = structlog.get_logger(__name__)


async def run_webhook(settings: WebhookSettings) -> int:
    """Serve until SIGTERM/SIGINT; the process exit code."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    server = WebhookServer(settings)
    await server.start()
    # Everything alive now (modules, validators, compiled schemas) lives as long as the process.
    # Freezing it keeps the collector's full passes, which would scan it all, to the objects
    # reviews leave behind: a full pass over the start-up heap is a pause of tens of ms.
    gc.collect()
    gc.freeze()
    try:
        await stop.wait()
        log.info("shutdown_requested")
    finally:
        await server.stop()
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
    return asyncio.run(run_webhook(settings))


if __name__ == "__main__":
    sys.exit(main())
