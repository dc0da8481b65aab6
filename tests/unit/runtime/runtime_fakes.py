"""Fakes for unit tests of the operator runtime: a hand-driven clock and a scripted API.

`FakeClock` implements `moorage_operator.runtime.clock.Clock`; `advance()` moves time and fires
the timers that fall due, in order. `FakeKube` stands in for the two `KubeClient` calls an
informer makes (`list`, `watch`): tests script list answers and feed watch streams event by event.
The integration suite runs the same code against the real apiserver.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from moorage_core.kube import JsonObject, ListResult, ResourceKind, WatchEvent


class _Timer:
    def __init__(self) -> None:
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class FakeClock:
    """Time that moves only when a test says so."""

    def __init__(self, start: float = 1000.0) -> None:
        self._now = start
        self._timers: list[tuple[float, int, _Timer, Callable[[], None]]] = []
        self._seq = itertools.count()

    def now(self) -> float:
        return self._now

    def call_at(self, when: float, callback: Callable[[], None]) -> _Timer:
        timer = _Timer()
        heapq.heappush(self._timers, (when, next(self._seq), timer, callback))
        return timer

    def advance(self, seconds: float) -> None:
        """Move time forward by `seconds`, firing due timers at their own time."""
        target = self._now + seconds
        while self._timers and self._timers[0][0] <= target:
            when, _, timer, callback = heapq.heappop(self._timers)
            if timer.cancelled:
                continue
            self._now = max(self._now, when)
            callback()
        self._now = target

    @property
    def pending(self) -> int:
        return sum(1 for t in self._timers if not t[2].cancelled)


def obj(name: str, rv: str, *, namespace: str = "ns", **meta: Any) -> JsonObject:
    """A minimal object as the apiserver would send it."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace, "resourceVersion": rv, **meta},
    }


END = object()
"""Put on a watch stream to make the server close it normally."""


@dataclass
class WatchCall:
    """One watch the informer opened, and the stream the test feeds."""

    namespace: str | None
    resource_version: str
    label_selector: str | None
    timeout_seconds: int
    stream: asyncio.Queue[Any] = field(default_factory=asyncio.Queue)

    def send(self, type_: str, body: JsonObject) -> None:
        self.stream.put_nowait(WatchEvent(type_, body))

    def fail(self, exc: BaseException) -> None:
        self.stream.put_nowait(exc)

    def close(self) -> None:
        self.stream.put_nowait(END)


class FakeKube:
    """Scripted `list` answers and test-fed `watch` streams."""

    def __init__(self) -> None:
        self.list_answers: dict[str | None, list[ListResult | BaseException]] = {}
        self.list_calls: list[tuple[str | None, str | None]] = []
        self.watches: list[WatchCall] = []
        self._new_watch = asyncio.Event()
        self._scripted = asyncio.Event()

    def script_list(self, namespace: str | None, *answers: ListResult | BaseException) -> None:
        self.list_answers.setdefault(namespace, []).extend(answers)
        self._scripted.set()

    async def list(
        self,
        kind: ResourceKind,
        *,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        transform: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    ) -> ListResult:
        self.list_calls.append((namespace, label_selector))
        # Nothing scripted yet: the list hangs, like a slow apiserver, until a test scripts it.
        while not self.list_answers.get(namespace):
            self._scripted.clear()
            await self._scripted.wait()
        answer = self.list_answers[namespace].pop(0)
        if isinstance(answer, BaseException):
            raise answer
        items = [dict(i) for i in answer.items]
        return ListResult(
            items=[transform(i) for i in items] if transform else items,
            resource_version=answer.resource_version,
        )

    def watch(
        self,
        kind: ResourceKind,
        *,
        resource_version: str,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        timeout_seconds: int = 300,
        allow_bookmarks: bool = True,
    ) -> AsyncIterator[WatchEvent]:
        call = WatchCall(namespace, resource_version, label_selector, timeout_seconds)
        self.watches.append(call)
        self._new_watch.set()
        return self._stream(call)

    async def _stream(self, call: WatchCall) -> AsyncIterator[WatchEvent]:
        while True:
            item = await call.stream.get()
            if item is END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    async def next_watch(self, count: int) -> WatchCall:
        """Wait until at least `count` watches were opened; the `count`-th."""
        while len(self.watches) < count:
            self._new_watch.clear()
            await self._new_watch.wait()
        return self.watches[count - 1]
