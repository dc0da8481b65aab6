"""Running a Moorage command as a user would, and checking how it fails to start.

`run_command` starts `python -m <module> ...` (the same code as the console script) and waits
for it with a bound; `assert_clean_failure` checks the three things every start-up failure must
show: the exit code, one line naming the setting, and no traceback. `terminate_when` sends SIGTERM
at a chosen moment; `assert_clean_stop` checks what follows: the exit code, the time from SIGTERM
to exit, and no traceback.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from moorage_dev.ports import free_port

FAST_EXIT = 10.0
"""Seconds within which a failed start-up must have exited (imports included, on a busy host)."""


@dataclass(frozen=True, slots=True)
class Outcome:
    code: int
    stdout: str
    stderr: str
    seconds: float
    """From start to exit."""

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def command_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment a command runs with: ours without Moorage's settings, plus `extra`."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"KUBECONFIG", "KUBERNETES_SERVICE_HOST", "CERT_DIR", "METRICS_BIND"}
    }
    env["LOG_FORMAT"] = "json"
    env.update(extra or {})
    return env


def run_command(
    module: str,
    *args: str,
    env: Mapping[str, str] | None = None,
    timeout: float = FAST_EXIT,
) -> Outcome:
    """Run `python -m module args...` to its end (killed and failed after `timeout`)."""
    started = time.monotonic()
    try:
        done = subprocess.run(
            [sys.executable, "-m", module, *args],
            env=command_env(env),
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(
            f"{module} {' '.join(args)} still ran after {timeout}s: {exc.stdout!r} {exc.stderr!r}"
        ) from None
    return Outcome(done.returncode, done.stdout, done.stderr, time.monotonic() - started)


def assert_clean_failure(outcome: Outcome, *, code: int, setting: str, problem: str) -> None:
    """Exit `code`, one line naming `setting` and `problem`, no traceback."""
    assert "Traceback" not in outcome.output, outcome.output
    lines = [line for line in outcome.output.splitlines() if setting in line]
    assert len(lines) == 1, outcome.output
    assert problem in lines[0], outcome.output
    assert outcome.code == code, outcome.output
    assert outcome.seconds < FAST_EXIT


@contextlib.contextmanager
def port_in_use() -> Iterator[int]:
    """A loopback port something else listens on."""
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    try:
        yield int(holder.getsockname()[1])
    finally:
        holder.close()


def unreachable_kubeconfig(directory: Path) -> Path:
    """A kubeconfig naming an apiserver on a loopback port nothing listens on."""
    path = directory / "kubeconfig"
    path.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
        f"clusters: [{{name: c, cluster: {{server: 'https://127.0.0.1:{free_port()}', "
        "insecure-skip-tls-verify: true}}]\n"
        "users: [{name: u, user: {token: t}}]\n"
        "contexts: [{name: c, context: {cluster: c, user: u}}]\n"
    )
    return path


def terminate_when(
    module: str,
    *args: str,
    ready: str,
    env: Mapping[str, str] | None = None,
    limit: float = FAST_EXIT,
) -> tuple[Outcome, float]:
    """Start the command, send SIGTERM once `ready` appears in its output (or at once when
    `ready` is empty), and wait for it; the outcome and the seconds from SIGTERM to exit."""
    started = time.monotonic()
    process = subprocess.Popen(
        [sys.executable, "-m", module, *args],
        env=command_env(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    assert process.stdout is not None
    seen: list[str] = []
    try:
        if ready:
            for line in process.stdout:
                seen.append(line)
                if ready in line:
                    break
            else:
                raise AssertionError(f"{module} exited before {ready!r}: {''.join(seen)}")
        process.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        rest, _ = process.communicate(timeout=limit)
        waited = time.monotonic() - signalled
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    output = "".join(seen) + rest
    return Outcome(process.returncode, output, "", time.monotonic() - started), waited


def assert_clean_stop(
    outcome: Outcome,
    waited: float,
    *,
    within: float,
    codes: Collection[int] = (0,),
    event: str = "",
) -> None:
    """After `terminate_when`: an exit code in `codes`, less than `within` seconds from SIGTERM to
    exit, no traceback, and `event` in the output when one is named."""
    assert outcome.code in codes, outcome.output
    assert waited < within
    assert "Traceback" not in outcome.output
    if event:
        assert event in outcome.output


def stop_process(process: subprocess.Popen[bytes], *, timeout: float = 10.0) -> None:
    """SIGTERM, then SIGKILL after `timeout` seconds; returns once the process is reaped."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def wait_serving(
    process: subprocess.Popen[bytes],
    serving: Callable[[], bool],
    *,
    name: str,
    log: Path,
    timeout: float,
) -> None:
    """Wait until `serving()` says the started `process` serves; fail with the tail of its `log`
    when it exits first, or after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not serving():
        if process.poll() is not None:
            raise RuntimeError(
                f"{name} exited with {process.returncode}: " + log.read_text()[-2000:]
            )
        if time.monotonic() > deadline:
            raise TimeoutError(f"{name} did not start serving within {timeout} s")
        time.sleep(0.05)
