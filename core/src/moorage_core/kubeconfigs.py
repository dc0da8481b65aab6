"""Kubernetes credentials without the generated API client.

Owns finding and loading credentials the way kubectl does: kubeconfig files (`$KUBECONFIG` merged
by kubectl's rules, client certificates, bearer tokens, token files, basic auth, exec plugins of
`client.authentication.k8s.io/v1` and `v1beta1`) and the in-cluster service account (whose
projected token rotates). The result is a `Credentials`: the server URL, an `ssl.SSLContext` and
the Authorization header to send, refreshed as tokens rotate or exec credentials expire.

It must not import `kubernetes_asyncio`: importing any part of it loads the whole generated client
(~80 MiB of memory) and we only ever needed its credential loading. What this module does not
support (the legacy `auth-provider` plugins) raises `UnsupportedCredentials`, and
`moorage_core.kube` falls back to `kubernetes_asyncio` for that case alone. It makes no requests to
the apiserver; every problem with a kubeconfig is a `KubeError` naming the file and the key.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import datetime as dt
import json
import os
import ssl
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Protocol

import structlog
import yaml

from moorage_core.errors import KubeError

log = structlog.get_logger(__name__)

SERVICE_ACCOUNT_DIR: Final = Path("/var/run/secrets/kubernetes.io/serviceaccount")
DEFAULT_KUBECONFIG: Final = Path("~/.kube/config")
EXEC_API_VERSIONS: Final = (
    "client.authentication.k8s.io/v1",
    "client.authentication.k8s.io/v1beta1",
)
# A rotated token file is noticed by its changed mtime; re-reading at least this often also
# catches a replacement that kept the mtime (and costs one small read a minute).
TOKEN_FILE_MAX_AGE: Final = 60.0
# An exec plugin that has not answered in this long is treated as failed rather than hanging
# every request behind it.
EXEC_TIMEOUT: Final = 60.0
# Exec credentials are renewed this long before they expire so a request never carries a token
# that expires in flight.
EXEC_EXPIRY_MARGIN: Final = 10.0


class UnsupportedCredentials(KubeError):
    """The kubeconfig asks for an authentication method this module does not implement."""


# -- reading and merging kubeconfig files --------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Named:
    """One named entry (cluster, user or context) and the file it came from."""

    source: Path
    body: Mapping[str, Any]
    """The entry's inner mapping (`cluster:`, `user:` or `context:`); possibly empty."""


@dataclass(frozen=True, slots=True)
class Kubeconfig:
    """Kubeconfig files merged by kubectl's rules: the first file to name an entry wins."""

    clusters: Mapping[str, Named]
    users: Mapping[str, Named]
    contexts: Mapping[str, Named]
    current_context: str
    """Empty when no file sets one."""
    current_context_source: Path | None
    sources: tuple[Path, ...]
    """Every file that was read, in order (for error messages)."""


def parse_kubeconfig_document(text: str, *, source: Path) -> Mapping[str, Any]:
    """The top-level mapping of one kubeconfig file; empty for an empty file."""
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise KubeError(f"{source}: not valid YAML: {exc}") from exc
    except (ValueError, TypeError, RecursionError) as exc:
        # The YAML loader raises these for some malformed scalars (dates, huge ints).
        raise KubeError(f"{source}: not valid YAML: {exc}") from exc
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise KubeError(f"{source}: a kubeconfig must be a mapping, not {type(doc).__name__}")
    return doc


