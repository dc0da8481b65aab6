"""A real HAProxy (Debian's `haproxy`) in front of proxy replicas on loopback, round-robin.

Every HTTP request is balanced on its own, not every TCP connection: HAProxy's HTTP mode picks
a server per request with `balance roundrobin` (no `prefer-last-server`, no stickiness), so one
client's consecutive requests on one keep-alive connection land on different replicas, as
behind a Kubernetes Service with many pods. Health checks on `/health` every 500 ms take a
replica out after one failure and back after one success; a request whose connection to a dead
replica fails is sent to another (`retry-on conn-failure`, `option redispatch`), never a request
a replica may have started on. Timeouts are long enough for SSE streams.

Where `haproxy` is not installed the tests that need it are skipped, or fail under
MOORAGE_REQUIRE_SERVERS=1 (`testkit.debianservers`).
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator, Sequence
from pathlib import Path

from testkit.commands import free_port
from testkit.debianservers import require_debian_binary
from testkit.serverprocess import ServerProcess


def haproxy_config(port: int, servers: Sequence[str], *, stats_socket: Path) -> str:
    """The configuration: a frontend on `port`, one backend with `servers` (`host:port`)."""
    lines = [
        "global",
        "    maxconn 4096",
        f"    stats socket {stats_socket} mode 600 level admin",
        "defaults",
        "    mode http",
        "    timeout connect 1s",
        "    timeout client 300s",
        "    timeout server 300s",
        "    timeout tunnel 300s",
        "    timeout http-keep-alive 10s",
        "    timeout http-request 10s",
        "    retries 3",
        "    option redispatch 1",
        "    retry-on conn-failure",
        "frontend mcp",
        f"    bind 127.0.0.1:{port}",
        "    default_backend replicas",
        "backend replicas",
        "    balance roundrobin",
        "    option httpchk GET /health",
        "    http-check expect status 200",
        "    default-server check inter 500 fall 1 rise 1",
    ]
    lines += [f"    server r{index} {address}" for index, address in enumerate(servers)]
    return "\n".join(lines) + "\n"


class Balancer(ServerProcess):
    """One `haproxy` process in front of `servers`; `base` is its URL."""

    def __init__(self, binary: str, directory: Path, servers: Sequence[str]) -> None:
        super().__init__(directory, "haproxy.log")
        self.binary = binary
        self.servers = list(servers)
        self.port = free_port()
        self.stats_socket = directory / "haproxy.sock"
        self.config = directory / "haproxy.cfg"

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, *, timeout: float = 15.0) -> None:
        self.config.write_text(
            haproxy_config(self.port, self.servers, stats_socket=self.stats_socket)
        )
        # -db: stay in the foreground; -W would add a master process we would have to reap.
        self.launch(
            [self.binary, "-db", "-f", str(self.config)],
            self._accepts_connections,
            name=f"haproxy on port {self.port}",
            timeout=timeout,
        )

    def _accepts_connections(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                return True
        except OSError:
            return False

    def server_states(self) -> dict[str, str]:
        """Each server's state as HAProxy sees it (`UP`, `DOWN`, ...), from its stats socket."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.connect(str(self.stats_socket))
            conn.sendall(b"show stat\n")
            chunks = []
            while chunk := conn.recv(65536):
                chunks.append(chunk)
        header, *rows = b"".join(chunks).decode().splitlines()
        columns = header.lstrip("# ").split(",")
        states: dict[str, str] = {}
        for row in rows:
            fields = dict(zip(columns, row.split(","), strict=False))
            if fields.get("pxname") == "replicas" and fields.get("svname", "").startswith("r"):
                states[fields["svname"]] = fields["status"]
        return states


@contextlib.contextmanager
def running_balancer(directory: Path, servers: Sequence[str]) -> Iterator[Balancer]:
    """A started HAProxy in front of `servers` (skipped without one), stopped at the end."""
    balancer = Balancer(require_debian_binary("haproxy", "haproxy"), directory, servers)
    balancer.start()
    try:
        yield balancer
    finally:
        balancer.stop()
