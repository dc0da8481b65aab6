"""The operator's checks before it runs git: by default `file://` and hosts that resolve to its
own pod or a metadata service are refused (every resolved address counts), and git is pinned to
the addresses checked; REGISTRY_ALLOW_LOCAL_SOURCES lifts the restriction."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from pathlib import Path
from typing import Any

import pytest
from testkit.gitrepos import GitRepo

from moorage_api.mcpregistry import GitSource
from moorage_api.sources import SourceHost, SourcePolicy
from moorage_core.settings import SettingError
from moorage_operator.reconcilers.fetching import (
    Pin,
    SourceError,
    check_source_host,
    fetch_git,
    git_environment,
)
from moorage_operator.registrysettings import RegistrySettings

STRICT = SourcePolicy()


@pytest.fixture
def repo(tmp_path: Path) -> GitRepo:
    r = GitRepo(tmp_path / "origin")
    r.commit({"registry.json": "{}"})
    return r


async def test_a_file_repository_is_refused_by_default_and_fetched_when_allowed(
    repo: GitRepo,
) -> None:
    source = GitSource(repository=repo.url)
    with pytest.raises(SourceError) as caught:
        await fetch_git(source, password=None, timeout=30, policy=STRICT)
    assert str(caught.value).startswith(f"git repository {repo.url} (the default branch): ")
    assert "file:// reads the operator's own filesystem" in str(caught.value)
    allowed = await fetch_git(
        source, password=None, timeout=30, policy=SourcePolicy(allow_local=True)
    )
    assert allowed.content == b"{}"


async def test_localhost_is_refused_before_anything_connects() -> None:
    accepted: list[object] = []
    server = await asyncio.start_server(lambda r, w: accepted.append(w), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        with pytest.raises(SourceError, match="host localhost is a loopback address"):
            await fetch_git(
                GitSource(repository=f"https://localhost:{port}/r.git"),
                password=None,
                timeout=30,
                policy=STRICT,
            )
    finally:
        server.close()
    assert accepted == [], "git never connected"


def _loopback_name() -> str | None:
    """This machine's host name when it resolves to loopback (as /etc/hosts often says)."""
    name = socket.gethostname()
    try:
        infos = socket.getaddrinfo(name, 443, type=socket.SOCK_STREAM)
    except OSError:
        return None
    if all(ipaddress.ip_address(info[4][0]).is_loopback for info in infos):
        return name
    return None


async def test_a_name_that_resolves_to_loopback_is_refused() -> None:
    name = _loopback_name()
    if name is None:
        pytest.skip("this machine's name does not resolve to loopback")
    with pytest.raises(SourceError, match=rf"host {name} resolves to .*, a loopback address"):
        await check_source_host(f"https://{name}/r.git", policy=STRICT)


def fake_dns(monkeypatch: pytest.MonkeyPatch, *addresses: str) -> None:
    """Answer every lookup with `addresses` (the resolver is the machine's, not ours to test)."""

    async def getaddrinfo(host: str, port: int, **_: Any) -> list[Any]:
        family = {4: socket.AF_INET, 6: socket.AF_INET6}
        return [
            (family[ipaddress.ip_address(a).version], socket.SOCK_STREAM, 6, "", (a, port))
            for a in addresses
        ]

    loop = asyncio.get_running_loop()
    monkeypatch.setattr(loop, "getaddrinfo", getaddrinfo)


@pytest.mark.parametrize(
    ("addresses", "fragment"),
    [
        (("140.82.121.3", "127.0.0.1"), "resolves to 127.0.0.1, a loopback address"),
        (("169.254.169.254",), "a cloud metadata service"),
        (("2606:50c0::1", "fe80::1"), "a link-local address"),
        (("10.96.0.1",), "the cluster's apiserver"),
    ],
    ids=["one-of-several", "metadata", "ipv6-link-local", "apiserver"],
)
async def test_every_resolved_address_is_checked(
    monkeypatch: pytest.MonkeyPatch, addresses: tuple[str, ...], fragment: str
) -> None:
    fake_dns(monkeypatch, *addresses)
    policy = SourcePolicy(apiserver_addresses=frozenset({ipaddress.ip_address("10.96.0.1")}))
    with pytest.raises(SourceError, match=fragment):
        await check_source_host("https://git.example.com/r.git", policy=policy)


