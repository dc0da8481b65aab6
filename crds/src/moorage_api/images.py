"""Container image references: the grammar of `distribution/reference`, as a pattern and a parser.

Pure. The pattern goes into the CRD schema (the apiserver rejects malformed images before any
webhook sees them); the parser gives the webhook the parts it warns about (a `latest` or missing
tag). Character classes are spelled out (`[A-Za-z0-9_]`, not `\\w`) because the same pattern runs
under Go's RE2, Rust's regex and Python's `re`, which disagree on what `\\w` matches.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

_ALNUM: Final = r"[a-z0-9]+"
_SEPARATOR: Final = r"(?:[._]|__|[-]+)"
_PATH_COMPONENT: Final = rf"{_ALNUM}(?:{_SEPARATOR}{_ALNUM})*"
_DOMAIN_COMPONENT: Final = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_HOST: Final = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[a-fA-F0-9:]+\])"
_DOMAIN: Final = rf"{_HOST}(?::[0-9]+)?"
_REMOTE_NAME: Final = rf"{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*"
_TAG: Final = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"
_DIGEST: Final = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"

IMAGE_REFERENCE_PATTERN: Final = rf"^(?:{_DOMAIN}/)?{_REMOTE_NAME}(?::{_TAG})?(?:@{_DIGEST})?$"
"""`[domain[:port]/]path[:tag][@digest]`, anchored."""
IMAGE_REFERENCE_MAX_LENGTH: Final = 512
_NAME_MAX_LENGTH: Final = 255

_CAPTURING: Final = re.compile(
    rf"^(?P<name>(?:{_DOMAIN}/)?{_REMOTE_NAME})(?::(?P<tag>{_TAG}))?(?:@(?P<digest>{_DIGEST}))?$"
)


class ImageReferenceError(ValueError):
    """The text is not an image reference; the message says what is expected."""


@dataclass(frozen=True, slots=True)
class ImageReference:
    """A parsed image reference. At least one of `tag` and `digest` may be absent."""

    domain: str | None
    """Registry host (and port), or None for the default registry."""
    path: str
    """Repository path inside the registry (`library/nginx`, `stacklok/mcp/time`)."""
    tag: str | None
    digest: str | None

    @property
    def is_floating(self) -> bool:
        """True when the reference can move: tag `latest`, or neither tag nor digest."""
        return self.digest is None and (self.tag is None or self.tag == "latest")


def _split_domain(name: str) -> tuple[str | None, str]:
    # The rule of distribution/reference: the first component is a registry when it looks like a
    # host (has a dot or a port, or is localhost, or has capitals, which paths cannot have).
    first, sep, rest = name.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost" or first.lower() != first):
        return first, rest
    return None, name


def parse_image_reference(text: str) -> ImageReference:
    """Split `text` into its parts or raise `ImageReferenceError`."""
    if len(text) > IMAGE_REFERENCE_MAX_LENGTH:
        raise ImageReferenceError(
            f"image reference is longer than {IMAGE_REFERENCE_MAX_LENGTH} characters"
        )
    match = _CAPTURING.fullmatch(text)
    if match is None:
        raise ImageReferenceError(
            f"{text!r} is not a valid image reference "
            "(expected [registry[:port]/]repository[:tag][@algorithm:hex], lower-case repository)"
        )
    name = match.group("name")
    if len(name) > _NAME_MAX_LENGTH:
        raise ImageReferenceError(
            f"image repository name is longer than {_NAME_MAX_LENGTH} characters"
        )
    domain, path = _split_domain(name)
    return ImageReference(
        domain=domain, path=path, tag=match.group("tag"), digest=match.group("digest")
    )
