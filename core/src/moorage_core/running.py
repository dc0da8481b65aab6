"""`run_service`: how every long-running command runs its event loop and exits.

- SIGTERM and SIGINT are handled from the loop's first moment. During start-up a signal cancels
  the start-up (its `finally` blocks clean up); once the command calls `Lifecycle.serving()`, a
  signal sets `Lifecycle.stop` and the command drains. A second signal cancels whatever is left
  (`drain_interrupted`, exit 1).
- A `StartupFailure` becomes one `startup_failed` log line naming the setting, and its exit code;
  no traceback. Any other exception is logged once (`exiting`) and exits 1.
- The exit is never late: from the first signal, the process ends within its drain timeout plus
  `EXIT_GRACE`; after the command returned, leftover tasks get `EXIT_GRACE` to finish. A task
  that ignores cancellation cannot keep the process alive past that: it is ended with the exit
  code it would have had (1 after a signal) and an `exit_forced` line on stderr.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import threading
from collections.abc import Awaitable, Callable
from typing import Final

import structlog

from moorage_core.startup import EXIT_FAILED, EXIT_OK, StartupFailure

log = structlog.get_logger(__name__)

EXIT_GRACE: Final = 1.0
"""Seconds beyond the drain timeout (after a signal), or after the command returned, before the
process is ended regardless of tasks that ignore cancellation."""
_SIGNALS: Final = (signal.SIGTERM, signal.SIGINT)


class Lifecycle:
    """What a command's main coroutine gets: the stop event and the start-up switch."""

    def __init__(self, *, drain_timeout: float) -> None:
        self.stop = asyncio.Event()
        """Set by SIGTERM/SIGINT once serving (or by the command itself): drain and return."""
        self.drain_timeout = drain_timeout
        """Seconds the command may take to drain after `stop` is set."""
        self._serving = False
        """False during start-up: a signal then cancels the main coroutine instead."""
        self.signalled = False
        """True once a signal asked the command to stop."""

    @property
    def is_serving(self) -> bool:
        return self._serving

    def serving(self) -> None:
        """Start-up is over: from now on a signal sets `stop` (drain) rather than cancelling."""
        self._serving = True


def report_startup_failure(failure: StartupFailure) -> int:
    """Log `failure` as the one `startup_failed` line; its exit code."""
    log.error("startup_failed", setting=failure.setting, error=failure.problem, hint=failure.hint)
    return failure.exit_code


class _ExitDeadline:
    """A timer on its own thread that ends the process if the loop has not finished by then."""

    def __init__(self) -> None:
        self._timer: threading.Timer | None = None

    def arm(self, seconds: float, *, exit_code: int, reason: str) -> None:
        if self._timer is not None:
            return
        self._timer = threading.Timer(seconds, self._fire, (exit_code, reason, seconds))
        self._timer.daemon = True
        self._timer.start()

    def disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    @staticmethod
    def _fire(exit_code: int, reason: str, seconds: float) -> None:
        # The loop is stuck: structlog's logger belongs to it, so write the line directly.
        print(
            f"exit_forced: still running {seconds:g}s after {reason}; exiting with {exit_code}",
            file=sys.stderr,
            flush=True,
        )
        sys.stdout.flush()
        os._exit(exit_code)


async def _run_main(
    main: Callable[[Lifecycle], Awaitable[int]],
    *,
    lifecycle: Lifecycle,
    deadline: _ExitDeadline,
) -> int:
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None

    def on_signal(signum: signal.Signals) -> None:
        log.info("shutdown_requested", signal=signum.name, serving=lifecycle.is_serving)
        deadline.arm(
            lifecycle.drain_timeout + EXIT_GRACE,
            exit_code=EXIT_FAILED,
            reason=signum.name,
        )
        if lifecycle.is_serving and not lifecycle.signalled:
            lifecycle.signalled = True
            lifecycle.stop.set()
            return
        lifecycle.signalled = True
        task.cancel()

    for signum in _SIGNALS:
        loop.add_signal_handler(signum, on_signal, signum)
    try:
        return await main(lifecycle)
    except asyncio.CancelledError:
        if not lifecycle.signalled:
            raise
        if lifecycle.is_serving:
            # A second signal cut the drain short: a forced end after a signal, as when the
            # deadline ends it.
            log.warning("drain_interrupted")
            return EXIT_FAILED
        log.info("stopped_during_startup")
        return EXIT_OK
    except StartupFailure as exc:
        return report_startup_failure(exc)
    except Exception as exc:
        log.error("exiting", error=f"{type(exc).__name__}: {exc}", exc_info=exc)
        return EXIT_FAILED
    finally:
        for signum in _SIGNALS:
            loop.remove_signal_handler(signum)


def run_service(main: Callable[[Lifecycle], Awaitable[int]], *, drain_timeout: float) -> int:
    """Run `main` on a new event loop as described in the module; the process exit code."""
    deadline = _ExitDeadline()

    async def start() -> int:
        lifecycle = Lifecycle(drain_timeout=drain_timeout)
        return await _run_main(main, lifecycle=lifecycle, deadline=deadline)

    runner = asyncio.Runner()
    code = EXIT_FAILED
    try:
        code = runner.run(start())
    except KeyboardInterrupt:
        # SIGINT before the loop installed its handler.
        code = 130
    finally:
        # Closing cancels and awaits the tasks the command left behind: bounded as well.
        deadline.arm(EXIT_GRACE, exit_code=code, reason="the command returned")
        try:
            runner.close()
        finally:
            deadline.disarm()
    return code
