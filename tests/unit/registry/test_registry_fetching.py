"""Reading registry sources: ConfigMaps from the cache, and git repositories with the real git
binary (local `file://` repositories, and an HTTPS server with basic auth on 127.0.0.1)."""

from __future__ import annotations

import asyncio
import base64
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from registry_gitkit import GitHttpsServer
from testkit.gitrepos import GitRepo

from moorage_api.base import SecretKeySelector
from moorage_api.mcpregistry import ConfigMapSource, GitAuth, GitSource
from moorage_api.sources import SourcePolicy
from moorage_operator.reconcilers import fetching
from moorage_operator.reconcilers.fetching import (
    SourceError,
    fetch_git,
    git_environment,
    read_configmap_source,
)

SOURCE = ConfigMapSource(name="data", key="registry.json")


@pytest.mark.parametrize(
    ("configmap", "content"),
    [
        pytest.param({"data": {"registry.json": "{}"}}, b"{}", id="data"),
        pytest.param(
            {"binaryData": {"registry.json": base64.b64encode(b"[1]").decode()}},
            b"[1]",
            id="binary-data",
        ),
    ],
)
def test_reads_a_configmap_key(configmap: dict[str, Any], content: bytes) -> None:
    fetched = read_configmap_source(configmap, source=SOURCE, namespace="ns")
    assert fetched.content == content
    assert fetched.source == "configmap:ns/data#registry.json"
    assert fetched.origin == 'ConfigMap "data"'


@pytest.mark.parametrize(
    ("configmap", "message"),
    [
        pytest.param(None, 'ConfigMap "data" not found', id="missing"),
        pytest.param(
            {"data": {"other": "x"}}, 'ConfigMap "data" has no key "registry.json"', id="key"
        ),
        pytest.param(
            {"binaryData": {"registry.json": "!!"}}, "is not valid base64", id="bad-base64"
        ),
    ],
)
def test_configmap_problems_are_source_errors(
    configmap: dict[str, Any] | None, message: str
) -> None:
    with pytest.raises(SourceError, match=message):
        read_configmap_source(configmap, source=SOURCE, namespace="ns")


# -- git ---------------------------------------------------------------------------------------


@pytest.fixture
def repo(tmp_path: Path) -> GitRepo:
    """main: v1 (tagged v1) then v2; branch `next`: v3."""
    r = GitRepo(tmp_path / "origin")
    r.commit({"registry.json": "v1", "nested/data.json": "n1"})
    r.tag("v1")
    r.commit({"registry.json": "v2"})
    r.git("checkout", "-q", "-b", "next")
    r.commit({"registry.json": "v3"})
    r.git("checkout", "-q", "main")
    return r


LOCAL = SourcePolicy(allow_local=True)
"""These tests fetch from `file://` repositories and servers on 127.0.0.1: the platform admin's
opt-in (`test_registry_sources.py` shows the default refusing them)."""


async def fetch(source: GitSource, *, password: str | None = None, timeout: float = 60.0) -> bytes:
    return (await fetch_git(source, password=password, timeout=timeout, policy=LOCAL)).content


async def test_fetches_the_default_branch(repo: GitRepo) -> None:
    fetched = await fetch_git(
        GitSource(repository=repo.url), password=None, timeout=60, policy=LOCAL
    )
    assert fetched.content == b"v2"
    head = repo.git("rev-parse", "main")
    assert fetched.source == f"git:{repo.url}@{head}#registry.json"
    assert fetched.origin == f"git repository {repo.url} at {head[:12]}"


@pytest.mark.parametrize(
    ("ref", "content"),
    [
        pytest.param({"branch": "main"}, b"v2", id="branch"),
        pytest.param({"branch": "next"}, b"v3", id="other-branch"),
        pytest.param({"tag": "v1"}, b"v1", id="tag"),
    ],
)
async def test_fetches_a_branch_or_tag(repo: GitRepo, ref: dict[str, str], content: bytes) -> None:
    assert await fetch(GitSource(repository=repo.url, **ref)) == content


async def test_fetches_a_commit_by_full_or_abbreviated_hash(repo: GitRepo) -> None:
    first = repo.git("rev-list", "--max-parents=0", "HEAD")
    assert await fetch(GitSource(repository=repo.url, commit=first)) == b"v1"
    assert await fetch(GitSource(repository=repo.url, commit=first[:8])) == b"v1"


async def test_reads_a_nested_path(repo: GitRepo) -> None:
    assert await fetch(GitSource(repository=repo.url, tag="v1", path="nested/data.json")) == b"n1"


async def test_leaves_no_temporary_directory(repo: GitRepo, tmp_path: Path) -> None:
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    await fetch_git(
        GitSource(repository=repo.url), password=None, timeout=60, policy=LOCAL, tmp_root=scratch
    )
    with pytest.raises(SourceError):
        await fetch_git(
            GitSource(repository=repo.url, branch="nope"),
            password=None,
            timeout=60,
            policy=LOCAL,
            tmp_root=scratch,
        )
    assert list(scratch.iterdir()) == []


