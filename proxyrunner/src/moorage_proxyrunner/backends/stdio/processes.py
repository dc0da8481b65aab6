"""A `StdioChannel` over a local subprocess's pipes (`run --local -- <command...>`).

One process per channel: `subprocess_factory(argv)` returns the `ChannelFactory` the stdio
bridge calls at start and again after the process ends. stdout is read line by line with the
line limit raised to `MAX_LINE_BYTES` (asyncio's default 64 KiB is far too small for MCP);
stderr is inherited, so the server's own logs land next to ours.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Mapping, Sequence

import structlog

from moorage_proxyrunner.backends.stdio.channels import (
    MAX_LINE_BYTES,
    ChannelClosed,
    ChannelFactory,
    StdioChannel,
)

log = structlog.get_logger(__name__)

_TERMINATE_GRACE = 5.0
"""Seconds a closed channel's process gets after SIGTERM before SIGKILL."""


class SubprocessChannel:
    """A running process; `send`/`receive` speak newline-delimited JSON-RPC over its pipes."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        assert process.stdin is not None
        assert process.stdout is not None
        self.process = process
        self._stdin = process.stdin
        self._stdout = process.stdout
        self._closed = False

    @property
    def pid(self) -> int:
        return self.process.pid

    async def send(self, line: bytes) -> None:
        if self._closed or self._stdin.is_closing():
            raise ChannelClosed("stdin closed")
        try:
            self._stdin.write(line + b"\n")
            await self._stdin.drain()
        except (BrokenPipeError, ConnectionResetError) as exc:
            raise ChannelClosed(f"stdin: {exc}") from exc

    async def receive(self) -> bytes:
        try:
            line = await self._stdout.readuntil(b"\n")
        except asyncio.IncompleteReadError as exc:
            raise ChannelClosed(await self._exit_reason()) from exc
        except asyncio.LimitOverrunError as exc:
            # The framing is lost once a line overruns: end the channel so the bridge fails
            # what is in flight and restarts the server, rather than guessing where it resumes.
            raise ChannelClosed(f"stdout line longer than {MAX_LINE_BYTES} bytes") from exc
        return line[:-1]

    async def _exit_reason(self) -> str:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(1.0):
                await self.process.wait()
        code = self.process.returncode
        return "stdout closed" if code is None else f"process exited with code {code}"

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if not self._stdin.is_closing():
            self._stdin.close()
        try:
            await self._stop_process()
        finally:
            # A stdout we stopped reading (a line over the limit) never reports EOF by itself, so
            # its transport would outlive the process: close it explicitly.
            transport = getattr(self.process, "_transport", None)
            if transport is not None:
                transport.close()

    async def _stop_process(self) -> None:
        if self.process.returncode is not None:
            return
        # Closing stdin is how a stdio MCP server is asked to stop; then escalate.
        try:
            async with asyncio.timeout(_TERMINATE_GRACE):
                await self.process.wait()
            return
        except TimeoutError:
            pass
        with contextlib.suppress(ProcessLookupError):
            self.process.terminate()
        try:
            async with asyncio.timeout(_TERMINATE_GRACE):
                await self.process.wait()
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()
            await self.process.wait()


def subprocess_factory(
    argv: Sequence[str], *, env: Mapping[str, str] | None = None, cwd: str | None = None
) -> ChannelFactory:
    """A factory that starts `argv` afresh each time the bridge asks for a channel."""
    if not argv:
        raise ValueError("a stdio backend needs a command")
    command = list(argv)
    environment = {**os.environ, **env} if env is not None else None

    async def open_channel() -> StdioChannel:
        process = await asyncio.create_subprocess_exec(
            *command,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=None,
            env=environment,
            cwd=cwd,
            limit=MAX_LINE_BYTES,
        )
        log.info("backend_process_started", pid=process.pid, command=command[0])
        return SubprocessChannel(process)

    return open_channel
