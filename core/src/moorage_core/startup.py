"""Start-up failures every command reports the same way: the setting, what is wrong, what to do.

A command that cannot start raises `StartupFailure`; `moorage_core.running.run_service` turns it
into one log line (`startup_failed`, with `setting`, `error` and `hint` keys) and an exit code,
without a traceback. The checks here translate what the standard library and our kube client
raise for the usual mistakes — an address in use, a certificate directory that is missing or
holds a mismatched pair, credentials that cannot be loaded, an apiserver that never answers —
into such failures, naming the setting the person has to change.

`describe_*` functions are pure; `listen_sockets`, `load_tls`, `connect_kube` and
`wait_for_apiserver` do the I/O of one check each.
"""

from __future__ import annotations

import asyncio
import errno
import socket
import ssl
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final

import structlog

from moorage_core.backoff import Backoff
from moorage_core.errors import Forbidden, KubeError, Unauthorized
from moorage_core.tls import CERT_FILE, KEY_FILE, ReloadingTLS

if TYPE_CHECKING:
    from moorage_core.kube import KubeClient, RequestObserver

log = structlog.get_logger(__name__)

EXIT_OK: Final = 0
EXIT_FAILED: Final = 1
"""Something outside the command is not there yet (a port, the apiserver): a restart may help."""
EXIT_CONFIG: Final = 2
"""A setting or a file it names is unusable: a restart will not help until it is changed."""

_PROBE_BACKOFF: Final = Backoff(base=0.1, cap=2.0)
"""Pauses between tries of the apiserver while it does not answer yet."""
_PROBE_TIMEOUT: Final = 5.0
_MISSING_FAMILY_ERRNOS: Final = frozenset({errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT})
"""Errors binding one address of a host name that mean its family is not enabled here."""


class StartupFailure(Exception):
    """The command cannot start because of `setting`; `problem` says what is wrong and `hint`
    what to do about it. `exit_code` is `EXIT_CONFIG` or `EXIT_FAILED`."""

    def __init__(
        self, setting: str, problem: str, *, hint: str, exit_code: int = EXIT_CONFIG
    ) -> None:
        super().__init__(f"{setting}: {problem}; {hint}")
        self.setting = setting
        self.problem = problem
        self.hint = hint
        self.exit_code = exit_code


