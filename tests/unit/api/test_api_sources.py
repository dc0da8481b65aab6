"""Which git repository URLs reach the operator's own files or host, from their text alone."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from moorage_api.sources import (
    SourceHost,
    local_source_problem,
    refused_address_reason,
    source_host,
)

APISERVER = ipaddress.ip_address("10.96.0.1")


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("file:///srv/registry.git", "file:// reads the operator's own filesystem"),
        ("FILE:///etc", "file:// reads the operator's own filesystem"),
        ("https://localhost/r.git", "host localhost is a loopback address"),
        ("https://git.localhost:8443/r.git", "is a loopback address"),
        ("https://127.0.0.1/r.git", "host 127.0.0.1 is a loopback address"),
        ("https://127.8.9.10:3000/r.git", "loopback"),
        ("https://[::1]/r.git", "host ::1 is a loopback address"),
        ("https://[::ffff:127.0.0.1]/r.git", "loopback"),
        ("ssh://git@127.0.0.1/r.git", "loopback"),
        ("git@127.0.0.1:team/r.git", "loopback"),
        ("git@[::1]:team/r.git", "loopback"),
        ("https://169.254.169.254/latest/meta-data", "a cloud metadata service"),
        ("https://[fd00:ec2::254]/r.git", "a cloud metadata service"),
        ("https://100.100.100.200/r.git", "a cloud metadata service"),
        ("https://169.254.10.1/r.git", "a link-local address"),
        ("https://[fe80::1]/r.git", "a link-local address"),
        ("https://0.0.0.0/r.git", "the unspecified address"),
        ("https://[::]/r.git", "the unspecified address"),
        ("https://224.0.0.1/r.git", "a multicast address"),
        ("https://10.96.0.1/r.git", "the cluster's apiserver"),
    ],
    ids=lambda v: v if (isinstance(v, str) and "://" in v) or "@" in v else None,
)
def test_local_sources_are_refused_saying_why_and_how_to_allow_them(
    url: str, fragment: str
) -> None:
    problem = local_source_problem(url, apiserver={APISERVER})
    assert problem is not None
    assert fragment in problem
    assert "REGISTRY_ALLOW_LOCAL_SOURCES=true" in problem


@pytest.mark.parametrize(
    "url",
    [
        "https://github.com/org/registry.git",
        "https://10.1.2.3/r.git",
        "https://192.168.1.20:8443/r.git",
        "https://[fd12::7]/r.git",
        "ssh://git@git.corp.internal/r.git",
        "git@github.com:org/registry.git",
        "https://kubernetes.default.svc/r.git",
    ],
)
def test_remote_and_private_sources_are_allowed_by_their_text(url: str) -> None:
    assert local_source_problem(url, apiserver={APISERVER}) is None


def test_a_password_in_the_url_is_never_repeated() -> None:
    problem = local_source_problem("https://bot:s3cret@127.0.0.1/r.git")
    assert problem is not None
    assert "s3cret" not in problem


@pytest.mark.parametrize(
    ("url", "host"),
    [
        ("https://Git.Example.com:8443/r", SourceHost("https", "git.example.com", 8443)),
        ("ssh://git@[::1]:2222/r", SourceHost("ssh", "::1", 2222)),
        ("git@github.com:org/r.git", SourceHost("ssh", "github.com", None)),
        ("file:///srv/r", None),
        ("https://host:99999/r", None),
    ],
    ids=["https", "ssh-v6", "scp-like", "file", "bad-port"],
)
def test_the_host_is_read_from_every_url_form(url: str, host: SourceHost | None) -> None:
    assert source_host(url) == host


def test_the_ipv4_form_of_a_mapped_address_decides() -> None:
    mapped = ipaddress.ip_address("::ffff:169.254.169.254")
    assert refused_address_reason(mapped) == "a cloud metadata service"
    assert refused_address_reason(ipaddress.ip_address("::ffff:10.0.0.1")) is None


@given(st.text(max_size=80) | st.from_regex(r"(https|ssh|file)://[^\s]{0,40}", fullmatch=True))
def test_any_text_is_judged_without_error(url: str) -> None:
    problem = local_source_problem(url)
    assert problem is None or "REGISTRY_ALLOW_LOCAL_SOURCES" in problem
