"""Subprocesses started by a test (operator replicas), always cleaned up by the fixture."""

from __future__ import annotations

import subprocess
from pathlib import Path


class Processes:
    """Subprocesses a test started; the fixture kills those still running afterwards."""

    def __init__(self) -> None:
        self.started: list[subprocess.Popen[bytes]] = []

    def start(self, argv: list[str], *, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
        """Run `argv` with `env`, output (stdout and stderr) to the file `log`."""
        with log.open("wb") as handle:
            proc = subprocess.Popen(argv, env=env, stdout=handle, stderr=subprocess.STDOUT)
        self.started.append(proc)
        return proc
