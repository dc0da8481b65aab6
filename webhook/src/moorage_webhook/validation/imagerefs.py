"""Container image references, parsed by the grammar of `distribution/reference`.

Pure: no I/O. The kubelet resolves `spec.image` with `ParseNormalizedNamed`, so this parser accepts
exactly what that function accepts and, unlike a single regular expression, says *why* a reference
is rejected (which component, which rule):

    reference        := name [ ":" tag ] [ "@" digest ]
    name             := [domain "/"] path-component ("/" path-component)*
    domain           := host [":" port]          host := domain-name | "[" ipv6 "]"
    domain-component := [a-zA-Z0-9] | [a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]
    path-component   := [a-z0-9]+ (separator [a-z0-9]+)*     separator := [._] | "__" | "-"+
    tag              := [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}
    digest           := algorithm ":" hex        (sha256/sha384/sha512, lower-case, exact length)

The first component is a registry only when it looks like one: it contains `.` or `:`, is
`localhost`, or has capital letters (which paths cannot have) — and, the registry being optional
in the grammar, when it is a valid host; otherwise it is read as the first path component. A name without a registry means
Docker Hub, where a one-component path is under `library/`; the normalised name must stay within
255 characters.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Final

from moorage_webhook.validation.verdict import quoted

DEFAULT_DOMAIN: Final = "docker.io"
LEGACY_DEFAULT_DOMAIN: Final = "index.docker.io"
OFFICIAL_PREFIX: Final = "library/"
NAME_MAX_LENGTH: Final = 255
TAG_MAX_LENGTH: Final = 128
DIGEST_HEX_LENGTHS: Final = {"sha256": 64, "sha384": 96, "sha512": 128}

_PATH_COMPONENT: Final = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*", re.ASCII)
_DOMAIN_COMPONENT: Final = re.compile(r"[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?", re.ASCII)
_IPV6: Final = re.compile(r"\[[a-fA-F0-9:]+\]", re.ASCII)
_PORT: Final = re.compile(r"[0-9]+", re.ASCII)
_TAG_FIRST: Final = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")
_TAG_REST: Final = _TAG_FIRST | frozenset(".-")
_ALGORITHM: Final = re.compile(r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*", re.ASCII)
_HEX: Final = re.compile(r"[0-9a-fA-F]{32,}", re.ASCII)
_IMAGE_ID: Final = re.compile(r"[a-f0-9]{64}", re.ASCII)

_SEPARATORS_TEXT: Final = "'.', '_', '__' or '-'"


class ImageReferenceError(ValueError):
    """Not an image reference; the message names the part that is wrong and what is expected."""


@dataclass(frozen=True, slots=True)
class ImageReference:
    """A reference split into its parts, as written (no defaults filled in)."""

    domain: str | None
    """Registry host and optional port; None when the reference implies Docker Hub."""
    path: str
    """Repository path inside the registry, as written (`nginx`, `stacklok/mcp/time`)."""
    tag: str | None
    digest: str | None
    """`algorithm:hex`; a reference with a digest is pinned whatever its tag says."""

    def __str__(self) -> str:
        text = f"{self.domain}/{self.path}" if self.domain is not None else self.path
        if self.tag is not None:
            text += f":{self.tag}"
        if self.digest is not None:
            text += f"@{self.digest}"
        return text

    @property
    def normalized_name(self) -> str:
        """The fully qualified repository name the kubelet pulls (`docker.io/library/nginx`)."""
        domain = self.domain
        if domain is None or domain == LEGACY_DEFAULT_DOMAIN:
            domain = DEFAULT_DOMAIN
        path = self.path
        if domain == DEFAULT_DOMAIN and "/" not in path:
            path = OFFICIAL_PREFIX + path
        return f"{domain}/{path}"

    @property
    def is_pinned(self) -> bool:
        return self.digest is not None


def _looks_like_domain(first: str) -> bool:
    return "." in first or ":" in first or first == "localhost" or first.lower() != first


def _check_domain(domain: str) -> None:
    host, port = domain, None
    if domain.startswith("["):
        end = domain.find("]")
        if end < 0 or _IPV6.fullmatch(domain[: end + 1]) is None:
            raise ImageReferenceError(
                f"registry {quoted(domain)} is not a valid host (an IPv6 address goes in brackets)"
            )
        host, rest = domain[: end + 1], domain[end + 1 :]
        if rest:
            if not rest.startswith(":"):
                raise ImageReferenceError(f"registry {quoted(domain)}: expected ':port' after ']'")
            port = rest[1:]
    elif ":" in domain:
        host, _, port = domain.partition(":")
    if not host.startswith("["):
        for component in host.split("."):
            if _DOMAIN_COMPONENT.fullmatch(component) is None:
                raise ImageReferenceError(
                    f"registry host {quoted(host)} is not a valid host name "
                    "(letters, digits and inner '-' in dot-separated labels)"
                )
    if port is not None and _PORT.fullmatch(port) is None:
        raise ImageReferenceError(f"registry port {quoted(port)} must be a number")


def _check_path(path: str) -> None:
    if path.lower() != path:
        raise ImageReferenceError(f"repository {quoted(path)} must be lowercase")
    for component in path.split("/"):
        if not component:
            raise ImageReferenceError(
                f"repository {quoted(path)} has an empty path component (a '//' or a leading or "
                "trailing '/')"
            )
        if _PATH_COMPONENT.fullmatch(component) is None:
            raise ImageReferenceError(
                f"repository path component {quoted(component)} must be lowercase letters and digits, "
                f"optionally separated by {_SEPARATORS_TEXT}"
            )


def _check_tag(tag: str) -> None:
    if not tag:
        raise ImageReferenceError("tag after ':' is empty")
    if len(tag) > TAG_MAX_LENGTH:
        raise ImageReferenceError(f"tag is longer than {TAG_MAX_LENGTH} characters")
    if tag[0] not in _TAG_FIRST:
        raise ImageReferenceError(f"tag {quoted(tag)} must start with a letter, a digit or '_'")
    if not set(tag) <= _TAG_REST:
        raise ImageReferenceError(
            f"tag {quoted(tag)} may contain only letters, digits, '_', '.' and '-'"
        )


def _check_digest(digest: str) -> None:
    algorithm, sep, encoded = digest.partition(":")
    if not sep or _ALGORITHM.fullmatch(algorithm) is None or _HEX.fullmatch(encoded) is None:
        raise ImageReferenceError(
            f"digest {quoted(digest)} must be algorithm:hex (e.g. sha256: and 64 hex digits)"
        )
    length = DIGEST_HEX_LENGTHS.get(algorithm)
    if length is None:
        raise ImageReferenceError(
            f"digest algorithm {quoted(algorithm)} is not supported (use sha256, sha384 or sha512)"
        )
    if len(encoded) != length:
        raise ImageReferenceError(
            f"{algorithm} digest must have {length} hex digits, not {len(encoded)}"
        )
    if encoded.lower() != encoded:
        raise ImageReferenceError(f"{algorithm} digest must be lowercase hex")


def parse_image_reference(text: str) -> ImageReference:
    """Split `text` into its parts; raise `ImageReferenceError` saying what is wrong."""
    if not text:
        raise ImageReferenceError("must not be empty")
    if any(c.isspace() for c in text):
        raise ImageReferenceError("must not contain whitespace")
    if _IMAGE_ID.fullmatch(text) is not None:
        raise ImageReferenceError(
            "a 64-digit hexadecimal string is an image ID, not a repository name"
        )
    name_tag, at, digest = text.partition("@")
    first, slash, rest = name_tag.partition("/")
    domain: str | None = None
    remainder = name_tag
    registry_is_path = False
    if slash and _looks_like_domain(first):
        try:
            _check_domain(first)
        except ImageReferenceError:
            # The grammar's registry is optional: a first component that is no host but is a
            # path component (`0.0_0/x`) is read as part of the path, as distribution does.
            if _PATH_COMPONENT.fullmatch(first) is None:
                raise
            registry_is_path = True
        else:
            domain, remainder = first, rest
    # Paths and tags never contain ':', so the first ':' after the registry starts the tag.
    path, colon, tag = remainder.partition(":")
    _check_path(path)
    if colon:
        _check_tag(tag)
    if at:
        _check_digest(digest)
    reference = ImageReference(
        domain=domain,
        path=path,
        tag=tag if colon else None,
        digest=digest if at else None,
    )
    name = path if registry_is_path else reference.normalized_name
    if len(name) > NAME_MAX_LENGTH:
        raise ImageReferenceError(
            f"repository name {quoted(name)} is longer than {NAME_MAX_LENGTH} characters"
        )
    return reference


@functools.lru_cache(maxsize=4096)
def check_image_reference(text: str) -> ImageReference | ImageReferenceError:
    """`parse_image_reference`, memoised: a cluster admits the same few images again and again."""
    try:
        return parse_image_reference(text)
    except ImageReferenceError as exc:
        return exc.with_traceback(None)  # kept in the cache: hold no frames