def merge_kubeconfigs(documents: Sequence[tuple[Path, Mapping[str, Any]]]) -> Kubeconfig:
    """Merge parsed kubeconfig files in order; the first occurrence of each name wins, and so
    does the first non-empty `current-context`."""
    sections: dict[str, dict[str, Named]] = {"clusters": {}, "users": {}, "contexts": {}}
    inner = {"clusters": "cluster", "users": "user", "contexts": "context"}
    current = ""
    current_source: Path | None = None
    for source, doc in documents:
        for section, entries in sections.items():
            raw = doc.get(section)
            if raw is None:
                continue
            if not isinstance(raw, list):
                raise KubeError(f"{source}: `{section}` must be a list")
            for index, item in enumerate(raw):
                where = f"{source}: {section}[{index}]"
                if not isinstance(item, dict):
                    raise KubeError(f"{where} must be a mapping with `name` and `{inner[section]}`")
                name = item.get("name")
                if not isinstance(name, str) or not name:
                    raise KubeError(f"{where}: `name` is missing or not a string")
                body = item.get(inner[section])
                if body is None:
                    body = {}
                if not isinstance(body, dict):
                    raise KubeError(f"{where} ({name}): `{inner[section]}` must be a mapping")
                entries.setdefault(name, Named(source=source, body=body))
        ctx = doc.get("current-context")
        if ctx is not None and not isinstance(ctx, str):
            raise KubeError(f"{source}: `current-context` must be a string")
        if ctx and not current:
            current, current_source = ctx, source
    return Kubeconfig(
        clusters=sections["clusters"],
        users=sections["users"],
        contexts=sections["contexts"],
        current_context=current,
        current_context_source=current_source,
        sources=tuple(source for source, _ in documents),
    )


def kubeconfig_paths(explicit: str | None, *, environ: Mapping[str, str]) -> list[Path]:
    """The files to read: the explicit one, else `$KUBECONFIG`'s list, else `~/.kube/config`."""
    if explicit:
        return [Path(explicit).expanduser()]
    listed = environ.get("KUBECONFIG", "")
    if listed:
        seen: list[Path] = []
        for part in listed.split(os.pathsep):
            if part and Path(part).expanduser() not in seen:
                seen.append(Path(part).expanduser())
        return seen
    return [DEFAULT_KUBECONFIG.expanduser()]


def read_kubeconfig(paths: Sequence[Path], *, explicit: bool) -> Kubeconfig:
    """Read and merge `paths`. Files of a `$KUBECONFIG` list that do not exist are skipped, as
    kubectl does; an explicit file that does not exist is an error."""
    documents: list[tuple[Path, Mapping[str, Any]]] = []
    for path in paths:
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            if explicit:
                raise KubeError(f"kubeconfig {path} does not exist") from None
            continue
        except (OSError, UnicodeDecodeError) as exc:
            raise KubeError(f"kubeconfig {path} cannot be read: {exc}") from exc
        documents.append((path, parse_kubeconfig_document(text, source=path)))
    if not documents:
        names = ", ".join(str(p) for p in paths)
        raise KubeError(f"no kubeconfig found (looked for {names})")
    return merge_kubeconfigs(documents)


# -- resolving a context -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TLSSettings:
    """How to verify the server and which client certificate to present.

    At most one of each `*_file`/`*_data` pair is set; data is PEM bytes.
    """

    ca_file: Path | None = None
    ca_data: bytes | None = None
    insecure: bool = False
    server_name: str | None = None
    cert_file: Path | None = None
    cert_data: bytes | None = None
    key_file: Path | None = None
    key_data: bytes | None = None


@dataclass(frozen=True, slots=True)
class ExecSettings:
    """An exec credential plugin as the kubeconfig describes it."""

    command: str
    args: tuple[str, ...]
    env: tuple[tuple[str, str], ...]
    api_version: str
    provide_cluster_info: bool
    source: Path
    """The kubeconfig file that named the plugin (for error messages)."""
    user: str


@dataclass(frozen=True, slots=True)
class ResolvedContext:
    """Everything a context says about reaching and authenticating to its cluster."""

    server: str
    tls: TLSSettings
    token: str | None = None
    token_file: Path | None = None
    username: str | None = None
    password: str | None = None
    exec: ExecSettings | None = None


def _string(body: Mapping[str, Any], key: str, *, where: str) -> str | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise KubeError(f"{where}: `{key}` must be a string, not {type(value).__name__}")
    return value


