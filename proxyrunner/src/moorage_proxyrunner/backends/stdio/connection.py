"""The stdio server's process, supervised: started, read, written, restarted with back-off.

`BackendConnection` calls its `ChannelFactory` (a subprocess locally, `pods/attach` in a
cluster), reads the server's lines and hands each to its `ConnectionHandler` (the bridge),
which initialises the server and restores what the clients hold. When the channel ends the
handler answers whatever was in flight, and the factory is called again after a
`moorage_core.backoff` delay from `backoff_initial` doubling to `backoff_max` (starting over
after a connection that lasted longer than the longest wait).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Coroutine
from typing import Any, Protocol

import structlog

from moorage_core.backoff import Backoff
from moorage_core.supervising import TaskSupervisor
from moorage_proxyrunner.backends.stdio.channels import ChannelClosed, ChannelFactory, StdioChannel
from moorage_proxyrunner.front.metrics import ProxyMetrics
from moorage_proxyrunner.protocol.jsonrpc import Json, encode

log = structlog.get_logger(__name__)


class BridgeUnavailable(Exception):
    """The backend is not connected and did not come back in time."""


class ConnectionHandler(Protocol):
    """What the connection asks of the bridge at each stage of a server process's life."""

    async def initialise(self) -> None:
        """Handshake with a fresh process (it does not count as connected before this ends)."""

    async def on_connected(self) -> None:
        """The process is connected: give it what the clients hold."""

    def on_line(self, line: bytes) -> None:
        """One non-empty line the server wrote."""

    def on_disconnected(self, reason: str) -> None:
        """The process is gone: answer what was in flight, forget what it asked."""


class BackendConnection:
    """Supervises the server process and writes to it."""

    def __init__(
        self,
        factory: ChannelFactory,
        handler: ConnectionHandler,
        *,
        metrics: ProxyMetrics | None,
        connect_wait: float,
        backoff_initial: float,
        backoff_max: float,
    ) -> None:
        self._factory = factory
        self._handler = handler
        self._metrics = metrics
        self._connect_wait = connect_wait
        self._backoff = Backoff(base=backoff_initial, cap=backoff_max)
        self._channel: StdioChannel | None = None
        """The current process's channel; None between processes and after `stop`."""
        self._connected = asyncio.Event()
        """Set while `_channel` is initialised; cleared before anything in flight is failed."""
        self._loop: asyncio.Task[None] | None = None
        """The supervision loop, once started; None again after `stop`."""
        self._stopping = False
        self._tasks: set[asyncio.Task[Any]] = set()
        """Background sends and internal requests, so that `stop` can cancel them."""
        self.restarts = 0
        """Processes started after the first."""
        self.last_error: str | None = None
        """Why the last process could not start or ended."""

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    async def start(self, supervisor: TaskSupervisor | None = None) -> None:
        """Connect (and reconnect) in the background; under `supervisor` when given, so that
        a connection loop that dies ends the process rather than leaving it unready for ever."""
        if self._loop is None:
            loop = self._supervise()
            self._loop = (
                supervisor.spawn("stdio-bridge", loop)
                if supervisor is not None
                else asyncio.create_task(loop, name="stdio-bridge")
            )

    async def wait_connected(self, timeout: float | None = None) -> bool:
        if self._connected.is_set():
            return True
        try:
            async with asyncio.timeout(timeout):
                await self._connected.wait()
        except TimeoutError:
            return False
        return True

    async def ensure_connected(self) -> None:
        """Return once connected; `BridgeUnavailable` when that takes longer than
        `connect_wait`."""
        if not self._connected.is_set() and not await self.wait_connected(self._connect_wait):
            raise BridgeUnavailable(self.last_error or "the MCP server is not connected")

    async def stop(self) -> None:
        self._stopping = True
        loop, self._loop = self._loop, None
        if loop is not None:
            loop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await loop
        await self._disconnect("the proxy is shutting down")
        for task in list(self._tasks):
            task.cancel()

    async def _supervise(self) -> None:
        failures = 0
        first = True
        while not self._stopping:
            started = time.monotonic()
            failures += 1
            try:
                channel = await self._factory()
            except Exception as exc:
                # The supervisor is the bridge's retry loop: whatever a factory raises (a missing
                # command, an API error while attaching) is logged and retried with back-off.
                self.last_error = f"cannot start the MCP server: {exc}"
                log.error(
                    "backend_start_failed",
                    error=str(exc),
                    retry_in_s=self._backoff.delay(failures),
                )
            else:
                if not first:
                    self.restarts += 1
                    if self._metrics is not None:
                        self._metrics.backend_restarts.inc()
                first = False
                reason = await self._run_channel(channel)
                self.last_error = reason
                # A backend that ran longer than the longest wait was healthy: start over.
                if time.monotonic() - started > self._backoff.cap:
                    failures = 1
                log.warning(
                    "backend_disconnected", reason=reason, retry_in_s=self._backoff.delay(failures)
                )
            if self._stopping:
                return
            await asyncio.sleep(self._backoff.delay(failures))

    async def _run_channel(self, channel: StdioChannel) -> str:
        self._channel = channel
        reader = asyncio.create_task(self._read(channel), name="stdio-bridge-reader")
        try:
            await self._handler.initialise()
            self._connected.set()
            if self._metrics is not None:
                self._metrics.backend_up.set(1)
            await self._handler.on_connected()
            reason = await reader
        except (ChannelClosed, TimeoutError, BridgeUnavailable) as exc:
            reason = f"initialisation failed: {exc}" if not reader.done() else await reader
        finally:
            if not reader.done():
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reader
        await self._disconnect(reason)
        return reason

    async def _read(self, channel: StdioChannel) -> str:
        while True:
            try:
                line = await channel.receive()
            except ChannelClosed as exc:
                return exc.reason
            if line.strip():
                self._handler.on_line(line)

    async def _disconnect(self, reason: str) -> None:
        self._connected.clear()
        if self._metrics is not None:
            self._metrics.backend_up.set(0)
        channel, self._channel = self._channel, None
        if channel is not None:
            await channel.close()
        self._handler.on_disconnected(reason)

    # ---- writing ----

    async def send(self, message: Json) -> None:
        channel = self._channel
        if channel is None:
            raise ChannelClosed("not connected")
        await channel.send(encode(message))

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.debug("bridge_background_send_failed", error=str(task.exception()))

    def send_later(self, message: Json) -> None:
        self.spawn(self.send(message))
