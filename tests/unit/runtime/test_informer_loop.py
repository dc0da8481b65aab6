"""The informer's list/watch loop against a scripted API (the real one is in tests/integration)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest
from runtime_fakes import FakeKube, obj
from testkit.waiting import eventually

from moorage_core.errors import Gone, ServerError
from moorage_core.kube import CONFIGMAPS, NODES, ListResult
from moorage_operator.runtime.cache import CacheEvent
from moorage_operator.runtime.informer import Informer, WatchPolicy

FAST = WatchPolicy(backoff_initial=0.001, backoff_cap=0.01, inactivity_timeout=5.0)


def summary(events: list[CacheEvent]) -> list[tuple[str, str, str]]:
    return [
        (e.type, e.object["metadata"]["name"], e.object["metadata"]["resourceVersion"])
        for e in events
    ]


@contextlib.asynccontextmanager
async def running(informer: Informer) -> AsyncIterator[list[CacheEvent]]:
    seen: list[CacheEvent] = []
    informer.add_handler(seen.append)
    task = asyncio.create_task(informer.run())
    try:
        yield seen
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_lists_then_watches_from_the_lists_version() -> None:
    kube = FakeKube()
    kube.script_list(None, ListResult([obj("a", "5")], "10"))
    informer = Informer(kube, CONFIGMAPS, label_selector="x=y", policy=FAST)  # type: ignore[arg-type]
    async with running(informer) as seen:
        watch = await kube.next_watch(1)
        assert informer.has_synced()
        assert (watch.resource_version, watch.label_selector) == ("10", "x=y")
        assert 300 <= watch.timeout_seconds < 600
        watch.send("ADDED", obj("b", "11"))
        watch.send("MODIFIED", obj("a", "12"))
        watch.send("DELETED", obj("b", "13"))
        await eventually(lambda: len(seen) == 4)
    assert summary(seen) == [
        ("ADDED", "a", "5"),
        ("ADDED", "b", "11"),
        ("MODIFIED", "a", "12"),
        ("DELETED", "b", "13"),
    ]
    assert seen[2].old is not None
    assert seen[2].old["metadata"]["resourceVersion"] == "5"
    assert [o["metadata"]["name"] for o in informer.cache.list()] == ["a"]


async def test_a_bookmark_moves_the_point_a_watch_resumes_from() -> None:
    kube = FakeKube()
    kube.script_list(None, ListResult([], "10"))
    informer = Informer(kube, CONFIGMAPS, policy=FAST)  # type: ignore[arg-type]
    async with running(informer) as seen:
        first = await kube.next_watch(1)
        first.send("BOOKMARK", {"kind": "ConfigMap", "metadata": {"resourceVersion": "20"}})
        first.close()
        second = await kube.next_watch(2)
        assert second.resource_version == "20"
    assert seen == []
    assert kube.list_calls == [(None, None)], "a normal close resumes, it does not relist"


async def test_gone_relists_and_reports_every_change_missed_meanwhile() -> None:
    kube = FakeKube()
    kube.script_list(
        None,
        ListResult([obj("kept", "1"), obj("changed", "2"), obj("removed", "3")], "10"),
        ListResult([obj("kept", "1"), obj("changed", "7"), obj("new", "8")], "30"),
    )
    informer = Informer(kube, CONFIGMAPS, policy=FAST)  # type: ignore[arg-type]
    async with running(informer) as seen:
        first = await kube.next_watch(1)
        seen.clear()
        first.fail(Gone("too old resource version", status=410))
        second = await kube.next_watch(2)
        assert second.resource_version == "30"
    assert sorted(summary(seen)) == [
        ("ADDED", "new", "8"),
        ("DELETED", "removed", "3"),
        ("MODIFIED", "changed", "7"),
    ]
    assert informer.relists == 1
    assert len(kube.list_calls) == 2


async def test_a_failed_watch_backs_off_and_resumes_without_relisting() -> None:
    kube = FakeKube()
    kube.script_list(None, ListResult([], "10"))
    informer = Informer(kube, CONFIGMAPS, policy=FAST)  # type: ignore[arg-type]
    async with running(informer):
        first = await kube.next_watch(1)
        first.send("ADDED", obj("a", "11"))
        first.fail(ServerError("connection reset"))
        second = await kube.next_watch(2)
        assert second.resource_version == "11"
    assert informer.relists == 0


async def test_a_silent_watch_is_restarted_from_where_it_was() -> None:
    kube = FakeKube()
    kube.script_list(None, ListResult([], "10"))
    policy = WatchPolicy(inactivity_timeout=0.05, backoff_initial=0.001, backoff_cap=0.01)
    informer = Informer(kube, CONFIGMAPS, policy=policy)  # type: ignore[arg-type]
    async with running(informer):
        first = await kube.next_watch(1)
        first.send("ADDED", obj("a", "11"))
        second = await kube.next_watch(2)  # nothing more is sent: the watchdog fires
        assert second.resource_version == "11"
    assert informer.relists == 0


async def test_a_failed_list_is_retried() -> None:
    kube = FakeKube()
    kube.script_list(None, ServerError("apiserver down"), ListResult([obj("a", "1")], "10"))
    informer = Informer(kube, CONFIGMAPS, policy=FAST)  # type: ignore[arg-type]
    async with running(informer):
        await informer.wait_synced()
        assert len(kube.list_calls) == 2
        assert informer.cache.get("a", namespace="ns") is not None


async def test_one_list_and_watch_per_namespace_and_synced_only_when_all_are() -> None:
    kube = FakeKube()
    kube.script_list("a", ListResult([obj("x", "1", namespace="a")], "10"))
    informer = Informer(kube, CONFIGMAPS, namespaces=("a", "b"), policy=FAST)  # type: ignore[arg-type]
    async with running(informer):
        await kube.next_watch(1)
        assert not informer.has_synced(), "namespace b has not been listed yet"
        kube.script_list("b", ListResult([obj("y", "2", namespace="b")], "11"))
        await informer.wait_synced()
        await kube.next_watch(2)
    assert sorted(kube.list_calls) == [("a", None), ("b", None)]
    assert sorted(w.namespace or "" for w in kube.watches) == ["a", "b"]
    assert sorted(informer.cache.namespaces()) == ["a", "b"]


async def test_a_cluster_scoped_kind_is_watched_cluster_wide_even_with_namespaces() -> None:
    informer = Informer(FakeKube(), NODES, namespaces=("a", "b"))  # type: ignore[arg-type]
    assert informer.scopes == (None,)


async def test_managed_fields_are_dropped_from_cached_objects() -> None:
    kube = FakeKube()
    kube.script_list(None, ListResult([obj("a", "1", managedFields=[{"manager": "x"}])], "10"))
    informer = Informer(kube, CONFIGMAPS, policy=FAST)  # type: ignore[arg-type]
    async with running(informer):
        watch = await kube.next_watch(1)
        watch.send("ADDED", obj("b", "11", managedFields=[{"manager": "y"}]))
        await eventually(lambda: informer.cache.get("b", namespace="ns"))
    for cached in informer.cache.list():
        assert "managedFields" not in cached["metadata"]


async def test_a_late_handler_first_sees_every_cached_object() -> None:
    kube = FakeKube()
    kube.script_list(None, ListResult([obj("a", "1"), obj("b", "2")], "10"))
    informer = Informer(kube, CONFIGMAPS, policy=FAST)  # type: ignore[arg-type]
    async with running(informer):
        await informer.wait_synced()
        late: list[CacheEvent] = []
        informer.add_handler(late.append)
        assert sorted(summary(late)) == [("ADDED", "a", "1"), ("ADDED", "b", "2")]
        informer.remove_handler(late.append)


async def test_a_handler_that_raises_stops_the_informer() -> None:
    kube = FakeKube()
    kube.script_list(None, ListResult([obj("a", "1")], "10"))
    informer = Informer(kube, CONFIGMAPS, policy=FAST)  # type: ignore[arg-type]

    def broken(_: CacheEvent) -> None:
        raise RuntimeError("bug in a handler")

    informer.add_handler(broken)
    with pytest.raises(ExceptionGroup) as caught:
        await asyncio.wait_for(informer.run(), timeout=5)
    assert caught.group_contains(RuntimeError, match="bug in a handler")


async def test_a_garbled_watch_record_is_a_failure_not_a_crash() -> None:
    kube = FakeKube()
    kube.script_list(None, ListResult([], "10"))
    informer = Informer(kube, CONFIGMAPS, policy=FAST)  # type: ignore[arg-type]
    async with running(informer):
        first = await kube.next_watch(1)
        first.fail(ValueError("Expecting ',' delimiter: line 1 column 4000"))
        second = await kube.next_watch(2)
        assert second.resource_version == "10"