def _path(body: Mapping[str, Any], key: str, *, where: str, base: Path) -> Path | None:
    value = _string(body, key, where=where)
    if not value:
        return None
    # kubectl resolves relative paths against the folder of the file that holds them.
    return (base / Path(value).expanduser()).resolve()


def _data(body: Mapping[str, Any], key: str, *, where: str) -> bytes | None:
    value = _string(body, key, where=where)
    if not value:
        return None
    try:
        return base64.b64decode(value.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError) as exc:
        raise KubeError(f"{where}: `{key}` is not valid base64: {exc}") from exc


def _exec_settings(raw: Any, *, where: str, source: Path, user: str) -> ExecSettings:
    if not isinstance(raw, dict):
        raise KubeError(f"{where}: `exec` must be a mapping")
    where = f"{where}: exec"
    command = _string(raw, "command", where=where)
    if not command:
        raise KubeError(f"{where}: `command` is missing")
    if os.sep in command and not Path(command).is_absolute():
        # A relative command with a separator is relative to the kubeconfig's folder.
        command = str((source.parent / command).resolve())
    api_version = _string(raw, "apiVersion", where=where)
    if api_version not in EXEC_API_VERSIONS:
        raise KubeError(
            f"{where}: `apiVersion` {api_version!r} is not supported "
            f"(use one of {', '.join(EXEC_API_VERSIONS)})"
        )
    args = raw.get("args")
    if args is None:
        args = []
    if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
        raise KubeError(f"{where}: `args` must be a list of strings")
    env_list = raw.get("env")
    if env_list is None:
        env_list = []
    if not isinstance(env_list, list):
        raise KubeError(f"{where}: `env` must be a list of {{name, value}}")
    env: list[tuple[str, str]] = []
    for index, item in enumerate(env_list):
        if not isinstance(item, dict):
            raise KubeError(f"{where}: env[{index}] must be a mapping with `name` and `value`")
        name = _string(item, "name", where=f"{where}: env[{index}]")
        value = _string(item, "value", where=f"{where}: env[{index}]")
        if not name or value is None:
            raise KubeError(f"{where}: env[{index}] needs both `name` and `value`")
        env.append((name, value))
    provide = raw.get("provideClusterInfo", False)
    if not isinstance(provide, bool):
        raise KubeError(f"{where}: `provideClusterInfo` must be true or false")
    return ExecSettings(
        command=command,
        args=tuple(args),
        env=tuple(env),
        api_version=api_version,
        provide_cluster_info=provide,
        source=source,
        user=user,
    )


