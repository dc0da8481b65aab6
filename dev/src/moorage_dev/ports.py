"""Ports (on loopback unless told): a free one to listen on, and whether one accepts connections yet.

Its own module so that every part of the dev tooling (and the tests) can take it without
importing the control plane.
"""

from __future__ import annotations

import socket


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on `host` that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def is_port_open(port: int, host: str = "127.0.0.1") -> bool:
    """Whether a TCP connection to `host:port` is accepted within half a second."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0
