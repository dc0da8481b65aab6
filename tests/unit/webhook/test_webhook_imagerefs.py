"""Image references: the parser accepts exactly what distribution's ParseNormalizedNamed accepts.

The oracle below is a second, independent implementation: the anchored regular expressions of
`distribution/reference/regexp.go` plus the normalisation steps of `normalize.go` and go-digest's
validation. Hypothesis compares the two on generated references and on arbitrary text.
"""

from __future__ import annotations

import re

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from moorage_webhook.validation.imagerefs import (
    ImageReference,
    ImageReferenceError,
    check_image_reference,
    parse_image_reference,
)

# -- the oracle: distribution/reference's regular expressions --------------------------------

_ALNUM = r"[a-z0-9]+"
_SEP = r"(?:[._]|__|[-]+)"
_PATH_COMPONENT = rf"{_ALNUM}(?:{_SEP}{_ALNUM})*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN_NAME = rf"{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*"
_IPV6 = r"\[(?:[a-fA-F0-9:]+)\]"
_HOST = rf"(?:{_DOMAIN_NAME}|{_IPV6})"
_DOMAIN = rf"{_HOST}(?::[0-9]+)?"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*[:][0-9a-fA-F]{32,}"
_NAME = rf"(?:{_DOMAIN}/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*"
_REFERENCE = re.compile(rf"(?P<name>{_NAME})(?::(?P<tag>{_TAG}))?(?:@(?P<digest>{_DIGEST}))?", re.A)
_IDENTIFIER = re.compile(r"[a-f0-9]{64}", re.A)
_DIGEST_ENCODED = {"sha256": r"[a-f0-9]{64}", "sha384": r"[a-f0-9]{96}", "sha512": r"[a-f0-9]{128}"}


def _split_docker_domain(name: str) -> tuple[str, str]:
    maybe_domain, slash, maybe_remote = name.partition("/")
    if not slash:
        return "docker.io", "library/" + name
    if maybe_domain == "localhost":
        domain, remote = maybe_domain, maybe_remote
    elif maybe_domain == "index.docker.io":
        domain, remote = "docker.io", maybe_remote
    elif "." in maybe_domain or ":" in maybe_domain or maybe_domain.lower() != maybe_domain:
        domain, remote = maybe_domain, maybe_remote
    else:
        domain, remote = "docker.io", name
    if domain == "docker.io" and "/" not in remote:
        remote = "library/" + remote
    return domain, remote


def oracle_accepts(text: str) -> bool:
    """ParseNormalizedNamed(text) == nil error, transcribed."""
    if _IDENTIFIER.fullmatch(text):
        return False
    domain, remainder = _split_docker_domain(text)
    remote_name = remainder.split(":", 1)[0]
    if remote_name.lower() != remote_name:
        return False
    match = _REFERENCE.fullmatch(f"{domain}/{remainder}")
    if match is None or len(match["name"]) > 255:
        return False
    digest = match["digest"]
    if digest is not None:
        algorithm, _, encoded = digest.partition(":")
        pattern = _DIGEST_ENCODED.get(algorithm)
        if pattern is None or re.fullmatch(pattern, encoded) is None:
            return False
    return True


def accepts(text: str) -> bool:
    try:
        parse_image_reference(text)
    except ImageReferenceError:
        return False
    return True


# -- tables -----------------------------------------------------------------------------------

SHA = "a" * 64


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("nginx", ImageReference(None, "nginx", None, None), id="bare-name"),
        pytest.param("nginx:1.27", ImageReference(None, "nginx", "1.27", None), id="tag"),
        pytest.param(
            "ghcr.io/org/server:v1.2.0",
            ImageReference("ghcr.io", "org/server", "v1.2.0", None),
            id="registry-path-tag",
        ),
        pytest.param(
            "localhost:5000/a/b@sha256:" + SHA,
            ImageReference("localhost:5000", "a/b", None, "sha256:" + SHA),
            id="port-and-digest",
        ),
        pytest.param("[::1]:5000/img:t", ImageReference("[::1]:5000", "img", "t", None), id="ipv6"),
        pytest.param(
            "Registry/img", ImageReference("Registry", "img", None, None), id="caps-domain"
        ),
        pytest.param(
            "a/a__b.c-d---e", ImageReference(None, "a/a__b.c-d---e", None, None), id="separators"
        ),
        pytest.param(
            "img:_tag.-x@sha512:" + "b" * 128,
            ImageReference(None, "img", "_tag.-x", "sha512:" + "b" * 128),
            id="tag-and-digest",
        ),
    ],
)
def test_parses_valid_references_into_parts(text: str, expected: ImageReference) -> None:
    assert parse_image_reference(text) == expected
    assert str(expected) == text


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        pytest.param("", "must not be empty", id="empty"),
        pytest.param("nginx :1", "whitespace", id="whitespace"),
        pytest.param(SHA, "image ID", id="image-id"),
        pytest.param("Foo:bar", 'repository "Foo" must be lowercase', id="uppercase-repo"),
        pytest.param("docker.io/Library/x", "must be lowercase", id="uppercase-path"),
        pytest.param("a//b", "empty path component", id="double-slash"),
        pytest.param("a/b/", "empty path component", id="trailing-slash"),
        pytest.param("/a", "empty path component", id="leading-slash"),
        pytest.param("a-/b", 'path component "a-"', id="trailing-dash"),
        pytest.param("a._b", 'path component "a._b"', id="double-separator"),
        pytest.param("reg-.io/a", "not a valid host name", id="bad-host"),
        pytest.param("reg.io:http/a", 'registry port "http" must be a number', id="bad-port"),
        pytest.param("[zz:1]/a", "IPv6", id="bad-ipv6"),
        pytest.param("[::1]x/a", "expected ':port'", id="ipv6-junk"),
        pytest.param("a:", "tag after ':' is empty", id="empty-tag"),
        pytest.param("a:-x", "must start with", id="tag-start"),
        pytest.param("a:x+y", "may contain only", id="tag-chars"),
        pytest.param("a:" + "x" * 129, "longer than 128", id="long-tag"),
        pytest.param("a@", "must be algorithm:hex", id="empty-digest"),
        pytest.param("a@sha256:xyz", "must be algorithm:hex", id="digest-not-hex"),
        pytest.param("a@md5:" + "a" * 32, "not supported", id="digest-algorithm"),
        pytest.param("a@sha256:" + "a" * 32, "64 hex digits, not 32", id="digest-length"),
        pytest.param("a@sha256:" + "A" * 64, "lowercase hex", id="digest-case"),
        pytest.param("a@b@sha256:" + SHA, "must be algorithm:hex", id="two-at"),
        pytest.param("r.io/" + "a" * 251, "longer than 255", id="long-name"),
        pytest.param("a" * 240, "longer than 255", id="long-name-after-normalising"),
    ],
)
def test_rejects_invalid_references_with_the_reason(text: str, reason: str) -> None:
    with pytest.raises(ImageReferenceError, match=re.escape(reason)):
        parse_image_reference(text)
    assert not oracle_accepts(text)