def resolve_context(config: Kubeconfig, *, context: str | None = None) -> ResolvedContext:
    """The server, TLS settings and credentials of `context` (default: the current context)."""
    files = ", ".join(str(s) for s in config.sources)
    name = context or config.current_context
    if not name:
        raise KubeError(f"no context given and no `current-context` set in {files}")
    ctx = config.contexts.get(name)
    if ctx is None:
        raise KubeError(f"context {name!r} is not defined in {files}")
    where = f"{ctx.source}: context {name!r}"
    cluster_name = _string(ctx.body, "cluster", where=where)
    if not cluster_name:
        raise KubeError(f"{where}: `cluster` is missing")
    cluster = config.clusters.get(cluster_name)
    if cluster is None:
        raise KubeError(f"{where}: cluster {cluster_name!r} is not defined in {files}")
    user_name = _string(ctx.body, "user", where=where) or ""
    user: Named
    if user_name:
        found = config.users.get(user_name)
        if found is None:
            raise KubeError(f"{where}: user {user_name!r} is not defined in {files}")
        user = found
    else:
        user = Named(source=ctx.source, body={})

    cwhere = f"{cluster.source}: cluster {cluster_name!r}"
    cbase = cluster.source.parent
    server = _string(cluster.body, "server", where=cwhere)
    if not server:
        raise KubeError(f"{cwhere}: `server` is missing")
    if not server.startswith(("https://", "http://")):
        raise KubeError(f"{cwhere}: `server` must be an http(s) URL, got {server!r}")
    insecure = cluster.body.get("insecure-skip-tls-verify", False)
    if not isinstance(insecure, bool):
        raise KubeError(f"{cwhere}: `insecure-skip-tls-verify` must be true or false")
    ca_data = _data(cluster.body, "certificate-authority-data", where=cwhere)
    ca_file = (
        None if ca_data else _path(cluster.body, "certificate-authority", where=cwhere, base=cbase)
    )

    uwhere = f"{user.source}: user {user_name!r}"
    ubase = user.source.parent
    if user.body.get("auth-provider") is not None:
        raise UnsupportedCredentials(
            f"{uwhere}: `auth-provider` plugins are not supported natively"
        )
    cert_data = _data(user.body, "client-certificate-data", where=uwhere)
    key_data = _data(user.body, "client-key-data", where=uwhere)
    cert_file = (
        None if cert_data else _path(user.body, "client-certificate", where=uwhere, base=ubase)
    )
    key_file = None if key_data else _path(user.body, "client-key", where=uwhere, base=ubase)
    if bool(cert_data or cert_file) != bool(key_data or key_file):
        raise KubeError(
            f"{uwhere}: a client certificate needs both `client-certificate[-data]` "
            "and `client-key[-data]`"
        )
    username = _string(user.body, "username", where=uwhere)
    password = _string(user.body, "password", where=uwhere)
    if (username is None) != (password is None):
        raise KubeError(f"{uwhere}: basic auth needs both `username` and `password`")
    exec_raw = user.body.get("exec")
    return ResolvedContext(
        server=server.rstrip("/"),
        tls=TLSSettings(
            ca_file=ca_file,
            ca_data=ca_data,
            insecure=insecure,
            server_name=_string(cluster.body, "tls-server-name", where=cwhere) or None,
            cert_file=cert_file,
            cert_data=cert_data,
            key_file=key_file,
            key_data=key_data,
        ),
        token=_string(user.body, "token", where=uwhere) or None,
        token_file=_path(user.body, "tokenFile", where=uwhere, base=ubase),
        username=username,
        password=password,
        exec=None
        if exec_raw is None
        else _exec_settings(exec_raw, where=uwhere, source=user.source, user=user_name),
    )


# -- turning settings into a live TLS context and Authorization header ---------------------------


def load_client_cert(
    ctx: ssl.SSLContext,
    *,
    cert_file: Path | None,
    key_file: Path | None,
    cert_data: bytes | None,
    key_data: bytes | None,
) -> None:
    """Load a client certificate into `ctx`. Data is written to private (0600) temporary files
    that are deleted as soon as OpenSSL has read them: `load_cert_chain` only takes paths."""
    with contextlib.ExitStack() as stack:
        paths: list[str] = []
        for file, data in ((cert_file, cert_data), (key_file, key_data)):
            if data is not None:
                fd, name = tempfile.mkstemp(prefix="moorage-kube-", suffix=".pem")
                stack.callback(os.unlink, name)
                with os.fdopen(fd, "wb") as handle:
                    handle.write(data)
                paths.append(name)
            else:
                assert file is not None
                paths.append(str(file))
        ctx.load_cert_chain(paths[0], keyfile=paths[1])


def build_ssl_context(tls: TLSSettings) -> ssl.SSLContext:
    """An SSLContext that verifies the server as `tls` says and presents its client cert."""
    try:
        if tls.ca_data is not None:
            ctx = ssl.create_default_context(cadata=tls.ca_data.decode("ascii", "replace"))
        else:
            ctx = ssl.create_default_context(cafile=str(tls.ca_file) if tls.ca_file else None)
        if tls.insecure:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        if tls.cert_file or tls.cert_data:
            load_client_cert(
                ctx,
                cert_file=tls.cert_file,
                key_file=tls.key_file,
                cert_data=tls.cert_data,
                key_data=tls.key_data,
            )
    except (ssl.SSLError, OSError) as exc:
        raise KubeError(f"cannot load TLS material for the Kubernetes API: {exc}") from exc
    return ctx


