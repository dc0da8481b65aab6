"""`moorage-registry-api --data-dir DIR --port 8080`: serve an MCPRegistry's synced data.

Exit codes: 0 after SIGTERM/SIGINT, 2 for a bad setting.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import structlog
from aiohttp import web

from moorage_core.loggers import configure_logging
from moorage_core.settings import SettingError
from moorage_registry_api.application import make_app
from moorage_registry_api.settings import parse_settings

log = structlog.get_logger(__name__)


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point."""
    try:
        settings = parse_settings(sys.argv[1:] if argv is None else argv)
    except SettingError as exc:
        print(f"moorage-registry-api: {exc}", file=sys.stderr)
        return 2
    configure_logging(fmt=settings.log_format, level=settings.log_level)
    log.info(
        "registry_api_starting",
        data_dir=str(settings.data_dir),
        host=settings.host,
        port=settings.port,
    )
    web.run_app(
        make_app(settings),
        host=settings.host,
        port=settings.port,
        access_log=None,
        print=None,
        shutdown_timeout=5.0,
    )
    log.info("registry_api_stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
