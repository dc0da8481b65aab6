"""Long-running child processes of the local control plane and its real node.

Each process runs in its own session (so stopping it ends its whole group) with its output in a
log file; what we keep of it is its pid, which a later `moorage-dev` process reads back from the
state file. A pid is trusted only while its command line still names the binary we started.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

# Root's tools (ip, iptables, runc, ...) live here; a PATH without them is common under sudo or
# in a non-login shell, and kubelet, kube-proxy and containerd run them by name.
_SBIN_DIRS = ("/usr/local/sbin", "/usr/sbin", "/sbin")


def search_path() -> str:
    """$PATH with the sbin folders appended where missing."""
    parts = [p for p in os.environ.get("PATH", "/usr/bin:/bin").split(":") if p]
    return ":".join(parts + [d for d in _SBIN_DIRS if d not in parts])


def find_command(name: str) -> str | None:
    return shutil.which(name, path=search_path())


def system_env() -> dict[str, str]:
    """This process's environment with `search_path()` as PATH, for the programs we start."""
    return {**os.environ, "PATH": search_path()}


def spawn(argv: list[str], *, log_path: Path, cwd: Path, env: dict[str, str] | None = None) -> int:
    """Start `argv` in a new session with stdout and stderr appended to `log_path`; its pid."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            cwd=cwd,
            env=env,
        )
    return proc.pid


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie of ours counts as gone.
    with contextlib.suppress(OSError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat.rsplit(")", 1)[-1].split()[0] == "Z":
            return False
    return True


def pid_runs(pid: int, binary: str) -> bool:
    """True when `pid` is alive and still the binary we started (pids get reused)."""
    if not pid_alive(pid):
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode()
    except OSError:
        return False
    return Path(cmdline).name == Path(binary).name


def terminate(pid: int, *, timeout: float = 15.0) -> None:
    """SIGTERM the process group of `pid`, SIGKILL what is left after `timeout`."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, sig)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
            if not pid_alive(pid):
                return
            time.sleep(0.05)


def log_tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