class AuthSource(Protocol):
    """Where the Authorization header comes from."""

    async def headers(self) -> dict[str, str]: ...

    def invalidate(self) -> bool:
        """Forget cached credentials after a 401; True when a retry may now succeed."""
        ...


@dataclass(slots=True)
class StaticAuth:
    """A fixed header: a bearer token, basic auth, or nothing (client certificates only)."""

    header: dict[str, str] = field(default_factory=dict)

    async def headers(self) -> dict[str, str]:
        return dict(self.header)

    def invalidate(self) -> bool:
        return False


class TokenFileAuth:
    """A bearer token read from a file that may be replaced at any time (projected service
    account tokens rotate hourly). Re-read when its mtime changes, and at least every minute."""

    def __init__(self, path: Path, *, clock: Any = time.monotonic) -> None:
        self.path = path
        self._clock = clock
        self._token = ""
        self._mtime_ns = -1
        self._read_at = float("-inf")

    def current(self) -> str:
        try:
            mtime_ns = self.path.stat().st_mtime_ns
            if mtime_ns != self._mtime_ns or self._clock() - self._read_at >= TOKEN_FILE_MAX_AGE:
                token = self.path.read_text(encoding="utf-8").strip()
                self._token, self._mtime_ns, self._read_at = token, mtime_ns, self._clock()
        except (OSError, UnicodeDecodeError) as exc:
            if not self._token:
                raise KubeError(f"token file {self.path} cannot be read: {exc}") from exc
            # Mid-rotation the file can vanish for an instant; the last token is still valid.
            log.warning("token_file_unreadable", path=str(self.path), error=str(exc))
        if not self._token:
            raise KubeError(f"token file {self.path} is empty")
        return self._token

    async def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.current()}"}

    def invalidate(self) -> bool:
        self._read_at = float("-inf")
        return True


@dataclass(frozen=True, slots=True)
class ExecCredential:
    """What an exec plugin answered."""

    token: str | None
    cert_data: bytes | None
    key_data: bytes | None
    expires_at: float | None
    """Wall-clock seconds since the epoch; None when the credential does not expire."""


def parse_exec_credential(
    stdout: bytes, *, api_version: str, command: str, source: Path
) -> ExecCredential:
    """The `status` of an ExecCredential printed by a plugin."""
    where = f"exec plugin {command!r} (from {source})"
    try:
        doc = json.loads(stdout)
    except ValueError as exc:
        raise KubeError(f"{where} printed no ExecCredential JSON: {exc}") from exc
    if not isinstance(doc, dict) or doc.get("kind") != "ExecCredential":
        raise KubeError(f"{where} printed something that is not an ExecCredential")
    if doc.get("apiVersion") != api_version:
        raise KubeError(
            f"{where} answered with apiVersion {doc.get('apiVersion')!r}, expected {api_version!r}"
        )
    status = doc.get("status")
    if not isinstance(status, dict):
        raise KubeError(f"{where}: the ExecCredential has no `status`")
    token = _string(status, "token", where=where) or None
    cert = _string(status, "clientCertificateData", where=where) or None
    key = _string(status, "clientKeyData", where=where) or None
    if bool(cert) != bool(key):
        raise KubeError(f"{where}: `clientCertificateData` and `clientKeyData` come together")
    if not token and not cert:
        raise KubeError(f"{where}: the ExecCredential has neither a token nor a client certificate")
    expires_at: float | None = None
    stamp = _string(status, "expirationTimestamp", where=where)
    if stamp:
        try:
            parsed = dt.datetime.fromisoformat(stamp.replace("Z", "+00:00"))
        except ValueError as exc:
            raise KubeError(f"{where}: `expirationTimestamp` {stamp!r} is not RFC 3339") from exc
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=dt.UTC)
        expires_at = parsed.timestamp()
    return ExecCredential(
        token=token,
        cert_data=cert.encode() if cert else None,
        key_data=key.encode() if key else None,
        expires_at=expires_at,
    )


