"""A real `redis-server` for tests: on a free loopback port, in a temporary directory, with a
password or TLS when asked (or as a Sentinel watching another), that a test can stop and start
again on the same port.

Where `redis-server` is not installed the tests that need it are skipped with the reason, or
fail with it when MOORAGE_REQUIRE_SERVERS=1 (`testkit.debianservers`; CI sets it:
`scripts/test.sh` installs the Debian package `redis-server` through `scripts/realnode-deps.sh`).
"""

from __future__ import annotations

import contextlib
import socket
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from moorage_core.tls import build_ca, build_leaf, write_pair
from testkit.commands import free_port
from testkit.debianservers import require_debian_binary
from testkit.serverprocess import ServerProcess

REDIS_SERVER = "redis-server"


def require_redis_server() -> str:
    """The `redis-server` binary, or skip (fail under MOORAGE_REQUIRE_SERVERS=1) saying why."""
    return require_debian_binary(REDIS_SERVER, "redis-server")


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """PEM files of a TLS `redis-server`: its certificate and key, and the CA that signed them."""

    cert: Path
    key: Path
    ca: Path


def write_tls_files(directory: Path, *, hosts: list[str]) -> TlsFiles:
    """A new CA and a serving certificate for `hosts`, written into `directory`."""
    ca = build_ca(common_name="redis-test-ca")
    cert_path, key_path = write_pair(build_leaf(ca, common_name="redis", hosts=hosts), directory)
    ca_path = directory / "ca.crt"
    ca_path.write_bytes(ca.cert_pem)
    return TlsFiles(cert_path, key_path, ca_path)


class RedisServer(ServerProcess):
    """One `redis-server` process; `address` stays the same across `stop()` and `start()`."""

    def __init__(
        self,
        binary: str,
        directory: Path,
        *,
        password: str | None = None,
        tls: TlsFiles | None = None,
        sentinel_for: tuple[str, RedisServer] | None = None,
    ) -> None:
        super().__init__(directory, "redis.log")
        self.binary = binary
        self.sentinel_for = sentinel_for
        self.password = password
        self.tls = tls
        self.port = free_port()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, *, timeout: float = 15.0) -> None:
        args = [
            self.binary,
            "--bind",
            "127.0.0.1",
            "--port",
            "0" if self.tls else str(self.port),
            "--dir",
            str(self.directory),
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
        ]
        if self.password is not None:
            args += ["--requirepass", self.password]
        if self.sentinel_for is not None:
            # A sentinel rewrites its config file, so it gets one of its own.
            name, primary = self.sentinel_for
            config = self.directory / f"sentinel-{self.port}.conf"
            config.write_text(
                f"port {self.port}\nbind 127.0.0.1\ndir {self.directory}\n"
                f"sentinel monitor {name} 127.0.0.1 {primary.port} 1\n"
            )
            args = [self.binary, str(config), "--sentinel"]
        if self.tls is not None:
            args += [
                "--tls-port",
                str(self.port),
                "--tls-cert-file",
                str(self.tls.cert),
                "--tls-key-file",
                str(self.tls.key),
                "--tls-ca-cert-file",
                str(self.tls.ca),
                "--tls-auth-clients",
                "no",
            ]
        self.launch(
            args, self.is_answering, name=f"redis-server on {self.address}", timeout=timeout
        )

    def is_answering(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as raw:
                conn = raw
                if self.tls is not None:
                    context = ssl.create_default_context(cafile=str(self.tls.ca))
                    conn = context.wrap_socket(raw, server_hostname="localhost")
                conn.sendall(b"PING\r\n")
                reply = conn.recv(64)
        except OSError:
            return False
        return reply.startswith((b"+PONG", b"-NOAUTH"))


@contextlib.contextmanager
def running_redis(
    directory: Path, *, password: str | None = None, tls: TlsFiles | None = None
) -> Iterator[RedisServer]:
    """A started `redis-server` (skipped without one), stopped at the end."""
    server = RedisServer(require_redis_server(), directory, password=password, tls=tls)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@contextlib.contextmanager
def running_sentinel(
    primary: RedisServer, directory: Path, *, name: str = "mymaster"
) -> Iterator[RedisServer]:
    """A Sentinel watching `primary` under `name`, stopped at the end."""
    sentinel = RedisServer(primary.binary, directory, sentinel_for=(name, primary))
    sentinel.start()
    try:
        yield sentinel
    finally:
        sentinel.stop()


def through_sentinel(sentinel: RedisServer) -> dict[str, object]:
    """RunConfig `redis` fields that find the primary through `sentinel` (its `address` is
    then unused)."""
    assert sentinel.sentinel_for is not None, "not a sentinel"
    name = sentinel.sentinel_for[0]
    return {
        "address": "127.0.0.1:1",
        "sentinel": {"master_name": name, "addresses": [sentinel.address]},
    }
