"""Reading a registry's source: a ConfigMap (from the informer's cache) or a git repository.

A git source is fetched with the `git` binary, shallowly, into a temporary directory that is
removed afterwards, the whole operation bounded by a timeout (the process group is killed when
it expires):

    git init; git remote add origin <repository>
    git fetch --depth 1 --no-tags origin <refs/heads/B | refs/tags/T | <commit> | HEAD>
    git checkout --detach <commit>; read <path>

A commit given as an abbreviated hash cannot be fetched by itself; the branches and tags are then
fetched in full and the hash resolved locally.

Before git runs, the repository's host is checked (`moorage_api.sources`): `file://` and hosts
that resolve to the operator's own pod, a link-local or metadata address or the apiserver are
refused unless the platform admin allows local sources, and git is pinned to the addresses checked.

Credentials (`auth`: a user name and a password from a Secret) are passed as an HTTP header
through git's environment configuration (`GIT_CONFIG_COUNT`/`GIT_CONFIG_KEY_0`/
`GIT_CONFIG_VALUE_0` = `http.extraHeader`), never on a command line, in a URL or in a log.
git runs with no system or user configuration, never prompts, and speaks English (its messages
end up in the MCPRegistry's status, with any password in a URL redacted).

Every failure a person has to fix (no git binary, unknown branch, missing file, missing Secret)
is a `SourceError` whose message goes into the status; API errors other than "not found" or
"forbidden" propagate so the reconcile is retried.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ipaddress
import os
import re
import shutil
import signal
import socket
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import structlog

from moorage_api.base import SecretKeySelector
from moorage_api.mcpregistry import ConfigMapSource, GitSource
from moorage_api.sources import (
    ALLOW_LOCAL_SOURCES_SETTING,
    IPAddress,
    SourceHost,
    SourcePolicy,
    literal_address,
    local_source_problem,
    refused_address_reason,
    source_host,
)
from moorage_core.errors import Forbidden, NotFound
from moorage_core.kube import SECRETS, KubeClient
from moorage_operator.planning.mcpregistries.storage import (
    describe_configmap_source,
    describe_git_source,
    redact_url,
)

log = structlog.get_logger(__name__)

MAX_SOURCE_BYTES: Final = 32 * 1024 * 1024
"""Largest source file read; the stored (filtered) registry must still fit in 1 MiB."""
_FULL_HASH: Final = re.compile(r"[0-9a-fA-F]{40}|[0-9a-fA-F]{64}")
_STDERR_LINES: Final = 2
_DEFAULT_PORTS: Final = {"https": 443, "ssh": 22}


class SourceError(Exception):
    """The source cannot be read; the message says why, for the MCPRegistry's status."""


@dataclass(frozen=True, slots=True)
class Fetched:
    """A source document as read."""

    content: bytes
    source: str
    """`sync_metadata.json`'s `source`: where the data came from, down to the commit."""
    origin: str
    """The source in a sentence's words (`ConfigMap "x"`, `git repository ... at abc1234`)."""


# -- ConfigMap ---------------------------------------------------------------------------------


def read_configmap_source(
    configmap: Mapping[str, Any] | None, *, source: ConfigMapSource, namespace: str
) -> Fetched:
    """The registry document in a cached ConfigMap (None: it does not exist)."""
    origin = f'ConfigMap "{source.name}"'
    if configmap is None:
        raise SourceError(f"{origin} not found")
    data = configmap.get("data") or {}
    binary = configmap.get("binaryData") or {}
    if source.key in data:
        content = str(data[source.key]).encode()
    elif source.key in binary:
        try:
            content = base64.b64decode(str(binary[source.key]), validate=True)
        except ValueError:
            raise SourceError(f'{origin} key "{source.key}" is not valid base64') from None
    else:
        raise SourceError(f'{origin} has no key "{source.key}"')
    return Fetched(
        content=content,
        source=describe_configmap_source(namespace=namespace, name=source.name, key=source.key),
        origin=origin,
    )


# -- git ---------------------------------------------------------------------------------------


async def fetch_git_password(kube: KubeClient, *, namespace: str, ref: SecretKeySelector) -> str:
    """The password (or token) a git source's `auth.passwordSecretRef` names."""
    try:
        secret = await kube.get(SECRETS, name=ref.name, namespace=namespace)
    except NotFound:
        raise SourceError(f'Secret "{ref.name}" not found') from None
    except Forbidden as exc:
        raise SourceError(f'Secret "{ref.name}" cannot be read: {exc.message}') from None
    encoded = (secret.get("data") or {}).get(ref.key)
    if encoded is None:
        raise SourceError(f'Secret "{ref.name}" has no key "{ref.key}"')
    try:
        return base64.b64decode(str(encoded), validate=True).decode("utf-8").strip("\r\n")
    except ValueError:
        raise SourceError(f'Secret "{ref.name}" key "{ref.key}" is not UTF-8 text') from None