def build_exec_info(settings: ExecSettings, *, server: str, tls: TLSSettings) -> str:
    """The `KUBERNETES_EXEC_INFO` a plugin reads: never interactive, cluster info on request."""
    spec: dict[str, Any] = {"interactive": False}
    if settings.provide_cluster_info:
        cluster: dict[str, Any] = {"server": server, "insecure-skip-tls-verify": tls.insecure}
        if tls.server_name:
            cluster["tls-server-name"] = tls.server_name
        ca = tls.ca_data
        if ca is None and tls.ca_file is not None:
            with contextlib.suppress(OSError):
                ca = tls.ca_file.read_bytes()
        if ca:
            cluster["certificate-authority-data"] = base64.b64encode(ca).decode()
        spec["cluster"] = cluster
    return json.dumps({"apiVersion": settings.api_version, "kind": "ExecCredential", "spec": spec})


class ExecAuth:
    """Credentials from an exec plugin, cached until they expire (or the server says 401).

    A plugin that returns a client certificate gets it loaded into the client's SSLContext in
    place, so new connections present it.
    """

    def __init__(
        self,
        settings: ExecSettings,
        *,
        server: str,
        tls: TLSSettings,
        clock: Any = time.time,
    ) -> None:
        self.settings = settings
        self._exec_info = build_exec_info(settings, server=server, tls=tls)
        self._clock = clock
        self._current: ExecCredential | None = None
        self._lock = asyncio.Lock()
        self.ssl_context: ssl.SSLContext | None = None
        """Set by `Credentials`: where a returned client certificate is loaded."""
        self.runs = 0
        """How many times the plugin has been run (for logs and tests)."""

    def _fresh(self) -> ExecCredential | None:
        cred = self._current
        if cred is None:
            return None
        if cred.expires_at is not None and self._clock() >= cred.expires_at - EXEC_EXPIRY_MARGIN:
            return None
        return cred

    async def credential(self) -> ExecCredential:
        cred = self._fresh()
        if cred is not None:
            return cred
        async with self._lock:
            cred = self._fresh()
            if cred is None:
                cred = await self._run()
                self._current = cred
                if self.ssl_context is not None:
                    self.install_client_cert(self.ssl_context)
            return cred

    def install_client_cert(self, ctx: ssl.SSLContext) -> None:
        """Load the current credential's client certificate, if it has one, into `ctx`."""
        cred = self._fresh()
        if cred is not None and cred.cert_data is not None:
            try:
                load_client_cert(
                    ctx,
                    cert_file=None,
                    key_file=None,
                    cert_data=cred.cert_data,
                    key_data=cred.key_data,
                )
            except (ssl.SSLError, OSError) as exc:
                s = self.settings
                raise KubeError(
                    f"exec plugin {s.command!r} (from {s.source}) returned a client certificate "
                    f"that cannot be loaded: {exc}"
                ) from exc

    async def _run(self) -> ExecCredential:
        s = self.settings
        where = f"exec plugin {s.command!r} of user {s.user!r} (from {s.source})"
        env = {**os.environ, **dict(s.env), "KUBERNETES_EXEC_INFO": self._exec_info}
        self.runs += 1
        try:
            proc = await asyncio.create_subprocess_exec(
                s.command,
                *s.args,
                env=env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
        except OSError as exc:
            raise KubeError(f"{where} cannot be started: {exc}") from exc
        try:
            stdout, stderr = await asyncio.wait_for(proc.communicate(), EXEC_TIMEOUT)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise KubeError(f"{where} did not answer within {EXEC_TIMEOUT:.0f}s") from None
        if proc.returncode != 0:
            detail = stderr.decode(errors="replace").strip()[-2000:]
            raise KubeError(f"{where} exited with status {proc.returncode}: {detail}")
        cred = parse_exec_credential(
            stdout, api_version=s.api_version, command=s.command, source=s.source
        )
        log.debug("exec_credential_loaded", command=s.command, expires_at=cred.expires_at)
        return cred

    async def headers(self) -> dict[str, str]:
        cred = await self.credential()
        return {"Authorization": f"Bearer {cred.token}"} if cred.token else {}

    def invalidate(self) -> bool:
        self._current = None
        return True


def basic_auth_header(username: str, password: str) -> dict[str, str]:
    raw = base64.b64encode(f"{username}:{password}".encode()).decode()
    return {"Authorization": f"Basic {raw}"}


class Credentials:
    """A server URL, its TLS settings and where the Authorization header comes from.

    `host` may be changed before a client is built from it (tests point it at a relay).
    """

    def __init__(self, *, host: str, tls: TLSSettings, auth: AuthSource) -> None:
        self.host = host
        self.tls = tls
        self.auth = auth

    def ssl_context(self) -> ssl.SSLContext:
        ctx = build_ssl_context(self.tls)
        if isinstance(self.auth, ExecAuth):
            self.auth.ssl_context = ctx
            self.auth.install_client_cert(ctx)
        return ctx

    async def prepare(self) -> None:
        """Run an exec plugin once up front: it may return the client certificate the
        SSLContext needs, and a broken plugin should fail at start-up, not on a first request."""
        if isinstance(self.auth, ExecAuth):
            await self.auth.credential()


def credentials_from_context(resolved: ResolvedContext) -> Credentials:
    """Live credentials for a resolved context. Precedence as in client-go: a client
    certificate goes with any header; among headers a token (or token file) wins over basic
    auth, and an exec plugin applies only when neither is set."""
    auth: AuthSource
    if resolved.token:
        auth = StaticAuth({"Authorization": f"Bearer {resolved.token}"})
    elif resolved.token_file is not None:
        auth = TokenFileAuth(resolved.token_file)
    elif resolved.username is not None and resolved.password is not None:
        auth = StaticAuth(basic_auth_header(resolved.username, resolved.password))
    elif resolved.exec is not None:
        auth = ExecAuth(resolved.exec, server=resolved.server, tls=resolved.tls)
    else:
        auth = StaticAuth()
    return Credentials(host=resolved.server, tls=resolved.tls, auth=auth)


def in_cluster_credentials(
    *, environ: Mapping[str, str], account_dir: Path = SERVICE_ACCOUNT_DIR
) -> Credentials:
    """The pod's service account: `KUBERNETES_SERVICE_HOST`/`_PORT`, its CA and its rotating
    token."""
    host = environ.get("KUBERNETES_SERVICE_HOST", "")
    port = environ.get("KUBERNETES_SERVICE_PORT", "")
    if not host or not port:
        raise KubeError("not in a cluster: KUBERNETES_SERVICE_HOST/PORT are not set")
    token_file = account_dir / "token"
    ca_file = account_dir / "ca.crt"
    for required in (token_file, ca_file):
        if not required.is_file():
            raise KubeError(f"in-cluster credentials: {required} does not exist")
    auth = TokenFileAuth(token_file)
    auth.current()  # fail now, not on the first request, if the token is unreadable
    # An IPv6 service address needs brackets in a URL.
    netloc = f"[{host}]" if ":" in host else host
    return Credentials(host=f"https://{netloc}:{port}", tls=TLSSettings(ca_file=ca_file), auth=auth)


def is_in_cluster(*, environ: Mapping[str, str], account_dir: Path = SERVICE_ACCOUNT_DIR) -> bool:
    return bool(environ.get("KUBERNETES_SERVICE_HOST")) and (account_dir / "token").exists()


def in_cluster_namespace(*, account_dir: Path = SERVICE_ACCOUNT_DIR) -> str | None:
    """The pod's namespace, when running in a cluster."""
    try:
        return (account_dir / "namespace").read_text(encoding="utf-8").strip() or None
    except OSError:
        return None