@dataclass(frozen=True, slots=True)
class Listener:
    """Where a server listens and the setting that says so (for messages)."""

    host: str
    port: int
    setting: str
    """E.g. `METRICS_BIND / --metrics-bind`."""

    @property
    def address(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


# -- pure translations ----------------------------------------------------------------------


def describe_bind_error(exc: OSError, *, listener: Listener) -> StartupFailure:
    """The failure for a socket that could not be bound to `listener`."""
    where = listener.address
    if isinstance(exc, socket.gaierror):
        return StartupFailure(
            listener.setting,
            f"{listener.host!r} is not a known host name or address",
            hint="give an IP address of this machine or a resolvable name",
        )
    if exc.errno == errno.EADDRINUSE:
        return StartupFailure(
            listener.setting,
            f"{where} is in use",
            hint="stop what listens there or choose another port",
            exit_code=EXIT_FAILED,
        )
    if exc.errno == errno.EACCES:
        return StartupFailure(
            listener.setting,
            f"listening on {where} is not allowed",
            hint="choose a port above 1023 or grant the process CAP_NET_BIND_SERVICE",
        )
    if exc.errno == errno.EADDRNOTAVAIL:
        return StartupFailure(
            listener.setting,
            f"{listener.host} is not an address of this machine",
            hint="give one of its addresses, or 0.0.0.0 for all of them",
        )
    return StartupFailure(
        listener.setting,
        f"cannot listen on {where}: {exc.strerror or exc}",
        hint="check the address and port",
        exit_code=EXIT_FAILED,
    )


def describe_tls_error(exc: Exception, *, cert_dir: Path, setting: str) -> StartupFailure:
    """The failure for a certificate directory whose pair could not be loaded."""
    if isinstance(exc, FileNotFoundError):
        missing = Path(exc.filename) if exc.filename else cert_dir
        what = "does not exist" if missing == cert_dir else f"has no {missing.name}"
        return StartupFailure(
            setting,
            f"{cert_dir} {what}",
            hint=f"mount the certificate Secret there (it must hold {CERT_FILE} and {KEY_FILE})",
        )
    if isinstance(exc, PermissionError):
        return StartupFailure(
            setting,
            f"{exc.filename or cert_dir} cannot be read",
            hint="make the files readable by the user the command runs as",
        )
    if isinstance(exc, ssl.SSLError) and "KEY_VALUES_MISMATCH" in str(exc):
        return StartupFailure(
            setting,
            f"{CERT_FILE} and {KEY_FILE} in {cert_dir} do not belong together",
            hint="put the key that was issued with the certificate next to it",
        )
    if isinstance(exc, ssl.SSLError):
        return StartupFailure(
            setting,
            f"{CERT_FILE} or {KEY_FILE} in {cert_dir} is not a PEM certificate and key "
            f"({exc.reason or exc})",
            hint="give a PEM certificate (chain) and its unencrypted PEM key",
        )
    return StartupFailure(
        setting,
        f"cannot load the certificate in {cert_dir}: {exc}",
        hint=f"check {CERT_FILE} and {KEY_FILE}",
    )


# -- checks that do I/O ---------------------------------------------------------------------


def listen_sockets(listener: Listener) -> list[socket.socket]:
    """Listening sockets for `listener` (one per address family its host resolves to), or a
    `StartupFailure` naming its setting. Binding before anything else starts makes a port in
    use the first thing a command reports, not something found after its backend is up.

    As asyncio's `create_server` does, an address whose family the kernel lacks (a name that
    resolves to an IPv6 and an IPv4 address on a host without IPv6: `EADDRNOTAVAIL` or
    `EAFNOSUPPORT`) is skipped as long as another one binds; any other error, a port in use
    above all, is a failure."""
    try:
        infos = socket.getaddrinfo(
            listener.host or None,
            listener.port,
            type=socket.SOCK_STREAM,
            flags=socket.AI_PASSIVE,
        )
    except OSError as exc:
        raise describe_bind_error(exc, listener=listener) from None
    sockets: list[socket.socket] = []
    seen: set[tuple[int, object]] = set()
    skipped: OSError | None = None
    for family, kind, proto, _, address in infos:
        if (family, address) in seen:
            continue
        seen.add((family, address))
        sock: socket.socket | None = None
        try:
            sock = socket.socket(family, kind, proto)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                # One socket per family, as asyncio does: the v6 one must not claim v4 too.
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
            sock.listen(128)
            sock.setblocking(False)
        except OSError as exc:
            if sock is not None:
                sock.close()
            if exc.errno in _MISSING_FAMILY_ERRNOS:
                skipped = exc
                continue
            for bound in sockets:
                bound.close()
            raise describe_bind_error(exc, listener=listener) from None
        sockets.append(sock)
    if not sockets and skipped is not None:
        raise describe_bind_error(skipped, listener=listener) from None
    return sockets


def bound_port(sockets: list[socket.socket], *, default: int) -> int:
    """The port the first socket listens on (the real one when bound to port 0)."""
    if not sockets:
        return default
    return int(sockets[0].getsockname()[1])


def load_tls(
    cert_dir: Path | None,
    *,
    setting: str,
    hosts: list[str],
    common_name: str,
    poll_interval: float = 2.0,
) -> ReloadingTLS:
    """`ReloadingTLS.from_dir`, with a `StartupFailure` naming `setting` when the directory or
    its pair cannot be used."""
    if cert_dir is not None and not cert_dir.is_dir():
        raise describe_tls_error(
            FileNotFoundError(errno.ENOENT, "not a directory", str(cert_dir)),
            cert_dir=cert_dir,
            setting=setting,
        )
    try:
        if cert_dir is not None:
            # `load_cert_chain` says neither which file is missing nor which it cannot read.
            for name in (CERT_FILE, KEY_FILE):
                (cert_dir / name).read_bytes()
        return ReloadingTLS.from_dir(
            cert_dir, hosts=hosts, common_name=common_name, poll_interval=poll_interval
        )
    except (OSError, ssl.SSLError) as exc:
        raise describe_tls_error(exc, cert_dir=cert_dir or Path(), setting=setting) from None


async def connect_kube(
    *,
    kubeconfig: str | None,
    setting: str,
    user_agent: str,
    observer: RequestObserver | None = None,
    max_connections: int = 32,
) -> KubeClient:
    """`KubeClient.connect`, with a `StartupFailure` naming `setting` (the kubeconfig's) when
    no credentials can be loaded."""
    # Imported here: a command that never talks to Kubernetes loads none of its client code.
    from moorage_core.kube import KubeClient

    try:
        return await KubeClient.connect(
            kubeconfig=kubeconfig,
            user_agent=user_agent,
            observer=observer,
            max_connections=max_connections,
        )
    except KubeError as exc:
        raise StartupFailure(
            setting,
            f"cannot load Kubernetes credentials: {exc}",
            hint="point it at a readable kubeconfig, or run in a pod with a service account",
        ) from None


async def wait_for_apiserver(
    kube: KubeClient,
    *,
    timeout: float,
    setting: str,
    credentials_setting: str,
) -> None:
    """Return once the apiserver answers `GET /version`; `StartupFailure` naming `setting`
    when it has not within `timeout` seconds, or naming `credentials_setting` when it refuses
    the credentials. Retries with a doubling pause (up to 2 s) in between."""
    now = time.monotonic
    deadline = now() + timeout
    attempts = 0
    last = ""
    while True:
        attempts += 1
        # The last attempt still gets a moment, however little of the window is left.
        budget = max(deadline - now(), 0.05)
        try:
            async with asyncio.timeout(budget):
                await kube.request(
                    "GET", "/version", verb="get", timeout=min(_PROBE_TIMEOUT, budget)
                )
            return
        except (Unauthorized, Forbidden) as exc:
            raise StartupFailure(
                credentials_setting,
                f"the apiserver at {kube.host} refused the credentials: {exc}",
                hint="renew the kubeconfig's credentials or the service account token",
                exit_code=EXIT_FAILED,
            ) from None
        except (KubeError, TimeoutError) as exc:
            last = str(exc) or type(exc).__name__
        remaining = deadline - now()
        if remaining <= 0:
            raise StartupFailure(
                setting,
                f"the apiserver at {kube.host} did not answer within {timeout:g}s ({last})",
                hint="check that it is up and reachable from here, or raise the setting",
                exit_code=EXIT_FAILED,
            )
        pause = _PROBE_BACKOFF.delay(attempts)
        log.info("apiserver_waiting", host=kube.host, error=last, retry_in_s=round(pause, 2))
        await asyncio.sleep(min(pause, remaining))