@dataclass(frozen=True, slots=True)
class Pin:
    """The addresses git must connect to for `host`: the ones `check_source_host` checked."""

    host: SourceHost
    addresses: tuple[IPAddress, ...]
    """Non-empty."""


def git_environment(
    *,
    home: Path,
    username: str | None = None,
    password: str | None = None,
    allow_local: bool = False,
    pin: Pin | None = None,
) -> dict[str, str]:
    """The environment git runs with: isolated, non-interactive, credentials in config vars.

    Unless `allow_local`: only https and ssh (`GIT_ALLOW_PROTOCOL`, so no `file://` and no
    `ext::`), no HTTP redirects (a redirect could lead anywhere), and the connection pinned to
    the checked addresses (`pin`): curl's resolve list for https, ssh's `HostName` for ssh, so a
    second DNS answer cannot differ from the one checked.
    """
    ssh = "ssh -o BatchMode=yes"
    config: list[tuple[str, str]] = []
    if password is not None:
        token = base64.b64encode(f"{username or ''}:{password}".encode()).decode()
        config.append(("http.extraHeader", f"Authorization: Basic {token}"))
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "LC_ALL": "C",
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
    }
    if not allow_local:
        env["GIT_ALLOW_PROTOCOL"] = "https:ssh"
        config.append(("http.followRedirects", "false"))
    if pin is not None and pin.host.scheme == "https":
        addresses = ",".join(
            f"[{a}]" if isinstance(a, ipaddress.IPv6Address) else str(a) for a in pin.addresses
        )
        config.append(
            ("http.curloptResolve", f"{pin.host.host}:{pin.host.port or 443}:{addresses}")
        )
    elif pin is not None:
        # Connect to the checked address; keep the host key under the name the user gave.
        ssh += f" -o HostName={pin.addresses[0]} -o HostKeyAlias={pin.host.host}"
    env["GIT_SSH_COMMAND"] = ssh
    if config:
        env["GIT_CONFIG_COUNT"] = str(len(config))
        for index, (key, value) in enumerate(config):
            env[f"GIT_CONFIG_KEY_{index}"] = key
            env[f"GIT_CONFIG_VALUE_{index}"] = value
    return env


async def resolve_host(host: str, *, port: int) -> tuple[IPAddress, ...]:
    """Every address `host` resolves to (a literal address is itself); `SourceError` if none."""
    literal = literal_address(host)
    if literal is not None:
        return (literal,)
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise SourceError(f"cannot resolve host {host}: {exc.strerror or exc}") from None
    found = dict.fromkeys(ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos)
    if not found:
        raise SourceError(f"cannot resolve host {host}: no addresses")
    return tuple(found)


async def check_source_host(repository: str, *, policy: SourcePolicy) -> Pin | None:
    """Refuse a repository on the operator's own host or a metadata service (`SourceError`);
    the addresses git may use, or None when there is nothing to pin (local sources allowed)."""
    if policy.allow_local:
        return None
    problem = local_source_problem(repository, apiserver=policy.apiserver_addresses)
    if problem is not None:
        raise SourceError(problem)
    where = source_host(repository)
    if where is None:
        raise SourceError(
            f"{redact_url(repository)} names no host: use an https:// or ssh:// repository"
        )
    addresses = await resolve_host(where.host, port=where.port or _DEFAULT_PORTS[where.scheme])
    for address in addresses:
        reason = refused_address_reason(address, apiserver=policy.apiserver_addresses)
        if reason is not None:
            raise SourceError(
                f"host {where.host} resolves to {address}, {reason}: the operator does not "
                f"fetch from there (a platform admin can allow it with "
                f"{ALLOW_LOCAL_SOURCES_SETTING}=true)"
            )
    return Pin(host=where, addresses=addresses)


def _describe_ref(source: GitSource) -> str:
    if source.branch:
        return f"branch {source.branch}"
    if source.tag:
        return f"tag {source.tag}"
    if source.commit:
        return f"commit {source.commit}"
    return "the default branch"


def _git_message(stderr: bytes) -> str:
    """The first lines git printed (the specific complaint; general advice follows), without
    its `fatal:` prefixes and with URLs redacted."""
    lines = [
        line.strip().removeprefix("fatal: ").removeprefix("error: ")
        for line in stderr.decode(errors="replace").splitlines()
        if line.strip()
    ]
    text = "; ".join(lines[:_STDERR_LINES]) or "no message"
    return re.sub(r"[a-z][a-z0-9+.-]*://\S+", lambda m: redact_url(m.group(0)), text)


class _GitFailed(Exception):
    """One git command failed; the message is git's, cleaned."""


def _explain(message: str, *, has_auth: bool) -> str:
    """git's message, with what to do when the server refused the credentials."""
    if "could not read Username" in message or "Authentication failed" in message:
        if has_auth:
            return "authentication failed: check auth.username and the password Secret"
        return "the repository asks for credentials: set auth"
    return message