def test_normalised_name_fills_docker_hub_defaults() -> None:
    assert parse_image_reference("nginx").normalized_name == "docker.io/library/nginx"
    assert parse_image_reference("index.docker.io/x").normalized_name == "docker.io/library/x"
    assert parse_image_reference("org/x").normalized_name == "docker.io/org/x"
    assert parse_image_reference("q.io/x").normalized_name == "q.io/x"


def test_memoised_check_returns_the_error_instead_of_raising() -> None:
    assert isinstance(check_image_reference("Foo"), ImageReferenceError)
    assert check_image_reference("foo") == ImageReference(None, "foo", None, None)


# -- properties -------------------------------------------------------------------------------

_lower = st.text("abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=6)
_separator = st.sampled_from([".", "_", "__", "-", "--"])
_path_component = st.builds(
    lambda first, rest: first + "".join(s + p for s, p in rest),
    _lower,
    st.lists(st.tuples(_separator, _lower), max_size=2),
)
_domain_component = st.from_regex(r"[a-zA-Z0-9]([a-zA-Z0-9-]{0,4}[a-zA-Z0-9])?", fullmatch=True)
_domain = st.one_of(
    st.builds(lambda a, b: f"{a}.{b}", _domain_component, _domain_component),
    st.just("localhost"),
    st.builds(lambda h, p: f"{h}:{p}", _domain_component, st.integers(0, 99999)),
    st.just("[::1]:5000"),
)
_tag = st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}", fullmatch=True)
_digest = st.one_of(
    st.text("0123456789abcdef", min_size=64, max_size=64).map(lambda h: f"sha256:{h}"),
    st.text("0123456789abcdef", min_size=128, max_size=128).map(lambda h: f"sha512:{h}"),
)


@st.composite
def references(draw: st.DrawFn) -> ImageReference:
    domain = draw(st.none() | _domain)
    path = "/".join(draw(st.lists(_path_component, min_size=1, max_size=3)))
    return ImageReference(domain, path, draw(st.none() | _tag), draw(st.none() | _digest))


@given(references())
@settings(max_examples=500)
def test_generated_references_round_trip(reference: ImageReference) -> None:
    text = str(reference)
    if not oracle_accepts(text):
        # The one grammar corner a generated part can hit: a one-component name like "a.b"
        # with no registry is a path, and a 64-hex one is an image ID.
        with pytest.raises(ImageReferenceError):
            parse_image_reference(text)
        return
    parsed = parse_image_reference(text)
    assert str(parsed) == text
    assert parsed.tag == reference.tag
    assert parsed.digest == reference.digest


_reference_alphabet = st.sampled_from([*list("abcAZ019:/@._-[]+ "), "sha256:", "localhost", "x.io"])


@given(st.lists(_reference_alphabet, max_size=30).map("".join))
@settings(max_examples=3000)
@example("localhost:5000")
@example("Localhost/x")
@example("x.io/a:b:c")
@example("a@sha256:" + SHA)
def test_agrees_with_distribution_on_arbitrary_text(text: str) -> None:
    assert accepts(text) == oracle_accepts(text), text


@given(references(), st.integers(0, 80), st.sampled_from(list("A:/@.-_ [+é")))
@settings(max_examples=2000)
def test_agrees_with_distribution_on_mutated_references(
    reference: ImageReference, position: int, char: str
) -> None:
    text = str(reference)
    position = min(position, len(text))
    mutated = text[:position] + char + text[position:]
    assert accepts(mutated) == oracle_accepts(mutated), mutated
