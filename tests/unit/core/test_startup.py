"""Start-up failures name the setting, say what is wrong and what to do, with the right code."""

from __future__ import annotations

import errno
import os
import socket
from pathlib import Path

import pytest

from moorage_core.startup import (
    EXIT_CONFIG,
    EXIT_FAILED,
    Listener,
    StartupFailure,
    bound_port,
    describe_bind_error,
    describe_tls_error,
    listen_sockets,
    load_tls,
)
from moorage_core.tls import build_self_signed, write_pair

LISTENER = Listener("127.0.0.1", 8443, "METRICS_BIND / --metrics-bind")


@pytest.mark.parametrize(
    ("error", "problem", "code"),
    [
        pytest.param(
            OSError(errno.EADDRINUSE, "in use"),
            "127.0.0.1:8443 is in use",
            EXIT_FAILED,
            id="in-use",
        ),
        pytest.param(
            OSError(errno.EACCES, "denied"),
            "listening on 127.0.0.1:8443 is not allowed",
            EXIT_CONFIG,
            id="not-allowed",
        ),
        pytest.param(
            OSError(errno.EADDRNOTAVAIL, "no"),
            "127.0.0.1 is not an address of this machine",
            EXIT_CONFIG,
            id="foreign-address",
        ),
        pytest.param(
            socket.gaierror(socket.EAI_NONAME, "unknown"),
            "'127.0.0.1' is not a known host name or address",
            EXIT_CONFIG,
            id="unknown-host",
        ),
    ],
)
def test_bind_errors_name_the_setting_and_the_address(
    error: OSError, problem: str, code: int
) -> None:
    failure = describe_bind_error(error, listener=LISTENER)
    assert failure.setting == "METRICS_BIND / --metrics-bind"
    assert failure.problem == problem
    assert failure.hint
    assert failure.exit_code == code
    assert str(failure).startswith("METRICS_BIND / --metrics-bind: ")


def test_an_ipv6_address_is_bracketed_in_messages() -> None:
    failure = describe_bind_error(
        OSError(errno.EADDRINUSE, "in use"), listener=Listener("::1", 80, "BIND / --bind")
    )
    assert failure.problem == "[::1]:80 is in use"


def test_listening_on_a_port_in_use_is_a_startup_failure() -> None:
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    port = holder.getsockname()[1]
    try:
        with pytest.raises(StartupFailure, match=f"127.0.0.1:{port} is in use"):
            listen_sockets(Listener("127.0.0.1", port, "BIND / --bind"))
    finally:
        holder.close()


def test_listening_on_port_zero_reports_the_real_port() -> None:
    sockets = listen_sockets(Listener("127.0.0.1", 0, "BIND / --bind"))
    try:
        assert len(sockets) == 1
        assert bound_port(sockets, default=0) == sockets[0].getsockname()[1] > 0
    finally:
        for sock in sockets:
            sock.close()


