"""Image references, Go durations, ConfigMap documents and child names."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from moorage_api.documents import (
    DocumentError,
    parse_authz_document,
    parse_oidc_document,
    parse_permission_profile,
)
from moorage_api.durations import DURATION_PATTERN, DurationError, parse_go_duration
from moorage_api.images import (
    IMAGE_REFERENCE_PATTERN,
    ImageReference,
    ImageReferenceError,
    parse_image_reference,
)
from moorage_api.naming import (
    headless_service_name,
    mcp_pod_selector,
    mcpserver_labels,
    mcpserver_url,
    proxy_service_name,
    registry_api_name,
    registry_storage_configmap_name,
    runconfig_configmap_name,
)

DIGEST = "sha256:" + "a" * 64


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("nginx", ImageReference(None, "nginx", None, None)),
        ("library/nginx:1.27", ImageReference(None, "library/nginx", "1.27", None)),
        (
            "ghcr.io/moorage-dev/mcp-server-time:2025.9.25",
            ImageReference("ghcr.io", "moorage-dev/mcp-server-time", "2025.9.25", None),
        ),
        ("localhost:5000/time", ImageReference("localhost:5000", "time", None, None)),
        ("localhost/time:v1", ImageReference("localhost", "time", "v1", None)),
        ("Registry/time", ImageReference("Registry", "time", None, None)),
        (f"ghcr.io/a/b@{DIGEST}", ImageReference("ghcr.io", "a/b", None, DIGEST)),
        (f"ghcr.io/a/b:1@{DIGEST}", ImageReference("ghcr.io", "a/b", "1", DIGEST)),
        ("[::1]:5000/a", ImageReference("[::1]:5000", "a", None, None)),
        ("a__b/c-d---e.f", ImageReference(None, "a__b/c-d---e.f", None, None)),
    ],
)
def test_image_references_split_into_their_parts(text: str, expected: ImageReference) -> None:
    assert parse_image_reference(text) == expected
    assert re.fullmatch(IMAGE_REFERENCE_PATTERN, text)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "Nginx",
        "nginx:",
        "nginx:-bad",
        "a//b",
        "-a",
        "a-",
        "a b",
        "ghcr.io/a/b@sha256:short",
        "ghcr.io/a/b:" + "t" * 129,
        "a/" + "b" * 260,
        "a" * 513,
    ],
)
def test_malformed_image_references_are_refused(text: str) -> None:
    with pytest.raises(ImageReferenceError):
        parse_image_reference(text)


@pytest.mark.parametrize(
    ("text", "floating"),
    [
        ("nginx", True),
        ("nginx:latest", True),
        ("nginx:1.27", False),
        (f"nginx@{DIGEST}", False),
        (f"nginx:latest@{DIGEST}", False),
    ],
)
def test_floating_references_are_latest_or_untagged(text: str, floating: bool) -> None:
    assert parse_image_reference(text).is_floating is floating


@settings(max_examples=300)
@given(st.text(alphabet="abcAB01:/.@_-[]", max_size=40))
def test_the_crd_pattern_and_the_parser_agree(text: str) -> None:
    matched = re.fullmatch(IMAGE_REFERENCE_PATTERN, text) is not None
    try:
        parse_image_reference(text)
    except ImageReferenceError:
        parsed = False
    else:
        parsed = True
    assert matched == parsed


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("1m", 60.0),
        ("90s", 90.0),
        ("1h30m", 5400.0),
        ("1.5h", 5400.0),
        ("250ms", 0.25),
        ("10us", 1e-5),
        ("10µs", 1e-5),
        ("5ns", 5e-9),
        ("0s", 0.0),
    ],
)
def test_go_durations_parse_to_seconds(text: str, seconds: float) -> None:
    assert parse_go_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "1", "1d", "-1m", "m", "1h 30m", "1.m", "3600"])
def test_non_durations_are_refused(text: str) -> None:
    assert re.fullmatch(DURATION_PATTERN, text) is None
    with pytest.raises(DurationError):
        parse_go_duration(text)


@given(
    st.lists(
        st.tuples(st.integers(0, 999), st.sampled_from(["h", "m", "s", "ms"])),
        min_size=1,
        max_size=4,
    )
)
def test_a_duration_is_the_sum_of_its_parts(parts: list[tuple[int, str]]) -> None:
    scale = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
    text = "".join(f"{number}{unit}" for number, unit in parts)
    assert parse_go_duration(text) == pytest.approx(sum(n * scale[u] for n, u in parts))


def test_an_oidc_document_holds_the_inline_fields() -> None:
    config = parse_oidc_document(
        '{"issuer": "https://idp.example.com", "audience": "mcp", "requiredScopes": ["read"]}'
    )
    assert (config.issuer, config.audience, config.required_scopes) == (
        "https://idp.example.com",
        "mcp",
        ["read"],
    )


def test_an_authz_document_holds_policies_and_entities() -> None:
    config = parse_authz_document('{"policies": ["permit(principal, action, resource);"]}')
    assert config.policies == ["permit(principal, action, resource);"]
    assert config.entities_json == "[]"


def test_a_permission_profile_keeps_only_network_egress() -> None:
    profile = parse_permission_profile(
        '{"read": ["/data"], "network": {"outbound": {"allow_port": [443],'
        ' "allow_cidr": ["10.0.0.0/8"], "allow_transport": ["tcp"]}}}'
    )
    assert profile.network.outbound.allow_port == [443]
    assert profile.network.outbound.allow_cidr == ["10.0.0.0/8"]
    assert profile.network.outbound.insecure_allow_all is False


@pytest.mark.parametrize(
    ("parse", "text", "expected"),
    [
        (parse_oidc_document, "{", "oidc.json: not JSON"),
        (parse_oidc_document, '{"issuer": "https://i"}', "oidc.json.audience: required"),
        (parse_oidc_document, '{"issuer": "i", "audience": "a"}', "oidc.json.issuer:"),
        (parse_oidc_document, '{"issuer": "https://i", "audience": "a", "x": 1}', "oidc.json.x:"),
        (parse_authz_document, '{"policies": []}', "authz.json.policies:"),
        (parse_authz_document, "[]", "authz.json: Input should be"),
        (
            parse_permission_profile,
            '{"network": {"outbound": {"allow_port": [0]}}}',
            "profile.json.network.outbound.allow_port[0]:",
        ),
    ],
)
def test_a_bad_document_is_rejected_naming_the_key_and_field(
    parse: object, text: str, expected: str
) -> None:
    assert callable(parse)
    with pytest.raises(DocumentError) as info:
        parse(text)
    assert expected in str(info.value)


def test_children_are_named_as_the_spec_says() -> None:
    assert proxy_service_name("time") == "mcp-time-proxy"
    assert headless_service_name("time") == "mcp-time-headless"
    assert runconfig_configmap_name("time") == "time-runconfig"
    assert registry_storage_configmap_name("reg") == "reg-registry-storage"
    assert registry_api_name("reg") == "reg-api"


def test_children_carry_the_spec_labels() -> None:
    assert mcpserver_labels("time") == {
        "app": "mcpserver",
        "app.kubernetes.io/name": "mcpserver",
        "app.kubernetes.io/instance": "time",
        "app.kubernetes.io/managed-by": "moorage",
        "app.kubernetes.io/part-of": "moorage",
        "moorage.dev/mcpserver": "time",
    }
    assert mcp_pod_selector("time") == {
        "moorage.dev/mcpserver": "time",
        "app.kubernetes.io/component": "mcp-server",
    }


@pytest.mark.parametrize(
    ("mode", "url"),
    [
        ("streamable-http", "http://mcp-time-proxy.tools.svc.cluster.local:8080/mcp"),
        ("sse", "http://mcp-time-proxy.tools.svc.cluster.local:8080/sse"),
    ],
)
def test_the_status_url_depends_on_the_proxy_mode(mode: str, url: str) -> None:
    assert mcpserver_url("time", namespace="tools", port=8080, proxy_mode=mode) == url  # type: ignore[arg-type]


def test_the_longest_allowed_name_gives_valid_service_names() -> None:
    name = "a" * 50
    assert len(headless_service_name(name)) == 63
    assert len(proxy_service_name(name)) <= 63
