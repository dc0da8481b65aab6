"""stdio of an MCP server pod over the Kubernetes websocket channel protocol.

In a cluster the stdio bridge reaches the MCP server through `pods/attach` on container `mcp`
(`stdin`, `stdout`, `stderr`, no TTY). The apiserver speaks the channel protocol on a websocket:
every binary message starts with a channel byte — 0 stdin, 1 stdout, 2 stderr, 3 error (a
`metav1.Status` when the stream ends), 4 resize — and `v5.channel.k8s.io` adds 255 to half-close
a stream. `pods/exec` speaks the same protocol; `open_exec_channel` shares the code (the local
control plane's fake kubelet runs exec'd commands for real, so the protocol is tested through
exec end to end).

`AttachChannelFactory` is the `ChannelFactory` the bridge gets: it picks the ready pod with the
lowest ordinal, attaches, and when asked again (the stream dropped) waits with back-off if the last
channel died young. A channel ends itself when its pod is deleted, replaced or stops being ready,
so the bridge follows pod replacement by re-attaching.

The frame codec, query builders, line splitting and back-off decisions are pure functions at the
top of this module; the websocket I/O is below them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal

import aiohttp
import structlog

from moorage_core.backoff import Backoff
from moorage_core.errors import KubeError
from moorage_core.kube import PODS, KubeClient
from moorage_core.watching import WatchedSet
from moorage_proxyrunner.backends.stdio.channels import MAX_LINE_BYTES, ChannelClosed, StdioChannel
from moorage_proxyrunner.workload.builders import MCP_CONTAINER, ready_pods

log = structlog.get_logger(__name__)

STDIN: Final = 0
STDOUT: Final = 1
STDERR: Final = 2
ERROR: Final = 3
RESIZE: Final = 4
CLOSE: Final = 255
"""v5 only: `[255, n]` half-closes stream `n`."""

V5_PROTOCOL: Final = "v5.channel.k8s.io"
V4_PROTOCOL: Final = "v4.channel.k8s.io"
PROTOCOLS: Final = (V5_PROTOCOL, V4_PROTOCOL)
"""Offered in order of preference; v4 lacks only the half-close signal."""

MAX_STDERR_LINE: Final = 64 * 1024
"""stderr is only logged: longer lines are logged in pieces of this size."""


class ProtocolError(Exception):
    """The peer broke the channel protocol (empty frame, unknown channel, bad status)."""


class LineTooLong(Exception):
    """A line exceeded the buffer's limit and was dropped; `lines` are the other complete lines
    of the same `feed`, in order."""

    def __init__(self, message: str, *, lines: list[bytes]) -> None:
        super().__init__(message)
        self.lines = lines


# -- pure: frames ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Frame:
    channel: int
    data: bytes


def encode_frame(channel: int, data: bytes) -> bytes:
    if not 0 <= channel <= 255:
        raise ValueError(f"channel {channel} is not a byte")
    return bytes((channel,)) + data


def encode_close(channel: int) -> bytes:
    """The v5 half-close signal for `channel` (e.g. end of stdin)."""
    return bytes((CLOSE, channel))


def decode_frame(message: bytes) -> Frame:
    if not message:
        raise ProtocolError("empty websocket message (no channel byte)")
    return Frame(channel=message[0], data=bytes(message[1:]))


@dataclass(frozen=True, slots=True)
class StreamStatus:
    """What the error channel said when the stream ended."""

    success: bool
    message: str
    exit_code: int | None = None


def parse_status(data: bytes) -> StreamStatus:
    """The `metav1.Status` of the error channel (v4+), or its raw text (older peers)."""
    try:
        status = json.loads(data)
    except ValueError:
        text = data.decode(errors="replace").strip()
        return StreamStatus(success=not text, message=text)
    if not isinstance(status, dict):
        raise ProtocolError(f"error channel carried {type(status).__name__}, not a Status")
    if status.get("status") == "Success":
        return StreamStatus(success=True, message="", exit_code=0)
    exit_code: int | None = None
    if status.get("reason") == "NonZeroExitCode":
        for cause in (status.get("details") or {}).get("causes") or []:
            if cause.get("reason") == "ExitCode":
                with contextlib.suppress(TypeError, ValueError):
                    exit_code = int(cause.get("message"))
    return StreamStatus(
        success=False, message=str(status.get("message") or "stream failed"), exit_code=exit_code
    )


# -- pure: requests --------------------------------------------------------------------------


def build_attach_query(
    *, container: str, stdin: bool = True, stdout: bool = True, stderr: bool = True
) -> list[tuple[str, str]]:
    """Query of `pods/attach` (never a TTY: MCP speaks newline-delimited JSON)."""
    return [
        ("container", container),
        ("stdin", _flag(stdin)),
        ("stdout", _flag(stdout)),
        ("stderr", _flag(stderr)),
        ("tty", "false"),
    ]


def build_exec_query(
    *,
    container: str,
    command: Sequence[str],
    stdin: bool = True,
    stdout: bool = True,
    stderr: bool = True,
) -> list[tuple[str, str]]:
    """Query of `pods/exec`: the attach query plus one `command` pair per argument."""
    if not command:
        raise ValueError("exec needs a command")
    return [
        *build_attach_query(container=container, stdin=stdin, stdout=stdout, stderr=stderr),
        *(("command", arg) for arg in command),
    ]


def stream_path(*, namespace: str, pod: str, subresource: Literal["attach", "exec"]) -> str:
    return PODS.path(namespace=namespace, name=pod, subresource=subresource)


def _flag(value: bool) -> str:
    return "true" if value else "false"


# -- pure: lines -----------------------------------------------------------------------------


class LineBuffer:
    """Splits a byte stream into newline-terminated lines of at most `limit` bytes.

    With `split_long`, a longer line comes out in `limit`-sized pieces; otherwise `feed` raises
    `LineTooLong` and forgets the partial line (the rest of it, up to its newline, is dropped).
    """

    def __init__(self, *, limit: int = MAX_LINE_BYTES, split_long: bool = False) -> None:
        self.limit = limit
        self.split_long = split_long
        self._buf = bytearray()
        self._skipping = False

    def feed(self, data: bytes) -> list[bytes]:
        lines: list[bytes] = []
        dropped = False
        start = 0
        while True:
            idx = data.find(b"\n", start)
            end = len(data) if idx < 0 else idx
            if not self._skipping:
                self._buf.extend(data[start:end])
                dropped = self._check_length(lines) or dropped
            if idx < 0:
                break
            if self._skipping:
                self._skipping = False
            else:
                lines.append(_strip_cr(bytes(self._buf)))
            self._buf.clear()
            start = idx + 1
        if dropped:
            raise LineTooLong(f"line longer than {self.limit} bytes", lines=lines)
        return lines

    def _check_length(self, lines: list[bytes]) -> bool:
        """Enforce the limit on the pending line; True when it was dropped."""
        while len(self._buf) > self.limit:
            if not self.split_long:
                self._buf.clear()
                self._skipping = True
                return True
            lines.append(bytes(self._buf[: self.limit]))
            del self._buf[: self.limit]
        return False

    def flush(self) -> bytes | None:
        """The unterminated rest at the end of the stream, if any."""
        if not self._buf:
            return None
        rest = _strip_cr(bytes(self._buf))
        self._buf.clear()
        return rest


def _strip_cr(line: bytes) -> bytes:
    return line[:-1] if line.endswith(b"\r") else line


# -- pure: choosing and re-attaching ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PodRef:
    """The pod a channel is attached to; a new pod under the same name has another `uid`."""

    name: str
    uid: str


def choose_pod(pods: Sequence[Mapping[str, Any]]) -> PodRef | None:
    """The ready pod with the lowest ordinal (`<name>-0` when it is ready)."""
    ready = ready_pods(pods)
    if not ready:
        return None
    meta = ready[0].get("metadata") or {}
    return PodRef(name=str(meta.get("name")), uid=str(meta.get("uid") or ""))


PodChooser = Callable[[Sequence[Mapping[str, Any]]], PodRef | None]
"""Picks the pod to attach to among the followed pods (None: none yet)."""


def choose_named_pod(name: str) -> PodChooser:
    """A chooser of pod `name` only, once it is ready (a proxy holding that ordinal's Lease)."""

    def choose(pods: Sequence[Mapping[str, Any]]) -> PodRef | None:
        for pod in ready_pods(pods):
            meta = pod.get("metadata") or {}
            if meta.get("name") == name:
                return PodRef(name=name, uid=str(meta.get("uid") or ""))
        return None

    return choose


def is_still_attachable(pod: PodRef, pods: Sequence[Mapping[str, Any]]) -> bool:
    """Whether the pod a channel uses still exists as the same object and is ready."""
    for candidate in ready_pods(pods):
        meta = candidate.get("metadata") or {}
        if meta.get("name") == pod.name:
            return str(meta.get("uid") or "") == pod.uid
    return False


@dataclass(frozen=True, slots=True)
class ReattachPolicy:
    """When to wait before attaching again.

    A channel that lived at least `stable_after` seconds counts as a success and resets the
    back-off; one that died younger counts as a failure, so a pod whose stream fails at once is
    not hammered.
    """

    backoff: Backoff = field(default_factory=lambda: Backoff(base=0.5, cap=30.0))
    stable_after: float = 10.0

    def next_failures(self, failures: int, *, lived: float | None) -> int:
        """Consecutive failures after a channel that lived `lived` seconds (None: none yet)."""
        if lived is None or lived >= self.stable_after:
            return 0
        return failures + 1

    def delay(self, failures: int) -> float:
        return self.backoff.delay(failures)


# -- I/O: the channel ------------------------------------------------------------------------

_END: Final = object()


class StreamChannel(StdioChannel):
    """A `StdioChannel` over one channel-protocol websocket (attach or exec).

    A reader task owns the socket's receive side: stdout becomes lines for `receive()` (bounded
    queue, so a slow bridge slows the socket instead of growing memory), stderr lines are logged,
    the error channel's Status becomes the close reason.
    """

    def __init__(
        self,
        ws: aiohttp.ClientWebSocketResponse,
        *,
        label: str,
        max_line: int = MAX_LINE_BYTES,
        queue_size: int = 256,
    ) -> None:
        self._ws = ws
        self.label = label
        self.protocol = ws.protocol or V4_PROTOCOL
        self.status: StreamStatus | None = None
        self._stdout = LineBuffer(limit=max_line)
        self._stderr = LineBuffer(limit=MAX_STDERR_LINE, split_long=True)
        self._lines: asyncio.Queue[bytes | object] = asyncio.Queue(queue_size)
        self._reason = ""
        self._closed = False
        self.ended = asyncio.Event()
        """Set when the stream is over (for whatever reason); `reason` says why."""
        self._send_lock = asyncio.Lock()
        self._reader = asyncio.create_task(self._read(), name=f"stdio-reader {label}")

    @property
    def reason(self) -> str:
        return self._reason

    async def send(self, line: bytes) -> None:
        if self.ended.is_set() or self._ws.closed:
            raise ChannelClosed(self._reason or "websocket closed")
        try:
            async with self._send_lock:
                await self._ws.send_bytes(encode_frame(STDIN, line + b"\n"))
        except (aiohttp.ClientError, ConnectionError, RuntimeError) as exc:
            self._end(f"send failed: {type(exc).__name__}: {exc}")
            raise ChannelClosed(self._reason) from exc

    async def receive(self) -> bytes:
        item = await self._lines.get()
        if item is _END:
            # Leave the marker for later callers: the channel stays ended.
            self._lines.put_nowait(_END)
            raise ChannelClosed(self._reason)
        assert isinstance(item, bytes)
        return item

    async def close_stdin(self) -> None:
        """Half-close stdin (v5 only; v4 has no such signal and this does nothing)."""
        if self.protocol == V5_PROTOCOL and not self._ws.closed:
            async with self._send_lock:
                await self._ws.send_bytes(encode_close(STDIN))

    async def close(self) -> None:
        self.abort("closed")
        # Wait without letting the reader's cancellation look like ours.
        await asyncio.wait({self._reader})

    def abort(self, reason: str) -> None:
        """End the channel from outside (e.g. its pod was replaced); `receive()` then raises.

        The reader task closes the websocket on its way out.
        """
        self._end(reason)
        self._reader.cancel()

    def _end(self, reason: str) -> None:
        if self.ended.is_set():
            return
        self._reason = reason
        self.ended.set()
        # The end marker must get in even when the queue is full: drop a line to make room.
        while True:
            try:
                self._lines.put_nowait(_END)
                return
            except asyncio.QueueFull:
                self._lines.get_nowait()

    async def _read(self) -> None:
        reason = "websocket closed"
        try:
            async for message in self._ws:
                if message.type == aiohttp.WSMsgType.BINARY:
                    done = await self._handle(decode_frame(message.data))
                    if done:
                        reason = done
                        break
                elif message.type == aiohttp.WSMsgType.TEXT:
                    raise ProtocolError("text frame on a binary channel protocol")
                elif message.type == aiohttp.WSMsgType.ERROR:
                    reason = f"websocket error: {self._ws.exception()}"
                    break
        except (ProtocolError, LineTooLong) as exc:
            reason = f"protocol error: {exc}"
        except (aiohttp.ClientError, ConnectionError) as exc:
            reason = f"websocket failed: {type(exc).__name__}: {exc}"
        finally:
            self._flush_stderr()
            self._end(reason)
            log.info("stdio_stream_ended", channel=self.label, reason=self._reason)
            await self._ws.close()

    async def _handle(self, frame: Frame) -> str:
        """Route one frame; a non-empty result ends the stream with that reason."""
        if frame.channel == STDOUT:
            try:
                lines = self._stdout.feed(frame.data)
            except LineTooLong as exc:
                for line in exc.lines:
                    await self._lines.put(line)
                raise
            for line in lines:
                await self._lines.put(line)
        elif frame.channel == STDERR:
            for line in self._stderr.feed(frame.data):
                self._log_stderr(line)
        elif frame.channel == ERROR:
            if frame.data:
                self.status = parse_status(frame.data)
                if self.status.success:
                    return "process exited"
                code = f" (exit code {self.status.exit_code})" if self.status.exit_code else ""
                return f"stream failed: {self.status.message}{code}"
        elif frame.channel == CLOSE:
            pass  # the peer half-closed a stream; stdout ends with the error channel
        elif frame.channel not in (STDIN, RESIZE):
            raise ProtocolError(f"frame on unknown channel {frame.channel}")
        return ""

    def _log_stderr(self, line: bytes) -> None:
        log.info("mcp_stderr", channel=self.label, line=line.decode(errors="replace"))

    def _flush_stderr(self) -> None:
        rest = self._stderr.flush()
        if rest:
            self._log_stderr(rest)


async def open_attach_channel(
    kube: KubeClient, *, namespace: str, pod: str, container: str = MCP_CONTAINER
) -> StreamChannel:
    """Attach to `container`'s stdin/stdout/stderr (it must run with `stdin: true`)."""
    ws = await kube.ws_connect(
        stream_path(namespace=namespace, pod=pod, subresource="attach"),
        query=build_attach_query(container=container),
        protocols=PROTOCOLS,
    )
    return StreamChannel(ws, label=f"attach {namespace}/{pod}/{container}")


async def open_exec_channel(
    kube: KubeClient,
    *,
    namespace: str,
    pod: str,
    command: Sequence[str],
    container: str = MCP_CONTAINER,
) -> StreamChannel:
    """Run `command` in `container` with its stdio on the channel."""
    ws = await kube.ws_connect(
        stream_path(namespace=namespace, pod=pod, subresource="exec"),
        query=build_exec_query(container=container, command=command),
        protocols=PROTOCOLS,
    )
    return StreamChannel(ws, label=f"exec {namespace}/{pod}/{container}")


# -- I/O: the factory ------------------------------------------------------------------------


class AttachChannelFactory:
    """The stdio bridge's `ChannelFactory` in a cluster.

    Each call returns a channel attached to the pod `choose` picks (by default the ready pod with
    the lowest ordinal), waiting as long as it takes
    (cancel the call to give up); `pods` must be running (`WatchedSet.run`) for the pods of the
    StatefulSet. Call `aclose()` to stop following the pods of handed-out channels.
    """

    def __init__(
        self,
        kube: KubeClient,
        *,
        pods: WatchedSet,
        container: str = MCP_CONTAINER,
        policy: ReattachPolicy = ReattachPolicy(),
        clock: Callable[[], float] = time.monotonic,
        open_channel: Callable[[str], Awaitable[StreamChannel]] | None = None,
        choose: PodChooser = choose_pod,
    ) -> None:
        self._kube = kube
        self._pods = pods
        self._choose = choose
        self._container = container
        self._policy = policy
        self._clock = clock
        self._open = open_channel or self._attach
        self._failures = 0
        self._last_started: float | None = None
        self._followers: set[asyncio.Task[None]] = set()

    async def __call__(self) -> StdioChannel:
        lived = None if self._last_started is None else self._clock() - self._last_started
        self._failures = self._policy.next_failures(self._failures, lived=lived)
        while True:
            delay = self._policy.delay(self._failures)
            if delay:
                log.info("stdio_reattach_wait", delay_s=delay, failures=self._failures)
                await asyncio.sleep(delay)
            pod = await self._pods.wait_until(self._choose)
            try:
                channel = await self._open(pod.name)
            except KubeError as exc:
                self._failures += 1
                log.warning("stdio_attach_failed", pod=pod.name, error=str(exc))
                continue
            self._last_started = self._clock()
            log.info("stdio_attached", pod=pod.name, protocol=channel.protocol)
            task = asyncio.create_task(self._follow(pod, channel), name=f"follow {pod.name}")
            self._followers.add(task)
            task.add_done_callback(self._followers.discard)
            return channel

    async def _attach(self, pod: str) -> StreamChannel:
        return await open_attach_channel(
            self._kube, namespace=self._pods.namespace, pod=pod, container=self._container
        )

    async def _follow(self, pod: PodRef, channel: StreamChannel) -> None:
        """End `channel` when its pod goes away, is replaced or is no longer ready."""
        gone = asyncio.create_task(
            self._pods.wait_until(lambda pods: not is_still_attachable(pod, pods))
        )
        ended = asyncio.create_task(channel.ended.wait())
        try:
            await asyncio.wait({gone, ended}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            gone.cancel()
            ended.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await gone
            with contextlib.suppress(asyncio.CancelledError):
                await ended
        if not channel.ended.is_set():
            log.info("stdio_pod_replaced", pod=pod.name)
            channel.abort(f"pod {pod.name} was replaced or is no longer ready")

    async def aclose(self) -> None:
        for task in list(self._followers):
            task.cancel()
        for task in list(self._followers):
            with contextlib.suppress(asyncio.CancelledError):
                await task