_LOCALHOST_BOTH_FAMILIES = [
    (socket.AF_INET6, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", ("::1", 0, 0, 0)),
    (socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", ("127.0.0.1", 0)),
]


def _without_ipv6(monkeypatch: pytest.MonkeyPatch, *, error: int, at: str) -> None:
    """`localhost` resolves to ::1 and 127.0.0.1, but IPv6 fails with `error` when a socket is
    created (`at="socket"`) or bound (`at="bind"`), as on a kernel without IPv6."""

    class NoIPv6Socket(socket.socket):
        def __init__(self, family: int = -1, *args: object, **kwargs: object) -> None:
            if family == socket.AF_INET6 and at == "socket":
                raise OSError(error, os.strerror(error))
            super().__init__(family, *args, **kwargs)  # type: ignore[arg-type]

        def bind(self, address: object) -> None:
            if self.family == socket.AF_INET6 and at == "bind":
                raise OSError(error, os.strerror(error))
            super().bind(address)  # type: ignore[arg-type]

    monkeypatch.setattr(socket, "getaddrinfo", lambda *a, **k: list(_LOCALHOST_BOTH_FAMILIES))
    monkeypatch.setattr(socket, "socket", NoIPv6Socket)


@pytest.mark.parametrize(
    ("error", "at"),
    [
        pytest.param(errno.EADDRNOTAVAIL, "bind", id="address-not-available"),
        pytest.param(errno.EAFNOSUPPORT, "socket", id="family-not-supported"),
    ],
)
def test_a_family_the_kernel_lacks_is_skipped_when_another_binds(
    monkeypatch: pytest.MonkeyPatch, error: int, at: str
) -> None:
    _without_ipv6(monkeypatch, error=error, at=at)
    sockets = listen_sockets(Listener("localhost", 0, "BIND / --bind"))
    try:
        assert [sock.family for sock in sockets] == [socket.AF_INET]
    finally:
        for sock in sockets:
            sock.close()


def test_a_port_in_use_fails_even_when_another_family_was_skipped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    port = holder.getsockname()[1]
    _without_ipv6(monkeypatch, error=errno.EADDRNOTAVAIL, at="bind")
    monkeypatch.setattr(
        socket,
        "getaddrinfo",
        lambda *a, **k: [
            (*info[:4], (info[4][0], port, *info[4][2:])) for info in _LOCALHOST_BOTH_FAMILIES
        ],
    )
    try:
        with pytest.raises(StartupFailure, match=f"localhost:{port} is in use"):
            listen_sockets(Listener("localhost", port, "BIND / --bind"))
    finally:
        holder.close()


def test_no_family_that_binds_is_a_startup_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    _without_ipv6(monkeypatch, error=errno.EADDRNOTAVAIL, at="bind")
    monkeypatch.setattr(socket, "getaddrinfo", lambda *a, **k: [_LOCALHOST_BOTH_FAMILIES[0]])
    with pytest.raises(StartupFailure, match="localhost is not an address of this machine"):
        listen_sockets(Listener("localhost", 0, "BIND / --bind"))


def test_a_missing_certificate_directory_is_named(tmp_path: Path) -> None:
    with pytest.raises(StartupFailure) as caught:
        load_tls(tmp_path / "nope", setting="CERT_DIR / --cert-dir", hosts=[], common_name="t")
    assert caught.value.setting == "CERT_DIR / --cert-dir"
    assert caught.value.problem == f"{tmp_path / 'nope'} does not exist"


def test_a_directory_without_the_key_names_the_missing_file(tmp_path: Path) -> None:
    write_pair(build_self_signed(hosts=["localhost"]), tmp_path)
    (tmp_path / "tls.key").unlink()
    with pytest.raises(StartupFailure, match=r"has no tls\.key"):
        load_tls(tmp_path, setting="CERT_DIR / --cert-dir", hosts=[], common_name="t")


def test_a_certificate_with_a_foreign_key_is_refused(tmp_path: Path) -> None:
    write_pair(build_self_signed(hosts=["localhost"]), tmp_path)
    other = build_self_signed(hosts=["localhost"])
    (tmp_path / "tls.key").write_bytes(other.key_pem)
    with pytest.raises(StartupFailure, match="do not belong together"):
        load_tls(tmp_path, setting="CERT_DIR / --cert-dir", hosts=[], common_name="t")


def test_garbage_instead_of_a_certificate_is_refused(tmp_path: Path) -> None:
    write_pair(build_self_signed(hosts=["localhost"]), tmp_path)
    (tmp_path / "tls.crt").write_text("not a certificate")
    with pytest.raises(StartupFailure, match="is not a PEM certificate and key"):
        load_tls(tmp_path, setting="CERT_DIR / --cert-dir", hosts=[], common_name="t")


def test_a_good_pair_loads(tmp_path: Path) -> None:
    write_pair(build_self_signed(hosts=["localhost"]), tmp_path)
    tls = load_tls(tmp_path, setting="CERT_DIR / --cert-dir", hosts=[], common_name="t")
    assert tls.cert_file == tmp_path / "tls.crt"


def test_an_unreadable_file_is_named_with_what_to_do(tmp_path: Path) -> None:
    # Root reads any file whatever its mode, so the error is built here rather than provoked.
    denied = PermissionError(errno.EACCES, "Permission denied", str(tmp_path / "tls.key"))
    failure = describe_tls_error(denied, cert_dir=tmp_path, setting="CERT_DIR / --cert-dir")
    assert failure.problem == f"{tmp_path / 'tls.key'} cannot be read"
    assert failure.hint == "make the files readable by the user the command runs as"
