"""`moorage-registry-api --data-dir DIR --port 8080`: serve an MCPRegistry's synced data.

Binds its address first, then serves until SIGTERM/SIGINT and lets requests in flight finish
(bounded by `DRAIN_TIMEOUT`). A data directory that does not exist or an address that cannot be
used ends the start-up with one `startup_failed` line naming the setting. Exit codes: 0 after
SIGTERM/SIGINT, 1 when the address is in use or the data poll died, 2 for a bad setting.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import structlog

from moorage_core.loggers import configure_logging
from moorage_core.running import Lifecycle, run_service
from moorage_core.serving import HTTPSServer
from moorage_core.settings import SettingError
from moorage_core.startup import StartupFailure
from moorage_core.supervising import TaskSupervisor
from moorage_registryserver.app import make_app
from moorage_registryserver.settings import RegistryServerSettings, parse_settings

log = structlog.get_logger(__name__)

DATA_DIR_SETTING = "REGISTRY_DATA_DIR / --data-dir"
LISTEN_SETTING = "REGISTRY_API_HOST / --host and REGISTRY_API_PORT / --port"


async def serve_registry(settings: RegistryServerSettings, *, lifecycle: Lifecycle) -> int:
    """Serve until `lifecycle.stop`; the process exit code."""
    if not settings.data_dir.is_dir():
        raise StartupFailure(
            DATA_DIR_SETTING,
            f"{settings.data_dir} is not a directory",
            hint="mount the MCPRegistry's storage ConfigMap there",
        )
    supervisor = TaskSupervisor(on_failure=lifecycle.stop.set)
    server = HTTPSServer(
        make_app(settings, supervisor=supervisor),
        host=settings.host,
        port=settings.port,
        tls=None,  # plain HTTP
        setting=LISTEN_SETTING,
        shutdown_timeout=settings.drain_timeout,
    )
    try:
        await server.start()
        log.info(
            "registry_api_started",
            data_dir=str(settings.data_dir),
            host=settings.host,
            port=server.port,
        )
        lifecycle.serving()
        await supervisor.wait(lifecycle.stop)
    finally:
        await server.stop()
        await supervisor.aclose()
    log.info("registry_api_stopped")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point."""
    try:
        settings = parse_settings(sys.argv[1:] if argv is None else argv)
    except SettingError as exc:
        print(f"moorage-registry-api: {exc}", file=sys.stderr)
        return 2
    configure_logging(fmt=settings.log_format, level=settings.log_level)
    return run_service(
        lambda lifecycle: serve_registry(settings, lifecycle=lifecycle),
        drain_timeout=settings.drain_timeout,
    )


if __name__ == "__main__":
    sys.exit(main())
