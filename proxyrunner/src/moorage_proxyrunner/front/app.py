"""The proxy's HTTP server: app factory, transport guards, health, metrics, graceful drain.

`make_app` assembles one aiohttp application around an `Endpoints` implementation (the stdio
bridge's MCP endpoints, or the HTTP reverse proxy): DNS-rebinding protection on the MCP paths
(a bad `Host` → 421, a foreign `Origin` → 403), 503 while draining, `/health` (ready only when
the backend is connected) and `/metrics` (answered here, never forwarded). `/health` and
`/metrics` skip the Host check: kubelet and Prometheus call them by pod IP, and they expose
nothing a page could misuse. Body limits and content types are checked per endpoint, where the
JSON-RPC error can name the request.

`serve` binds the listen address first (an address in use is a `StartupFailure` naming the
setting that chose it, reported before the backend is started), runs the app until SIGTERM/SIGINT
(or a stop event) and hands over (`drain`): readiness turns 503 at once and new sessions are
refused with 503 (`front.draining`) while the sessions here go on being served; once their
requests in flight are answered, those whose answer goes on a stream (legacy HTTP+SSE) included
(within the drain timeout), the listener closes, long-lived
streams are ended (their clients resume on another replica), the start-up's `handover` runs (the
session store forgets this replica's ownership) and everything is closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol
from urllib.parse import urlsplit

import structlog
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from moorage_core.startup import Listener, bound_port, listen_sockets
from moorage_core.supervising import TaskSupervisor
from moorage_proxyrunner.config.settings import LOOPBACK_HOSTS, ProxyRunnerSettings
from moorage_proxyrunner.front.draining import SHUTTING_DOWN, is_stream, opens_session
from moorage_proxyrunner.front.metrics import ProxyMetrics
from moorage_proxyrunner.front.responding import rpc_error
from moorage_proxyrunner.protocol.eras import METHOD_HEADER, SESSION_HEADER
from moorage_proxyrunner.protocol.jsonrpc import INVALID_REQUEST
from moorage_proxyrunner.protocol.pipeline import Identity

log = structlog.get_logger(__name__)

MCP_PATHS = frozenset({"/mcp", "/sse", "/messages", "/messages/"})
SHUTTING_DOWN_CODE = -32000
"""The JSON-RPC server error of a new session refused while draining."""
CLOSE_GRACE = 0.2
"""Seconds the handlers left after the drain (ended streams) get to return before they are
cancelled, and again for the cancellation: what was in flight has had the drain timeout."""
HANDOVER_TIMEOUT = 0.4
"""Seconds the handover may take when the drain timeout has already passed. With the closing
(twice `CLOSE_GRACE`) it stays within the second the process is given past its drain timeout
(`moorage_core.running.EXIT_GRACE`)."""
DRAIN_POLL = 0.05
"""Seconds between two looks at the answers owed on streams while draining: nothing announces
the last one, and the drain timeout is whole seconds."""

Handover = Callable[[], Awaitable[None]]
"""What a replica does last before it exits: leave its sessions to the others."""

Announcer = Callable[[str], None]
"""Sends one list-changed notification method to every open session."""
Rechecker = Callable[[Callable[[Identity, str], bool]], int]
"""Ends the resource subscriptions a caller may no longer read (`allowed(identity, uri)`);
returns how many ended."""


class Endpoints(Protocol):
    """What serves the MCP paths for one kind of backend."""

    metrics: ProxyMetrics
    """Where the endpoints count requests, refused ones included."""

    def add_routes(self, app: web.Application) -> None: ...

    async def start(self, supervisor: TaskSupervisor | None = None) -> None:
        """Start the backend; its long-lived loops run under `supervisor` when given."""

    async def close_streams(self) -> None:
        """End long-lived streams (sessions, SSE) so their handlers return."""

    def unanswered(self) -> int:
        """Client requests accepted whose answer is still owed on a stream rather than on the
        request's own response (a legacy HTTP+SSE `POST /messages`, answered 202 at once): the
        drain waits for them as for `ServerState.inflight`."""

    async def stop(self) -> None: ...

    def is_ready(self) -> bool: ...

    def announcer(self) -> Announcer | None:
        """How to tell every open session that a list changed; None when the sessions are the
        server's own streams (the proxy relays them and cannot add to them)."""

    def rechecker(self) -> Rechecker | None:
        """How to end the resource subscriptions the access policy no longer allows after it
        changed; None when the server holds the subscriptions on its own streams."""


@dataclass(slots=True)
class ServerState:
    """Mutable per-app state: `inflight` counts MCP requests being handled that wait for an
    answer (not long-lived streams: `draining.is_stream`); `idle` is set whenever it is zero;
    `draining` is set from SIGTERM on."""

    endpoints: Endpoints
    settings: ProxyRunnerSettings
    draining: bool = False
    inflight: int = 0
    idle: asyncio.Event = field(default_factory=asyncio.Event)

    def enter(self) -> None:
        self.inflight += 1
        self.idle.clear()

    def leave(self) -> None:
        self.inflight -= 1
        if self.inflight == 0:
            self.idle.set()


