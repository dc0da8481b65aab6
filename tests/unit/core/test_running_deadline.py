"""A command whose tasks ignore cancellation still exits: `exit_forced`, bounded by the drain."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time

SCRIPT = textwrap.dedent(
    """
    import asyncio, sys
    from moorage_core.running import run_service

    async def main(lifecycle):
        lifecycle.serving()
        print("serving", flush=True)
        await lifecycle.stop.wait()
        while True:  # a drain that never ends, deaf to cancellation
            try:
                await asyncio.sleep(60)
            except asyncio.CancelledError:
                pass

    sys.exit(run_service(main, drain_timeout=0.5))
    """
)


def test_a_drain_that_never_ends_is_cut_at_the_drain_timeout_plus_grace() -> None:
    process = subprocess.Popen(
        [sys.executable, "-c", SCRIPT],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "serving"
        process.send_signal(signal.SIGTERM)
        started = time.monotonic()
        _, stderr = process.communicate(timeout=10)
        waited = time.monotonic() - started
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 1
    assert "exit_forced: still running 1.5s after SIGTERM; exiting with 1" in stderr
    assert "Traceback" not in stderr
    assert 1.0 < waited < 5.0
