"""The replay log behind Last-Event-ID: bounded, per stream, and honest about what it lost."""

from __future__ import annotations

import pytest

from moorage_proxyrunner.front.replaying import ReplayLog, parse_event_id


def test_events_after_an_id_are_those_of_its_own_stream() -> None:
    log = ReplayLog(window=10, max_bytes=1000)
    first, second = log.open_stream(), log.open_stream()
    a1 = log.record(first, b"a1")
    assert a1 is not None
    log.record(second, b"b1")
    log.record(first, b"a2")
    resumed = log.after(a1)
    assert resumed is not None
    stream, events = resumed
    assert stream == first
    assert [e.data for e in events] == [b"a2"]


def test_the_window_keeps_the_newest_events_in_number_and_bytes() -> None:
    log = ReplayLog(window=3, max_bytes=1000)
    stream = log.open_stream()
    ids = [log.record(stream, f"e{i}".encode()) for i in range(5)]
    assert log.after(str(ids[1])) is None  # fell out of the window
    assert log.after(str(ids[2])) == (stream, log.since(stream, 3))
    small = ReplayLog(window=100, max_bytes=10)
    stream = small.open_stream()
    early = small.record(stream, b"x" * 6)
    small.record(stream, b"y" * 6)
    assert early is not None
    assert small.after(early) is None


@pytest.mark.parametrize("value", ["", "7", "a-1", "1-", "-1", "1-2-3", "99-1"])
def test_ids_it_never_minted_are_not_found(value: str) -> None:
    log = ReplayLog(window=10, max_bytes=1000)
    log.record(log.open_stream(), b"only")
    assert log.after(value) is None


def test_a_response_carries_no_id_but_is_replayed() -> None:
    log = ReplayLog(window=10, max_bytes=1000)
    stream = log.open_stream()
    asked = log.record(stream, b"question")
    assert asked is not None
    assert log.record(stream, b"answer", final=True) is None
    resumed = log.after(asked)
    assert resumed is not None
    assert [(e.data, e.shown_id) for e in resumed[1]] == [(b"answer", None)]


def test_ids_parse_as_stream_and_sequence() -> None:
    assert parse_event_id("3-41") == (3, 41)
    assert parse_event_id(" 3-41 ") == (3, 41)
    assert parse_event_id("x-41") is None


async def test_a_live_stream_wakes_its_reader_and_says_when_it_ends() -> None:
    log = ReplayLog(window=10, max_bytes=1000)
    stream = log.open_stream(standalone=True)
    assert log.standalone == stream
    watched = log.watch()
    log.record(stream, b"late")
    assert watched.is_set()
    assert log.is_open(stream)
    watched = log.watch()
    log.close_stream(stream)
    assert watched.is_set()
    assert not log.is_open(stream)
