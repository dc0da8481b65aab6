"""`run_service`: a start-up failure is an exit code, a signal ends start-up or drains."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import pytest
import structlog

from moorage_core.running import Lifecycle, run_service
from moorage_core.startup import EXIT_CONFIG, EXIT_FAILED, StartupFailure


def test_a_startup_failure_becomes_its_exit_code_and_one_event() -> None:
    async def main(_: Lifecycle) -> int:
        raise StartupFailure("BIND / --bind", "127.0.0.1:1 is in use", hint="choose another")

    with structlog.testing.capture_logs() as logs:
        assert run_service(main, drain_timeout=1.0) == EXIT_CONFIG
    failed = [entry for entry in logs if entry["event"] == "startup_failed"]
    assert failed == [
        {
            "event": "startup_failed",
            "log_level": "error",
            "setting": "BIND / --bind",
            "error": "127.0.0.1:1 is in use",
            "hint": "choose another",
        }
    ]


def test_the_exit_code_of_a_startup_failure_is_kept() -> None:
    async def main(_: Lifecycle) -> int:
        raise StartupFailure("X", "bad", hint="fix it", exit_code=EXIT_FAILED)

    assert run_service(main, drain_timeout=1.0) == EXIT_FAILED


def test_an_unexpected_error_exits_one() -> None:
    async def main(_: Lifecycle) -> int:
        raise RuntimeError("bug")

    assert run_service(main, drain_timeout=1.0) == EXIT_FAILED


def test_sigterm_during_startup_cancels_it_and_exits_zero() -> None:
    cleaned: list[bool] = []

    async def main(_: Lifecycle) -> int:
        asyncio.get_running_loop().call_later(0.05, os.kill, os.getpid(), signal.SIGTERM)
        try:
            await asyncio.sleep(60)
        finally:
            cleaned.append(True)
        return 5

    started = time.monotonic()
    assert run_service(main, drain_timeout=10.0) == 0
    assert time.monotonic() - started < 5
    assert cleaned == [True]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["sigterm", "sigint"])
def test_a_signal_while_serving_sets_stop_for_a_drain(signum: signal.Signals) -> None:
    async def main(lifecycle: Lifecycle) -> int:
        lifecycle.serving()
        asyncio.get_running_loop().call_later(0.05, os.kill, os.getpid(), signum)
        await asyncio.wait_for(lifecycle.stop.wait(), timeout=5)
        return 0

    assert run_service(main, drain_timeout=10.0) == 0


def test_a_second_signal_cuts_the_drain_short_and_exits_one() -> None:
    async def main(lifecycle: Lifecycle) -> int:
        lifecycle.serving()
        loop = asyncio.get_running_loop()
        loop.call_later(0.05, os.kill, os.getpid(), signal.SIGTERM)
        await asyncio.wait_for(lifecycle.stop.wait(), timeout=5)
        loop.call_later(0.05, os.kill, os.getpid(), signal.SIGINT)
        await asyncio.sleep(60)  # a drain that would outlast the second signal
        return 0

    started = time.monotonic()
    with structlog.testing.capture_logs() as logs:
        assert run_service(main, drain_timeout=10.0) == EXIT_FAILED
    assert time.monotonic() - started < 5
    assert "drain_interrupted" in [entry["event"] for entry in logs]
