"""Event deduplication: repeats join a series, storms are only counted, writes never fail a caller."""

from __future__ import annotations

from typing import Any

import pytest
from runtime_fakes import FakeClock

from moorage_core.errors import Forbidden, NotFound
from moorage_core.kube import JsonObject
from moorage_operator.runtime.events import Emit, EventDeduper, EventKey, EventRecorder

KEY = EventKey(regarding="uid-1", type="Warning", reason="ApplyFailed", action="Apply", note="boom")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def deduper(clock: FakeClock) -> EventDeduper:
    return EventDeduper(clock=clock, window=600.0, min_interval=30.0)


def test_the_first_occurrence_creates_an_event(deduper: EventDeduper) -> None:
    assert deduper.decide(KEY) == Emit("create", 1)


def test_a_repeat_within_the_window_bumps_the_series(
    deduper: EventDeduper, clock: FakeClock
) -> None:
    deduper.decide(KEY)
    deduper.created(KEY, "obj.17")
    clock.advance(60)
    assert deduper.decide(KEY) == Emit("bump", 2, "obj.17")
    clock.advance(45)
    assert deduper.decide(KEY) == Emit("bump", 3, "obj.17")


def test_repeats_sooner_than_the_interval_are_only_counted(
    deduper: EventDeduper, clock: FakeClock
) -> None:
    deduper.decide(KEY)
    deduper.created(KEY, "obj.17")
    for _ in range(5):
        clock.advance(1)
        assert deduper.decide(KEY).action == "skip"
    clock.advance(30)
    assert deduper.decide(KEY) == Emit("bump", 7, "obj.17"), "the bump carries every occurrence"


def test_a_repeat_after_the_window_starts_a_new_event(
    deduper: EventDeduper, clock: FakeClock
) -> None:
    deduper.decide(KEY)
    deduper.created(KEY, "obj.17")
    clock.advance(601)
    assert deduper.decide(KEY) == Emit("create", 1)


@pytest.mark.parametrize(
    "other",
    [
        EventKey("uid-2", "Warning", "ApplyFailed", "Apply", "boom"),
        EventKey("uid-1", "Normal", "ApplyFailed", "Apply", "boom"),
        EventKey("uid-1", "Warning", "Other", "Apply", "boom"),
        EventKey("uid-1", "Warning", "ApplyFailed", "Delete", "boom"),
        EventKey("uid-1", "Warning", "ApplyFailed", "Apply", "another note"),
    ],
    ids=["object", "type", "reason", "action", "note"],
)
def test_a_different_object_reason_or_note_is_a_different_event(
    deduper: EventDeduper, other: EventKey
) -> None:
    deduper.decide(KEY)
    deduper.created(KEY, "obj.17")
    assert deduper.decide(other) == Emit("create", 1)


def test_a_failed_create_is_tried_again_next_time(deduper: EventDeduper) -> None:
    deduper.decide(KEY)
    deduper.forget(KEY)
    assert deduper.decide(KEY) == Emit("create", 1)


def test_an_event_whose_create_has_not_finished_is_not_bumped(deduper: EventDeduper) -> None:
    deduper.decide(KEY)
    assert deduper.decide(KEY).action == "create"


def test_the_memory_is_bounded(clock: FakeClock) -> None:
    deduper = EventDeduper(clock=clock, max_series=2)
    keys = [EventKey(f"uid-{i}", "Normal", "R", "A", "n") for i in range(3)]
    for key in keys:
        deduper.decide(key)
        deduper.created(key, key.regarding)
    assert deduper.decide(keys[0]).action == "create", "the oldest series was forgotten"
    clock.advance(60)
    assert deduper.decide(keys[2]).action == "bump"


class RecordingKube:
    """Records Event writes; fails them on demand."""

    def __init__(self, *, fail_with: Exception | None = None) -> None:
        self.fail_with = fail_with
        self.created: list[JsonObject] = []
        self.patched: list[tuple[str, Any]] = []

    async def create(
        self, kind: Any, body: JsonObject, *, namespace: str | None = None
    ) -> JsonObject:
        if self.fail_with is not None:
            raise self.fail_with
        self.created.append(body)
        return body

    async def patch(self, kind: Any, body: Any, *, name: str, **_: Any) -> JsonObject:
        if self.fail_with is not None:
            raise self.fail_with
        self.patched.append((name, body))
        return {}


REGARDING: JsonObject = {
    "apiVersion": "moorage.dev/v1alpha1",
    "kind": "MCPServer",
    "metadata": {"name": "srv", "namespace": "team", "uid": "u-1", "resourceVersion": "5"},
}


async def test_the_recorder_writes_an_events_k8s_io_event_then_bumps_it(clock: FakeClock) -> None:
    kube = RecordingKube()
    recorder = EventRecorder(
        kube,  # type: ignore[arg-type]
        reporting_instance="pod-1",
        deduper=EventDeduper(clock=clock, min_interval=0),
    )
    await recorder.record(
        REGARDING, type_="Warning", reason="ApplyFailed", note="n", action="Apply"
    )
    clock.advance(1)
    await recorder.record(
        REGARDING, type_="Warning", reason="ApplyFailed", note="n", action="Apply"
    )
    [event] = kube.created
    assert event["apiVersion"] == "events.k8s.io/v1"
    assert event["metadata"]["namespace"] == "team"
    assert event["metadata"]["name"].startswith("srv.")
    assert event["regarding"] == {
        "apiVersion": "moorage.dev/v1alpha1",
        "kind": "MCPServer",
        "name": "srv",
        "namespace": "team",
        "uid": "u-1",
        "resourceVersion": "5",
    }
    assert (event["reportingController"], event["reportingInstance"]) == (
        "moorage.dev/operator",
        "pod-1",
    )
    assert (event["type"], event["reason"], event["action"], event["note"]) == (
        "Warning",
        "ApplyFailed",
        "Apply",
        "n",
    )
    [(name, patch)] = kube.patched
    assert name == event["metadata"]["name"]
    assert patch["series"]["count"] == 2


@pytest.mark.parametrize("error", [Forbidden("no", status=403), NotFound("ns gone", status=404)])
async def test_a_failed_event_write_never_raises(error: Exception) -> None:
    kube = RecordingKube(fail_with=error)
    recorder = EventRecorder(kube, reporting_instance="pod-1")  # type: ignore[arg-type]
    await recorder.record(REGARDING, type_="Normal", reason="Created", note="n", action="Create")
    kube.fail_with = None
    await recorder.record(REGARDING, type_="Normal", reason="Created", note="n", action="Create")
    assert len(kube.created) == 1, "after a failure the next occurrence creates the Event"