async def test_a_remote_host_is_pinned_to_the_addresses_checked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake_dns(monkeypatch, "10.1.2.3", "fd12::3")
    pin = await check_source_host("https://git.corp.example:8443/r.git", policy=STRICT)
    assert pin == Pin(
        host=SourceHost("https", "git.corp.example", 8443),
        addresses=(ipaddress.ip_address("10.1.2.3"), ipaddress.ip_address("fd12::3")),
    )


async def test_a_host_that_does_not_resolve_is_a_source_error() -> None:
    with pytest.raises(SourceError, match=r"cannot resolve host nothing\.invalid"):
        await check_source_host("https://nothing.invalid/r.git", policy=STRICT)


def test_git_connects_only_to_the_pinned_addresses(tmp_path: Path) -> None:
    https = Pin(
        SourceHost("https", "git.corp.example", None),
        (ipaddress.ip_address("10.1.2.3"), ipaddress.ip_address("fd12::3")),
    )
    env = git_environment(home=tmp_path, pin=https)
    config = {
        env[f"GIT_CONFIG_KEY_{i}"]: env[f"GIT_CONFIG_VALUE_{i}"]
        for i in range(int(env["GIT_CONFIG_COUNT"]))
    }
    assert config == {
        "http.followRedirects": "false",
        "http.curloptResolve": "git.corp.example:443:10.1.2.3,[fd12::3]",
    }
    assert env["GIT_ALLOW_PROTOCOL"] == "https:ssh"
    ssh = Pin(SourceHost("ssh", "git.corp.example", None), (ipaddress.ip_address("10.1.2.3"),))
    assert git_environment(home=tmp_path, pin=ssh)["GIT_SSH_COMMAND"] == (
        "ssh -o BatchMode=yes -o HostName=10.1.2.3 -o HostKeyAlias=git.corp.example"
    )
    assert "GIT_ALLOW_PROTOCOL" not in git_environment(home=tmp_path, allow_local=True)


@pytest.mark.parametrize(
    ("environ", "policy"),
    [
        ({}, SourcePolicy()),
        ({"REGISTRY_ALLOW_LOCAL_SOURCES": "true"}, SourcePolicy(allow_local=True)),
        (
            {"KUBERNETES_SERVICE_HOST": "10.96.0.1"},
            SourcePolicy(apiserver_addresses=frozenset({ipaddress.ip_address("10.96.0.1")})),
        ),
    ],
    ids=["default", "opt-in", "apiserver"],
)
def test_the_source_policy_comes_from_the_environment(
    environ: dict[str, str], policy: SourcePolicy
) -> None:
    assert RegistrySettings.from_env(api_image="x", environ=environ).source_policy == policy


def test_an_unreadable_opt_in_is_refused_naming_the_setting() -> None:
    with pytest.raises(SettingError, match="REGISTRY_ALLOW_LOCAL_SOURCES"):
        RegistrySettings.from_env(api_image="x", environ={"REGISTRY_ALLOW_LOCAL_SOURCES": "maybe"})


def _own_address() -> str | None:
    """This machine's address on its default route (no packet is sent), or None."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.254", 9))
        except OSError:
            return None
        address = str(probe.getsockname()[0])
    return None if ipaddress.ip_address(address).is_loopback else address


async def test_git_connects_to_the_checked_address_not_a_second_lookup(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    address = _own_address()
    if address is None:
        pytest.skip("no address besides loopback")
    connections: list[asyncio.StreamWriter] = []

    async def accept(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(writer)
        writer.close()

    server = await asyncio.start_server(accept, address, 0)
    port = server.sockets[0].getsockname()[1]
    # Only the operator's own lookup knows this name; git's would fail to resolve it.
    fake_dns(monkeypatch, address)
    try:
        with pytest.raises(SourceError) as caught:
            await fetch_git(
                GitSource(repository=f"https://git.pinned.test:{port}/r.git"),
                password=None,
                timeout=30,
                policy=STRICT,
            )
    finally:
        server.close()
    assert "resolve" not in str(caught.value)
    assert len(connections) == 1
