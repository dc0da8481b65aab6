"""Waiting for a condition without fixed sleeps.

`eventually` calls a check until it passes: a check passes when it returns a truthy value and
raises no `AssertionError`. The timeout bounds a wait that should end; it is not a performance
assertion. On timeout the last failure is re-raised with the elapsed time.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


async def eventually(
    check: Callable[[], Awaitable[T] | T],
    *,
    timeout: float = 30.0,
    interval: float = 0.05,
    message: str = "",
) -> T:
    """Await `check()` until it passes; its last truthy result."""
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while True:
        try:
            result = check()
            if inspect.isawaitable(result):
                result = await result
            if result:
                return result  # type: ignore[return-value]
            last = AssertionError(f"check returned {result!r}")
        except AssertionError as exc:
            last = exc
        if time.monotonic() >= deadline:
            prefix = f"{message}: " if message else ""
            raise AssertionError(f"{prefix}not true after {timeout:.1f}s: {last}") from last
        await asyncio.sleep(interval)


def eventually_sync(
    check: Callable[[], T],
    *,
    timeout: float = 30.0,
    interval: float = 0.05,
    message: str = "",
) -> T:
    """The same for synchronous code (session fixtures, subprocess tests)."""
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while True:
        try:
            result = check()
            if result:
                return result
            last = AssertionError(f"check returned {result!r}")
        except AssertionError as exc:
            last = exc
        if time.monotonic() >= deadline:
            prefix = f"{message}: " if message else ""
            raise AssertionError(f"{prefix}not true after {timeout:.1f}s: {last}") from last
        time.sleep(interval)