@pytest.mark.parametrize(
    ("source", "message"),
    [
        pytest.param({"branch": "nope"}, "(branch nope): couldn't find remote ref", id="branch"),
        pytest.param({"tag": "v9"}, "(tag v9): couldn't find remote ref", id="tag"),
        pytest.param(
            {"commit": "0" * 40}, "(commit 0000000000000000000000000000000000000000)", id="commit"
        ),
        pytest.param({"commit": "abcdef1"}, "(commit abcdef1)", id="short-commit"),
        pytest.param(
            {"path": "missing.json"}, "missing.json not found in the repository", id="path"
        ),
        pytest.param({"path": "nested"}, "nested not found in the repository", id="directory"),
        pytest.param({"path": "../outside"}, "outside the repository's files", id="traversal"),
        pytest.param({"path": ".git/config"}, "outside the repository's files", id="git-dir"),
    ],
)
async def test_git_problems_are_source_errors_naming_the_source(
    repo: GitRepo, source: dict[str, str], message: str
) -> None:
    with pytest.raises(SourceError) as caught:
        await fetch(GitSource(repository=repo.url, **source))
    text = str(caught.value)
    assert text.startswith(f"git repository {repo.url} (")
    assert message in text


async def test_a_symlink_out_of_the_repository_is_refused(repo: GitRepo, tmp_path: Path) -> None:
    (tmp_path / "secret").write_text("not for you")
    os.symlink(tmp_path / "secret", repo.path / "link.json")
    repo.git("add", "link.json")
    repo.git("commit", "-q", "-m", "link")
    with pytest.raises(SourceError, match="outside the repository's files"):
        await fetch(GitSource(repository=repo.url, path="link.json"))


async def test_a_missing_repository_is_a_source_error(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="does not appear to be a git repository"):
        await fetch(GitSource(repository=(tmp_path / "none").as_uri()))


async def test_missing_git_binary_says_so(
    repo: GitRepo, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(SourceError, match="git is not installed"):
        await fetch(GitSource(repository=repo.url))


async def test_auth_needs_https(repo: GitRepo) -> None:
    auth = GitAuth(username="u", password_secret_ref=SecretKeySelector(name="s", key="k"))
    with pytest.raises(SourceError, match="https:// repositories only"):
        await fetch(GitSource(repository=repo.url, auth=auth), password="p")


async def test_a_silent_server_times_out() -> None:
    accepted: list[asyncio.StreamWriter] = []

    async def hold(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        with pytest.raises(SourceError, match=r"no answer within 0\.5s"):
            await fetch(GitSource(repository=f"https://127.0.0.1:{port}/r.git"), timeout=0.5)
    finally:
        for writer in accepted:
            writer.close()
        server.close()
        await server.wait_closed()


def test_credentials_go_in_config_variables_not_arguments(tmp_path: Path) -> None:
    env = git_environment(home=tmp_path, username="bot", password="s3cret", allow_local=True)
    token = base64.b64encode(b"bot:s3cret").decode()
    assert env["GIT_CONFIG_COUNT"] == "1"
    assert env["GIT_CONFIG_KEY_0"] == "http.extraHeader"
    assert env["GIT_CONFIG_VALUE_0"] == f"Authorization: Basic {token}"
    assert env["GIT_TERMINAL_PROMPT"] == "0"
    assert "GIT_CONFIG_COUNT" not in git_environment(home=tmp_path, allow_local=True)


# -- HTTPS with basic auth ---------------------------------------------------------------------


@pytest_asyncio.fixture
async def https_server(repo: GitRepo, tmp_path: Path) -> AsyncIterator[GitHttpsServer]:
    root = tmp_path / "served"
    root.mkdir()
    repo.git("clone", "-q", "--bare", str(repo.path), str(root / "registry.git"))
    tls = tmp_path / "tls"
    tls.mkdir()
    server = GitHttpsServer(root, username="bot", password="s3cret", tls_dir=tls)
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
def trust_server(https_server: GitHttpsServer, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Make git trust the test server's self-signed certificate, and log every git command."""
    log = https_server.root / "git-commands.log"
    real = fetching.git_environment

    def environment(**kwargs: Any) -> dict[str, str]:
        env = real(**kwargs)
        env["GIT_SSL_CAINFO"] = str(https_server.cert_file)
        env["GIT_TRACE"] = str(log)
        return env

    monkeypatch.setattr(fetching, "git_environment", environment)
    return log


async def test_basic_auth_from_a_secret_reaches_the_server_and_never_the_command_line(
    https_server: GitHttpsServer, trust_server: Path
) -> None:
    auth = GitAuth(username="bot", password_secret_ref=SecretKeySelector(name="s", key="k"))
    source = GitSource(repository=https_server.url("registry.git"), branch="main", auth=auth)
    assert await fetch(source, password="s3cret") == b"v2"
    assert https_server.expected in https_server.authorizations
    trace = await asyncio.to_thread(trust_server.read_text)
    assert "git fetch" in trace or "'fetch'" in trace
    assert "s3cret" not in trace
    assert base64.b64encode(b"bot:s3cret").decode() not in trace


async def test_a_wrong_password_is_a_source_error_without_the_password(
    https_server: GitHttpsServer, trust_server: Path
) -> None:
    auth = GitAuth(username="bot", password_secret_ref=SecretKeySelector(name="s", key="k"))
    source = GitSource(repository=https_server.url("registry.git"), auth=auth)
    with pytest.raises(SourceError) as caught:
        await fetch(source, password="wrong-password")
    assert str(caught.value).endswith(
        "authentication failed: check auth.username and the password Secret"
    )
    assert "wrong-password" not in str(caught.value)
    with pytest.raises(SourceError, match="the repository asks for credentials: set auth"):
        await fetch(GitSource(repository=https_server.url("registry.git")))
    assert None in https_server.authorizations