STATE = web.AppKey("moorage_proxy_state", ServerState)


def _split_host(value: str) -> tuple[str, str | None]:
    """`name:port` / `[v6]:port` / `name` → (name, port)."""
    if value.startswith("["):
        name, _, rest = value[1:].partition("]")
        return name, rest[1:] if rest.startswith(":") else None
    if value.count(":") > 1:
        # An IPv6 address takes a port only in brackets: `::1:80` is an address, not `::1` port 80.
        return value, None
    name, sep, port = value.rpartition(":")
    if not sep or not port.isdigit():
        return value, None
    return name, port


def _matches(value: str, pattern: str) -> bool:
    """`pattern` is `name`, `name:port` or `name:*` (host) / the same with a scheme (origin)."""
    if pattern.endswith(":*"):
        base = pattern[:-2]
        return value == base or (value.startswith(base + ":") and value[len(base) + 1 :].isdigit())
    return value == pattern


def _is_listed(host: str, patterns: tuple[str, ...]) -> bool:
    """Whether a lower-cased `host[:port]` matches one of `patterns` (a bare name: any port).
    A fully qualified name's trailing dot (`name.:8080`) is the same name."""
    name, port = _split_host(host)
    if name.endswith("."):
        name = name.rstrip(".")
        host = name if port is None else f"{name}:{port}"
    return any(_matches(host, p) or name == p for p in patterns)


def is_rebinding_proof(name: str) -> bool:
    """Whether a host name cannot be the product of DNS rebinding: an IP address, or
    `localhost` (which browsers resolve themselves). Rebinding needs a name whose DNS the
    attacker controls, so these are safe to accept; they are how kubelet probes and Prometheus
    reach a pod (its IP), clients a ClusterIP, and `kubectl port-forward` users the proxy."""
    if name == "localhost":
        return True
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def is_host_allowed(host: str | None, settings: ProxyRunnerSettings) -> bool:
    """Whether the MCP endpoints answer a request with this `Host` header.

    With `allowed_hosts`: a listed name (a bare name with any port), or a rebinding-proof one.
    Without: loopback names only when listening on loopback, anything otherwise (a local proxy
    opened to the network on purpose; in a cluster the list is never empty).
    """
    if host is None:
        return not settings.is_loopback and not settings.allowed_hosts
    host = host.lower()
    name, _ = _split_host(host)
    if settings.allowed_hosts:
        return is_rebinding_proof(name) or _is_listed(host, settings.allowed_hosts)
    if settings.is_loopback:
        return name in LOOPBACK_HOSTS
    return True


def is_origin_allowed(origin: str | None, host: str | None, settings: ProxyRunnerSettings) -> bool:
    """Whether a browser page from `origin` may use the MCP endpoints (`host` already passed).

    The page's own origin, `allowed_origins`, and loopback pages of a loopback proxy pass. With
    `allowed_hosts`, an Origin whose host is not listed is refused even when it equals the
    `Host` (a rebinding page is same-origin with itself).
    """
    if origin is None:
        return True
    try:
        parts = urlsplit(origin)
    except ValueError:  # an unbalanced `[` in the authority
        return False
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return False
    if any(_matches(origin, p) for p in settings.allowed_origins):
        return True
    if settings.is_loopback and (parts.hostname or "") in LOOPBACK_HOSTS:
        return True
    same_origin = host is not None and parts.netloc.lower() == host.lower()
    if not settings.allowed_hosts:
        return same_origin
    netloc = parts.netloc.lower()
    if _is_listed(netloc, settings.allowed_hosts):
        return True
    return same_origin and is_rebinding_proof(_split_host(netloc)[0])


