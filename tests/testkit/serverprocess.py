"""A server process a test starts and stops again (Redis, HAProxy): its output goes to a log
file in the test's directory, `start` returns once it serves, `stop` reaps it."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import BinaryIO

from testkit.commands import stop_process, wait_serving


class ServerProcess:
    """One server process at a time, logging to `directory / log_name`."""

    def __init__(self, directory: Path, log_name: str) -> None:
        self.directory = directory
        self.log_path = directory / log_name
        self.process: subprocess.Popen[bytes] | None = None
        self._log: BinaryIO | None = None

    def launch(
        self, args: Sequence[str], serving: Callable[[], bool], *, name: str, timeout: float
    ) -> None:
        """Start `args` and wait until `serving()`; fail with the log's tail if it exits."""
        self._log = self.log_path.open("ab")
        self.process = subprocess.Popen(list(args), stdout=self._log, stderr=subprocess.STDOUT)
        wait_serving(self.process, serving, name=name, log=self.log_path, timeout=timeout)

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None:
            stop_process(process)
        if self._log is not None:
            self._log.close()
            self._log = None