def _kill(proc: asyncio.subprocess.Process) -> None:
    # git forks helpers (remote-https, ssh); they share its new session's process group.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


async def _git(args: Sequence[str], *, cwd: Path, env: Mapping[str, str]) -> bytes:
    """Run `git args...`; its stdout, or `_GitFailed` with its stderr."""
    proc = await asyncio.create_subprocess_exec(
        "git",
        *args,
        cwd=cwd,
        env=dict(env),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,
    )
    try:
        stdout, stderr = await proc.communicate()
    except BaseException:
        _kill(proc)
        await proc.wait()
        raise
    if proc.returncode != 0:
        raise _GitFailed(_git_message(stderr))
    return stdout


def _read_file(worktree: Path, path: str) -> bytes:
    """The file at `path` in the checkout, refusing anything outside it."""
    root = worktree.resolve()
    target = (worktree / path).resolve()
    if (
        not target.is_relative_to(root)
        or target == root
        or ".git" in target.relative_to(root).parts
    ):
        raise SourceError(f"path {path!r} is outside the repository's files")
    if not target.is_file():
        raise SourceError(f"{path} not found in the repository")
    size = target.stat().st_size
    if size > MAX_SOURCE_BYTES:
        raise SourceError(f"{path} is {size} bytes, more than the {MAX_SOURCE_BYTES} read")
    return target.read_bytes()


async def _checkout(source: GitSource, *, repo: Path, env: Mapping[str, str]) -> str:
    """Fetch the wanted ref into `repo` and check it out; the commit's full hash."""
    await _git(["init", "-q", str(repo)], cwd=repo.parent, env=env)
    await _git(["remote", "add", "origin", source.repository], cwd=repo, env=env)
    if source.commit and _FULL_HASH.fullmatch(source.commit) is None:
        # An abbreviated hash is not a ref a server resolves: fetch everything, resolve here.
        await _git(
            [
                "fetch",
                "-q",
                "origin",
                "+refs/heads/*:refs/remotes/origin/*",
                "+refs/tags/*:refs/tags/*",
            ],
            cwd=repo,
            env=env,
        )
        wanted = f"{source.commit}^{{commit}}"
    else:
        if source.branch:
            ref = f"refs/heads/{source.branch}"
        elif source.tag:
            ref = f"refs/tags/{source.tag}"
        else:
            ref = source.commit or "HEAD"
        await _git(["fetch", "-q", "--depth", "1", "--no-tags", "origin", ref], cwd=repo, env=env)
        wanted = "FETCH_HEAD^{commit}"
    commit = (await _git(["rev-parse", "--verify", wanted], cwd=repo, env=env)).decode().strip()
    await _git(
        ["-c", "advice.detachedHead=false", "checkout", "-q", "--detach", commit],
        cwd=repo,
        env=env,
    )
    return commit


async def fetch_git(
    source: GitSource,
    *,
    password: str | None,
    timeout: float,
    policy: SourcePolicy,
    tmp_root: Path | None = None,
) -> Fetched:
    """Fetch `source.path` from `source.repository` at the wanted ref (see the module), if
    `policy` lets the operator reach it."""
    repository = redact_url(source.repository)
    where = f"git repository {repository} ({_describe_ref(source)})"
    if shutil.which("git") is None:
        raise SourceError(
            "git is not installed: the operator needs the git binary on its PATH to sync "
            "git sources"
        )
    if password is not None and not source.repository.startswith("https://"):
        raise SourceError(
            "auth: a user name and password work with https:// repositories only "
            f"(got {repository})"
        )
    try:
        pin = await check_source_host(source.repository, policy=policy)
    except SourceError as exc:
        raise SourceError(f"{where}: {exc}") from None
    workdir = Path(tempfile.mkdtemp(prefix="moorage-registry-", dir=tmp_root))
    try:
        env = git_environment(
            home=workdir,
            username=source.auth.username if source.auth else None,
            password=password,
            allow_local=policy.allow_local,
            pin=pin,
        )
        repo = workdir / "repo"
        repo.mkdir()
        try:
            async with asyncio.timeout(timeout):
                commit = await _checkout(source, repo=repo, env=env)
        except TimeoutError:
            raise SourceError(f"{where}: no answer within {timeout:g}s") from None
        except _GitFailed as exc:
            raise SourceError(
                f"{where}: {_explain(str(exc), has_auth=password is not None)}"
            ) from None
        try:
            content = await asyncio.to_thread(_read_file, repo, source.path)
        except SourceError as exc:
            raise SourceError(f"{where} at {commit[:12]}: {exc}") from None
    finally:
        await asyncio.to_thread(shutil.rmtree, workdir, ignore_errors=True)
    log.debug("git_fetched", repository=repository, commit=commit, bytes=len(content))
    return Fetched(
        content=content,
        source=describe_git_source(repository=source.repository, commit=commit, path=source.path),
        origin=f"git repository {repository} at {commit[:12]}",
    )