@web.middleware
async def guard(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    state = request.app[STATE]
    if request.path not in MCP_PATHS:
        return await handler(request)
    settings = state.settings
    host = request.headers.get("Host")
    if not is_host_allowed(host, settings):
        return rpc_error(421, INVALID_REQUEST, "Invalid Host header")
    if not is_origin_allowed(request.headers.get("Origin"), host, settings):
        return rpc_error(403, INVALID_REQUEST, "Invalid Origin header")
    mcp_method = request.headers.get(METHOD_HEADER)
    if state.draining and opens_session(
        request.method,
        path=request.path,
        session_id=request.headers.get(SESSION_HEADER),
        mcp_method=mcp_method,
    ):
        refusal = rpc_error(503, SHUTTING_DOWN_CODE, SHUTTING_DOWN)
        refusal.force_close()
        return refusal
    counted = not is_stream(request.method, mcp_method=mcp_method)
    if counted:
        state.enter()
    try:
        response = await handler(request)
    except ConnectionResetError:
        # The client left while we wrote to it; nothing to answer, nothing to log loudly.
        log.debug("client_disconnected", path=request.path)
        return web.Response(status=499)
    finally:
        if counted:
            state.leave()
    if state.draining:
        # The client's next request opens a new connection, which the balancer sends to a
        # replica that stays.
        response.force_close()
    return response


def make_app(
    settings: ProxyRunnerSettings,
    *,
    endpoints: Endpoints,
    registry: CollectorRegistry,
    supervisor: TaskSupervisor | None = None,
) -> web.Application:
    """The proxy's application; `serve` runs it (tests use aiohttp's test server). The
    backend's loops run under `supervisor` when given."""
    # Bodies are read and bounded by the endpoints themselves (one more byte than the limit is
    # enough to refuse); aiohttp's own cap is kept just above so it never answers first.
    app = web.Application(middlewares=[guard], client_max_size=settings.max_body_bytes + 1024)
    app[STATE] = ServerState(endpoints, settings)
    settings.limits.read_timeouts.install(app)

    async def health(_: web.Request) -> web.Response:
        state = app[STATE]
        if state.draining:
            return web.Response(status=503, text="draining\n")
        if not endpoints.is_ready():
            return web.Response(status=503, text="backend not connected\n")
        return web.Response(text="ok\n")

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(
            body=generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    app.router.add_get("/health", health)
    app.router.add_get("/metrics", metrics)
    endpoints.add_routes(app)

    async def lifecycle(_: web.Application) -> AsyncIterator[None]:
        if supervisor is None:
            await endpoints.start()
        else:
            await endpoints.start(supervisor)
        yield
        await endpoints.stop()

    app.cleanup_ctx.append(lifecycle)
    return app


async def drain(
    app: web.Application,
    runner: web.AppRunner,
    *,
    timeout: float,
    handover: Handover | None = None,
) -> None:
    """Hand over: refuse new sessions (and say not ready) while the requests in flight are
    answered, on their own responses or on a stream (`Endpoints.unanswered`), at most `timeout`
    seconds; then stop accepting, end the long-lived streams, close,
    and run `handover`.

    The listener stays open while requests finish: a balancer that has not yet seen the replica
    go unready still sends it requests, and those of its sessions are answered here rather than
    refused."""
    state = app[STATE]
    state.draining = True
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    if not _settled(state):
        try:
            async with asyncio.timeout(timeout):
                await _until_settled(state)
        except TimeoutError:
            log.warning(
                "drain_timed_out",
                inflight=state.inflight,
                unanswered=state.endpoints.unanswered(),
            )
    for site in list(runner.sites):
        await site.stop()
    await state.endpoints.close_streams()
    await runner.cleanup()
    if handover is not None:
        try:
            async with asyncio.timeout(max(deadline - loop.time(), HANDOVER_TIMEOUT)):
                await handover()
        except TimeoutError:
            log.warning("handover_timed_out")


def _settled(state: ServerState) -> bool:
    """Whether every request accepted here has had its answer written or queued."""
    return state.inflight == 0 and state.endpoints.unanswered() == 0


async def _until_settled(state: ServerState) -> None:
    while not _settled(state):
        if state.inflight:
            await state.idle.wait()
        else:
            await asyncio.sleep(DRAIN_POLL)


async def serve(
    app: web.Application,
    settings: ProxyRunnerSettings,
    *,
    stop: asyncio.Event | None = None,
    on_listening: Callable[[int], None] | None = None,
    handle_signals: bool = True,
    startup: Callable[[], Awaitable[None]] | None = None,
    handover: Handover | None = None,
) -> None:
    """Serve until SIGTERM/SIGINT (when `handle_signals`) or `stop` is set, then drain and run
    `handover`.

    `startup` runs once the app is started (its backend too) and before `on_listening` hears the
    port; what it raises ends the serving, after the drain."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    sockets = listen_sockets(Listener(settings.host, settings.port, settings.listen_setting))
    runner = web.AppRunner(
        app,
        access_log=None,
        handle_signals=False,
        handler_cancellation=True,
        shutdown_timeout=CLOSE_GRACE,
        **settings.limits.read_timeouts.runner_options(),
    )
    try:
        await runner.setup()
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    signals = (signal.SIGTERM, signal.SIGINT) if handle_signals else ()
    for sig in signals:
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    try:
        for sock in sockets:
            await web.SockSite(runner, sock).start()
        port = bound_port(sockets, default=settings.port)
        log.info("proxy_listening", host=settings.host, port=port)
        if startup is not None:
            await startup()
        if on_listening is not None:
            on_listening(port)
        await stop.wait()
    finally:
        log.info("proxy_draining", timeout_s=settings.drain_timeout)
        await drain(app, runner, timeout=settings.drain_timeout, handover=handover)
        for sock in sockets:
            sock.close()  # those no site took over
        for sig in signals:
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(sig)
        log.info("proxy_stopped")
