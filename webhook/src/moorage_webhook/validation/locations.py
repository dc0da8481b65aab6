"""Where things are fetched from: git repositories and refs, and HTTPS endpoints (OIDC).

Pure: no I/O, no DNS. Each `*_problem` function returns None for an acceptable value or a sentence
saying what is expected. Git ref names follow `git check-ref-format`; repositories take the forms
the registry sync can clone (`https://`, `ssh://`, `git@host:path`, `file:///path`).
"""

from __future__ import annotations

import ipaddress
import re
from typing import Final
from urllib.parse import SplitResult, urlsplit

from moorage_webhook.validation.verdict import quoted

LOCAL_HOSTS: Final = frozenset({"localhost", "127.0.0.1", "::1"})
_SCP_LIKE: Final = re.compile(
    r"git@(?P<host>[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?):(?P<path>.+)"
)
_COMMIT: Final = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}", re.ASCII)
_REF_FORBIDDEN: Final = frozenset(" ~^:?*[\\\x7f")


def _split(url: str) -> SplitResult | None:
    try:
        parts = urlsplit(url)
        _ = parts.port  # raises on a non-numeric or out-of-range port
    except ValueError:
        return None
    return parts


def _has_space(text: str) -> bool:
    return any(c.isspace() or ord(c) < 0x20 for c in text)


def git_repository_problem(url: str) -> str | None:
    expected = "expected https://host/path, ssh://[user@]host/path, git@host:path or file:///path"
    if not url:
        return f"must not be empty ({expected})"
    if _has_space(url):
        return "must not contain whitespace"
    if url.startswith("git@"):
        match = _SCP_LIKE.fullmatch(url)
        if match is None:
            return f"{quoted(url)} is not a valid git@host:path address"
        return None
    scheme = url.partition("://")[0].lower() if "://" in url else ""
    if scheme == "http":
        return (
            f"{quoted(url)} uses plain http; use https:// so the repository cannot be tampered with"
        )
    if scheme not in {"https", "ssh", "file"}:
        return f"{quoted(url)} is not a supported repository URL ({expected})"
    parts = _split(url)
    if parts is None:
        return f"{quoted(url)} is not a valid URL (check the port)"
    if scheme == "file":
        if parts.netloc or not parts.path.startswith("/"):
            return f"{quoted(url)}: a file URL needs an absolute path (file:///path/to/repo)"
        return None
    if not parts.hostname:
        return f"{quoted(url)} has no host"
    if not parts.path.strip("/"):
        return f"{quoted(url)} has no repository path"
    if parts.query or parts.fragment:
        return f"{quoted(url)} must not have a query or fragment"
    return None


def has_url_password(url: str) -> bool:
    parts = _split(url)
    return parts is not None and parts.password is not None


def git_ref_problem(ref: str) -> str | None:
    """`git check-ref-format --allow-onelevel` for a branch or tag name."""
    if not ref:
        return "must not be empty"
    if any(c in _REF_FORBIDDEN or ord(c) < 0x20 for c in ref):
        return (
            f"{quoted(ref)} is not a valid git ref name (no spaces, control characters or any of "
            "~ ^ : ? * [ \\)"
        )
    if ref == "@" or "@{" in ref or ".." in ref:
        return f"{quoted(ref)} is not a valid git ref name (no '..', '@{{' or a lone '@')"
    if ref.startswith("/") or ref.endswith("/") or "//" in ref or ref.endswith("."):
        return f"{quoted(ref)} is not a valid git ref name (no leading, trailing or double '/')"
    for component in ref.split("/"):
        if component.startswith(".") or component.endswith(".lock"):
            return (
                f"{quoted(ref)} is not a valid git ref name (no component may start with '.' or end "
                "with '.lock')"
            )
    return None


def git_commit_problem(commit: str) -> str | None:
    if _COMMIT.fullmatch(commit) is None:
        return (
            f"{quoted(commit)} must be a full commit SHA (40 lowercase hex digits, or 64 for "
            "SHA-256 repositories); abbreviated SHAs cannot be fetched by id"
        )
    return None


def _is_local(host: str) -> bool:
    if host in LOCAL_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host.endswith(".localhost")


def https_url_problem(url: str, *, what: str) -> str | None:
    """An https URL with a host and no fragment; http only for loopback (local development)."""
    if not url:
        return "must not be empty"
    if _has_space(url):
        return "must not contain whitespace"
    parts = _split(url)
    if parts is None or parts.scheme.lower() not in {"https", "http"}:
        return f"{quoted(url)} is not a valid {what}: expected an https:// URL"
    if not parts.hostname:
        return f"{quoted(url)} is not a valid {what}: it has no host"
    if parts.scheme.lower() == "http" and not _is_local(parts.hostname):
        return (
            f"{quoted(url)} is not a valid {what}: it must use https:// (http is only accepted for "
            "localhost)"
        )
    if parts.fragment:
        return f"{quoted(url)} is not a valid {what}: it must not have a #fragment"
    if parts.username or parts.password:
        return f"{quoted(url)} is not a valid {what}: it must not carry credentials"
    return None
