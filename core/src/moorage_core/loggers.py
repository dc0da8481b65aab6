"""structlog set-up, done once per process.

JSON lines on stdout in a cluster (or when asked), a readable console renderer on a TTY. Every
component logs key/value events through `structlog.get_logger()`; the standard library's
`logging` records (aiohttp, asyncio) are routed through the same renderer.
"""

from __future__ import annotations

import logging
import sys
from typing import Literal

import structlog

LogFormat = Literal["json", "console", "auto"]


def configure_logging(*, fmt: LogFormat | str = "auto", level: str = "INFO") -> None:
    """Configure structlog and stdlib logging; `auto` picks console on a TTY, JSON otherwise."""
    if fmt == "auto":
        fmt = "console" if sys.stdout.isatty() else "json"
    numeric = logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
    ]
    renderer: structlog.types.Processor
    if fmt == "json":
        shared.append(structlog.processors.format_exc_info)
        renderer = structlog.processors.JSONRenderer()
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=sys.stdout.isatty())
    structlog.configure(
        processors=[*shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stdout),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared[:-1] if fmt == "json" else shared,
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    # Library chatter (aiohttp access logs) stays at WARNING unless we debug.
    root.setLevel(max(numeric, logging.WARNING) if numeric > logging.DEBUG else logging.DEBUG)
