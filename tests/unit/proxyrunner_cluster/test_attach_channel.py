"""The websocket channel protocol: frames, queries, line splitting, re-attach decisions, and the
channel itself against a local websocket peer that speaks the protocol."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from hypothesis import given
from hypothesis import strategies as st

from moorage_core.backoff import Backoff
from moorage_proxyrunner.backends.stdio.attach import (
    CLOSE,
    ERROR,
    STDERR,
    STDIN,
    STDOUT,
    V4_PROTOCOL,
    V5_PROTOCOL,
    Frame,
    LineBuffer,
    LineTooLong,
    PodRef,
    ProtocolError,
    ReattachPolicy,
    StreamChannel,
    StreamStatus,
    build_attach_query,
    build_exec_query,
    choose_pod,
    decode_frame,
    encode_close,
    encode_frame,
    is_still_attachable,
    parse_status,
    stream_path,
)
from moorage_proxyrunner.backends.stdio.channels import ChannelClosed

# -- frames and queries ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("channel", "data", "wire"),
    [
        pytest.param(STDIN, b'{"a":1}\n', b'\x00{"a":1}\n', id="stdin"),
        pytest.param(STDOUT, b"", b"\x01", id="empty-stdout"),
        pytest.param(ERROR, b"{}", b"\x03{}", id="error"),
    ],
)
def test_frames_start_with_the_channel_byte(channel: int, data: bytes, wire: bytes) -> None:
    assert encode_frame(channel, data) == wire
    assert decode_frame(wire) == Frame(channel=channel, data=data)


def test_close_signal_names_the_stream() -> None:
    assert encode_close(STDIN) == b"\xff\x00"
    assert decode_frame(encode_close(STDIN)) == Frame(channel=CLOSE, data=b"\x00")


@pytest.mark.parametrize("channel", [-1, 256])
def test_channel_must_be_a_byte(channel: int) -> None:
    with pytest.raises(ValueError, match="is not a byte"):
        encode_frame(channel, b"x")


def test_an_empty_message_is_a_protocol_error() -> None:
    with pytest.raises(ProtocolError, match="no channel byte"):
        decode_frame(b"")


@given(st.integers(0, 255), st.binary(max_size=64))
def test_frames_round_trip(channel: int, data: bytes) -> None:
    assert decode_frame(encode_frame(channel, data)) == Frame(channel, data)


def test_attach_query_never_asks_for_a_tty() -> None:
    assert build_attach_query(container="mcp") == [
        ("container", "mcp"),
        ("stdin", "true"),
        ("stdout", "true"),
        ("stderr", "true"),
        ("tty", "false"),
    ]
    assert ("stderr", "false") in build_attach_query(container="mcp", stderr=False)


def test_exec_query_repeats_command_for_each_argument() -> None:
    query = build_exec_query(container="mcp", command=["sh", "-c", "cat"])
    assert query[-3:] == [("command", "sh"), ("command", "-c"), ("command", "cat")]
    assert ("tty", "false") in query


def test_exec_needs_a_command() -> None:
    with pytest.raises(ValueError, match="needs a command"):
        build_exec_query(container="mcp", command=[])


def test_stream_paths() -> None:
    assert stream_path(namespace="ns", pod="time-0", subresource="attach") == (
        "/api/v1/namespaces/ns/pods/time-0/attach"
    )
    assert stream_path(namespace="ns", pod="time-0", subresource="exec") == (
        "/api/v1/namespaces/ns/pods/time-0/exec"
    )


@pytest.mark.parametrize(
    ("data", "status"),
    [
        pytest.param(
            b'{"metadata":{},"status":"Success"}',
            StreamStatus(success=True, message="", exit_code=0),
            id="success",
        ),
        pytest.param(
            json.dumps(
                {
                    "status": "Failure",
                    "message": "command terminated with non-zero exit code: exit status 3",
                    "reason": "NonZeroExitCode",
                    "details": {"causes": [{"reason": "ExitCode", "message": "3"}]},
                }
            ).encode(),
            StreamStatus(
                success=False,
                message="command terminated with non-zero exit code: exit status 3",
                exit_code=3,
            ),
            id="exit-code",
        ),
        pytest.param(
            b'{"status":"Failure","message":"container not found"}',
            StreamStatus(success=False, message="container not found"),
            id="failure",
        ),
        pytest.param(
            b'{"status":"Failure","reason":"NonZeroExitCode","details":{"causes":[{"reason":"ExitCode","message":"x"}]}}',
            StreamStatus(success=False, message="stream failed"),
            id="bad-exit-code",
        ),
        pytest.param(b"error: boom", StreamStatus(success=False, message="error: boom"), id="text"),
        pytest.param(b"", StreamStatus(success=True, message=""), id="empty"),
    ],
)
def test_parses_the_error_channel(data: bytes, status: StreamStatus) -> None:
    assert parse_status(data) == status


def test_a_status_that_is_not_an_object_is_a_protocol_error() -> None:
    with pytest.raises(ProtocolError, match="carried list"):
        parse_status(b"[1]")


# -- lines ----------------------------------------------------------------------------------


def test_lines_are_split_across_frames() -> None:
    buf = LineBuffer(limit=100)
    assert buf.feed(b'{"a"') == []
    assert buf.feed(b':1}\n{"b":2}\r\n{"c"') == [b'{"a":1}', b'{"b":2}']
    assert buf.feed(b":3}\n") == [b'{"c":3}']
    assert buf.flush() is None


def test_unterminated_rest_is_flushed() -> None:
    buf = LineBuffer(limit=100)
    buf.feed(b"tail")
    assert buf.flush() == b"tail"
    assert buf.flush() is None


def test_a_line_over_the_limit_is_an_error_and_skipped_to_its_end() -> None:
    buf = LineBuffer(limit=8)
    with pytest.raises(LineTooLong, match="longer than 8 bytes"):
        buf.feed(b"0123456789")
    assert buf.feed(b"more-of-the-long-line") == []
    assert buf.feed(b"end\nok\n") == [b"ok"]


def test_a_complete_line_over_the_limit_is_an_error_keeping_the_other_lines() -> None:
    buf = LineBuffer(limit=8)
    with pytest.raises(LineTooLong) as info:
        buf.feed(b"short\n0123456789\nnext\n")
    assert info.value.lines == [b"short", b"next"]
    assert buf.feed(b"after\n") == [b"after"]


def test_a_line_at_the_limit_is_fine() -> None:
    assert LineBuffer(limit=4).feed(b"1234\n") == [b"1234"]


def test_long_lines_can_be_split_instead() -> None:
    buf = LineBuffer(limit=4, split_long=True)
    assert buf.feed(b"0123456789\n") == [b"0123", b"4567", b"89"]


@given(
    st.lists(
        st.binary(max_size=20).filter(lambda b: b"\n" not in b and not b.endswith(b"\r")),
        max_size=8,
    ),
    st.data(),
)
def test_any_chunking_gives_the_same_lines(lines: list[bytes], data: st.DataObject) -> None:
    stream = b"".join(line + b"\n" for line in lines)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=6)))
    buf = LineBuffer(limit=64)
    got: list[bytes] = []
    start = 0
    for cut in [*cuts, len(stream)]:
        got.extend(buf.feed(stream[start:cut]))
        start = cut
    assert got == lines


# -- choosing pods and re-attaching ---------------------------------------------------------


def _pod(name: str, uid: str, *, ready: bool = True) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "uid": uid},
        "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": str(ready)}]},
    }


def test_chooses_the_ready_pod_with_the_lowest_ordinal() -> None:
    pods = [_pod("time-1", "b"), _pod("time-0", "a", ready=False), _pod("time-2", "c")]
    assert choose_pod(pods) == PodRef(name="time-1", uid="b")
    assert choose_pod([_pod("time-0", "a", ready=False)]) is None
    assert choose_pod([]) is None


@pytest.mark.parametrize(
    ("pods", "attachable"),
    [
        pytest.param([_pod("time-0", "a")], True, id="same"),
        pytest.param([_pod("time-0", "b")], False, id="replaced"),
        pytest.param([_pod("time-0", "a", ready=False)], False, id="not-ready"),
        pytest.param([_pod("time-1", "c")], False, id="gone"),
    ],
)
def test_knows_when_the_attached_pod_is_gone(pods: list[dict[str, Any]], attachable: bool) -> None:
    assert is_still_attachable(PodRef("time-0", "a"), pods) is attachable


def test_a_channel_that_died_young_counts_as_a_failure_and_a_stable_one_resets() -> None:
    policy = ReattachPolicy(backoff=Backoff(base=1.0, cap=8.0), stable_after=10.0)
    assert policy.next_failures(0, lived=None) == 0
    failures = 0
    delays = []
    for _ in range(5):
        failures = policy.next_failures(failures, lived=0.2)
        delays.append(policy.delay(failures))
    assert delays == [1.0, 2.0, 4.0, 8.0, 8.0]
    assert policy.next_failures(failures, lived=10.0) == 0
    assert policy.delay(0) == 0.0


# -- the channel against a local peer -------------------------------------------------------

Peer = Callable[[web.WebSocketResponse], Awaitable[None]]


@pytest.fixture
async def connect() -> AsyncIterator[Callable[[Peer], Awaitable[StreamChannel]]]:
    """Open a `StreamChannel` to a local websocket peer running `peer`."""
    servers: list[TestServer] = []
    channels: list[StreamChannel] = []
    session = aiohttp.ClientSession()
    handlers: list[asyncio.Task[None]] = []

    async def opener(peer: Peer) -> StreamChannel:
        async def handler(request: web.Request) -> web.WebSocketResponse:
            ws = web.WebSocketResponse(protocols=(V5_PROTOCOL, V4_PROTOCOL))
            await ws.prepare(request)
            task = asyncio.current_task()
            assert task is not None
            handlers.append(task)
            await peer(ws)
            await ws.close()
            return ws

        app = web.Application()
        app.router.add_get("/ws", handler)
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        servers.append(server)
        ws = await session.ws_connect(server.make_url("/ws"), protocols=(V5_PROTOCOL, V4_PROTOCOL))
        channel = StreamChannel(ws, label="test", max_line=64)
        channels.append(channel)
        return channel

    yield opener
    for channel in channels:
        await channel.close()
    await session.close()
    for server in servers:
        await server.close()


async def echo_peer(ws: web.WebSocketResponse) -> None:
    """Echo stdin lines to stdout (one frame per byte, to exercise reassembly) until stdin closes."""
    await ws.send_bytes(b"\x01")  # an empty frame, as servers send when a stream opens
    async for msg in ws:
        frame = decode_frame(msg.data)
        if frame.channel == CLOSE:
            break
        assert frame.channel == STDIN
        for i in range(len(frame.data)):
            await ws.send_bytes(encode_frame(STDOUT, frame.data[i : i + 1]))
    await ws.send_bytes(encode_frame(ERROR, b'{"status":"Success"}'))


async def test_echoes_lines_through_stdin_and_stdout(connect: Any) -> None:
    channel = await connect(echo_peer)
    assert channel.protocol == V5_PROTOCOL
    await channel.send(b'{"jsonrpc":"2.0","id":1,"method":"ping"}')
    await channel.send(b'{"id":2}')
    assert await channel.receive() == b'{"jsonrpc":"2.0","id":1,"method":"ping"}'
    assert await channel.receive() == b'{"id":2}'
    await channel.close_stdin()
    with pytest.raises(ChannelClosed, match="process exited"):
        await channel.receive()
    # Ended channels stay ended.
    with pytest.raises(ChannelClosed, match="process exited"):
        await channel.receive()
    with pytest.raises(ChannelClosed):
        await channel.send(b"late")


async def test_a_failure_status_is_the_close_reason(connect: Any) -> None:
    async def peer(ws: web.WebSocketResponse) -> None:
        await ws.send_bytes(encode_frame(STDOUT, b"last\n"))
        await ws.send_bytes(
            encode_frame(
                ERROR,
                json.dumps(
                    {
                        "status": "Failure",
                        "message": "command terminated with non-zero exit code",
                        "reason": "NonZeroExitCode",
                        "details": {"causes": [{"reason": "ExitCode", "message": "2"}]},
                    }
                ).encode(),
            )
        )

    channel = await connect(peer)
    assert await channel.receive() == b"last"
    with pytest.raises(ChannelClosed, match=r"non-zero exit code \(exit code 2\)"):
        await channel.receive()
    assert channel.status is not None
    assert channel.status.exit_code == 2


async def test_stderr_is_logged_not_delivered(
    connect: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    async def peer(ws: web.WebSocketResponse) -> None:
        await ws.send_bytes(encode_frame(STDERR, b"warming up\npart"))
        await ws.send_bytes(encode_frame(STDOUT, b"out\n"))
        await ws.send_bytes(encode_frame(ERROR, b'{"status":"Success"}'))

    channel = await connect(peer)
    assert await channel.receive() == b"out"
    with pytest.raises(ChannelClosed):
        await channel.receive()
    out = capsys.readouterr().out
    assert "warming up" in out
    assert "part" in out


async def test_a_line_over_the_limit_ends_the_channel(connect: Any) -> None:
    async def peer(ws: web.WebSocketResponse) -> None:
        await ws.send_bytes(encode_frame(STDOUT, b"fits\n" + b"x" * 65 + b"\n"))
        await ws.receive()

    channel = await connect(peer)
    assert await channel.receive() == b"fits"
    with pytest.raises(ChannelClosed, match="protocol error: line longer than 64 bytes"):
        await channel.receive()


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        pytest.param(b"", "no channel byte", id="empty"),
        pytest.param(b"\x07x", "unknown channel 7", id="unknown-channel"),
    ],
)
async def test_protocol_errors_end_the_channel(connect: Any, message: bytes, reason: str) -> None:
    async def peer(ws: web.WebSocketResponse) -> None:
        await ws.send_bytes(message)
        await ws.receive()

    channel = await connect(peer)
    with pytest.raises(ChannelClosed, match=reason):
        await channel.receive()


async def test_a_text_frame_is_a_protocol_error(connect: Any) -> None:
    async def peer(ws: web.WebSocketResponse) -> None:
        await ws.send_str("1aGVsbG8=")
        await ws.receive()

    channel = await connect(peer)
    with pytest.raises(ChannelClosed, match="text frame"):
        await channel.receive()


async def test_the_peer_closing_ends_the_channel(connect: Any) -> None:
    async def peer(ws: web.WebSocketResponse) -> None:
        await ws.send_bytes(encode_frame(STDOUT, b"bye\n"))

    channel = await connect(peer)
    assert await channel.receive() == b"bye"
    with pytest.raises(ChannelClosed, match="websocket closed"):
        await channel.receive()


async def test_abort_ends_a_waiting_receive(connect: Any) -> None:
    async def peer(ws: web.WebSocketResponse) -> None:
        await ws.receive()

    channel = await connect(peer)
    waiting = asyncio.create_task(channel.receive())
    await asyncio.sleep(0)
    channel.abort("pod time-0 was replaced")
    with pytest.raises(ChannelClosed, match="pod time-0 was replaced"):
        await waiting
    await asyncio.wait_for(channel.ended.wait(), 5)


async def test_v4_has_no_stdin_close_signal(connect: Any) -> None:
    seen: list[bytes] = []

    async def peer(ws: web.WebSocketResponse) -> None:
        async for msg in ws:
            seen.append(msg.data)

    async def v4_only(peer_: Peer) -> StreamChannel:
        return await connect(peer_)

    channel = await v4_only(peer)
    channel.protocol = V4_PROTOCOL
    await channel.close_stdin()
    await channel.send(b"x")
    await channel.close()
    assert seen == [b"\x00x\n"]


async def test_close_is_idempotent(connect: Any) -> None:
    channel = await connect(echo_peer)
    await channel.close()
    await channel.close()
    with pytest.raises(ChannelClosed, match="closed"):
        await channel.receive()


@given(
    st.lists(
        st.binary(max_size=30).filter(lambda b: b"\n" not in b and not b.endswith(b"\r")),
        max_size=8,
    ),
    st.data(),
)
def test_long_lines_are_dropped_and_the_rest_kept_however_the_stream_is_cut(
    lines: list[bytes], data: st.DataObject
) -> None:
    stream = b"".join(line + b"\n" for line in lines)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=6)))
    buf = LineBuffer(limit=10)
    got: list[bytes] = []
    errors = 0
    start = 0
    for cut in [*cuts, len(stream)]:
        try:
            got.extend(buf.feed(stream[start:cut]))
        except LineTooLong as exc:
            got.extend(exc.lines)
            errors += 1
        start = cut
    assert got == [line for line in lines if len(line) <= 10]
    assert errors >= (1 if any(len(line) > 10 for line in lines) else 0)
