"""Proxy runner replicas as separate processes: `moorage-proxyrunner run --local` on free
loopback ports, each advertising its own address to the others, all with one RunConfig file,
each one killable (SIGKILL, as a crashed pod) and restartable on its own port; and what a
replica's `/health` and `/metrics` say.
"""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import aiohttp

from testkit.commands import command_env, free_port, stop_process


class Replica:
    """One proxy runner process; its port stays the same across `kill()` and `start()`."""

    def __init__(
        self, index: int, directory: Path, args: Sequence[str], env: Mapping[str, str]
    ) -> None:
        self.index = index
        self.directory = directory
        self.args = list(args)
        self.env = dict(env)
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def base(self) -> str:
        return f"http://{self.address}"

    @property
    def log(self) -> Path:
        return self.directory / f"proxy-{self.index}.log"

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "moorage_proxyrunner",
                    "run",
                    "--local",
                    "--port",
                    str(self.port),
                    "--advertise-address",
                    self.address,
                    *self.args,
                ],
                env=command_env(self.env),
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """End the process at once, as a crashed pod (no handover)."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None:
            stop_process(process, timeout=15)


def replica_args(config: Path, backend: Sequence[str]) -> list[str]:
    """`run --local` arguments: the RunConfig file, then the backend's own (`-- command...`,
    `--transport ... --target-url ...`, or none for a RunConfig that names its backends)."""
    return ["--config", str(config), *backend]


@contextlib.contextmanager
def running_replicas(
    directory: Path,
    config: Mapping[str, Any],
    backend: Sequence[str],
    *,
    count: int,
    env: Mapping[str, str] | None = None,
) -> Iterator[list[Replica]]:
    """`count` started replicas with RunConfig `config` in front of `backend`; stopped at the end."""
    path = directory / "runconfig.json"
    path.write_text(json.dumps(config))
    replicas = [
        Replica(index, directory, replica_args(path, backend), env or {}) for index in range(count)
    ]
    try:
        for replica in replicas:
            replica.start()
        yield replicas
    finally:
        for replica in replicas:
            replica.stop()


async def is_healthy(base: str) -> bool:
    """`/health` answers 200 (False while it refuses connections or says not ready)."""
    try:
        async with aiohttp.ClientSession() as http, http.get(f"{base}/health") as resp:
            return resp.status == 200
    except aiohttp.ClientConnectionError:
        return False


async def metric(base: str, name: str, **labels: str) -> float:
    """The sum of a metric's samples on a replica's `/metrics` (those with `labels`)."""
    async with aiohttp.ClientSession() as http, http.get(f"{base}/metrics") as resp:
        text = await resp.text()
    total = 0.0
    wanted = [f'{key}="{value}"' for key, value in labels.items()]
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        sample, _, value = line.rpartition(" ")
        if sample.split("{", 1)[0] == name and all(label in sample for label in wanted):
            total += float(value)
    return total
