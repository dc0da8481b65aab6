"""The HTTPS server for `/metrics`, `/healthz` and `/readyz` that every component runs.

A health check is `async () -> None` that raises when unhealthy. `/healthz` runs the liveness
checks, `/readyz` the readiness checks; each answers 200 `ok` or 503 with the failing checks named.
`/metrics` renders the injected Prometheus registry. TLS comes from a `ReloadingTLS`; without
one `HTTPSServer` serves plain HTTP (the registry API).

`HTTPSServer.start()` binds its address before anything else, so an address in use is a
`StartupFailure` naming the setting that chose it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

import structlog
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from moorage_core.readtimeouts import ReadTimeouts
from moorage_core.startup import Listener, bound_port, listen_sockets
from moorage_core.supervising import TaskSupervisor
from moorage_core.tls import ReloadingTLS

log = structlog.get_logger(__name__)

HealthCheck = Callable[[], Awaitable[None]]
_CHECK_TIMEOUT = 5.0


@dataclass
class HealthChecks:
    """Named liveness and readiness checks; components add theirs before serving."""

    liveness: dict[str, HealthCheck] = field(default_factory=dict)
    readiness: dict[str, HealthCheck] = field(default_factory=dict)


async def run_checks(checks: Mapping[str, HealthCheck]) -> dict[str, str]:
    """Run every check concurrently; the failures by name (empty when all passed)."""

    async def one(check: HealthCheck) -> str | None:
        try:
            async with asyncio.timeout(_CHECK_TIMEOUT):
                await check()
        except Exception as exc:
            return str(exc) or type(exc).__name__
        return None

    names = list(checks)
    results = await asyncio.gather(*(one(checks[n]) for n in names))
    return {n: r for n, r in zip(names, results, strict=True) if r is not None}


def _probe_handler(
    checks: Mapping[str, HealthCheck],
) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handler(request: web.Request) -> web.Response:
        failed = await run_checks(checks)
        if failed:
            text = "\n".join(f"[-] {name}: {why}" for name, why in sorted(failed.items()))
            return web.Response(status=503, text=text + "\n")
        verbose = "verbose" in request.query
        text = "\n".join(f"[+] {name} ok" for name in sorted(checks)) + "\n" if verbose else "ok"
        return web.Response(text=text)

    return handler


def make_health_app(registry: CollectorRegistry, checks: HealthChecks) -> web.Application:
    """The aiohttp app serving `/metrics`, `/healthz`, `/readyz`."""

    async def metrics(_: web.Request) -> web.Response:
        body = generate_latest(registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", _probe_handler(checks.liveness))
    app.router.add_get("/readyz", _probe_handler(checks.readiness))
    return app


class HTTPSServer:
    """Runs an aiohttp app on HOST:PORT with a reloading TLS context (plain HTTP when `tls` is
    None), inside a larger loop."""

    def __init__(
        self,
        app: web.Application,
        *,
        host: str,
        port: int,
        tls: ReloadingTLS | None,
        setting: str = "the listen address",
        shutdown_timeout: float = 60.0,
        supervisor: TaskSupervisor | None = None,
        reload_tls: bool = True,
        read_timeouts: ReadTimeouts | None = None,
    ) -> None:
        self.app = app
        self.host = host
        self.port = port
        self.tls = tls
        self.setting = setting
        """The setting that chose HOST:PORT (e.g. `METRICS_BIND / --metrics-bind`), named
        when the address cannot be used."""
        self.shutdown_timeout = shutdown_timeout
        """Seconds `stop()` lets requests in flight finish."""
        self.supervisor = supervisor
        """Where the certificate reload loop runs, so that its end is noticed."""
        self.reload_tls = reload_tls
        """Whether `start()` and `stop()` run `tls`'s reload loop. False when several servers
        share one `ReloadingTLS`: their owner starts it once and stops it after all of them
        stopped, so that it keeps reloading while any of them still drains."""
        self.read_timeouts = read_timeouts or ReadTimeouts()
        """How long a client may take to send a request's headers and body."""
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        """Bind (a `StartupFailure` naming `setting` when the address cannot be used), then
        serve."""
        sockets = listen_sockets(Listener(self.host, self.port, self.setting))
        if not self.app.pre_frozen:
            self.read_timeouts.install(self.app)
        self._runner = web.AppRunner(
            self.app,
            access_log=None,
            handle_signals=False,
            shutdown_timeout=self.shutdown_timeout,
            **self.read_timeouts.runner_options(),
        )
        try:
            await self._runner.setup()
            for sock in sockets:
                site = web.SockSite(
                    self._runner, sock, ssl_context=self.tls.context if self.tls else None
                )
                await site.start()
        except BaseException:
            await self._runner.cleanup()
            self._runner = None
            for sock in sockets:
                sock.close()  # those no site took over
            raise
        # Bound to an ephemeral port (tests): report the real one.
        self.port = bound_port(sockets, default=self.port)
        if self.tls and self.reload_tls:
            self.tls.start(self.supervisor)
        log.info("https_server_started", host=self.host, port=self.port, tls=self.tls is not None)

    async def stop(self) -> None:
        if self.tls and self.reload_tls:
            await self.tls.stop()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
