"""Transport guards and SSE framing."""

from __future__ import annotations

import pytest
from aiohttp.test_utils import make_mocked_request
from hypothesis import given
from hypothesis import strategies as st

from moorage_proxyrunner.config.settings import ProxyRunnerSettings
from moorage_proxyrunner.front.app import is_host_allowed, is_origin_allowed
from moorage_proxyrunner.front.responding import endpoint_url
from moorage_proxyrunner.protocol.sse import EventParser, format_event, prefers_event_stream

LOCAL = ProxyRunnerSettings(host="127.0.0.1")
CLUSTER = ProxyRunnerSettings(host="0.0.0.0")
LISTED = ProxyRunnerSettings(
    host="0.0.0.0", allowed_hosts=("mcp.example.com",), allowed_origins=("https://app.example.com",)
)


@pytest.mark.parametrize(
    ("host", "settings", "allowed"),
    [
        ("127.0.0.1:8080", LOCAL, True),
        ("localhost:8080", LOCAL, True),
        ("[::1]:8080", LOCAL, True),
        ("evil.example.com", LOCAL, False),
        ("evil.example.com:8080", LOCAL, False),
        (None, LOCAL, False),
        ("mcp-x-proxy.ns.svc:8080", CLUSTER, True),
        ("mcp.example.com", LISTED, True),
        ("mcp.example.com:443", LISTED, True),
        ("other.example.com", LISTED, False),
    ],
    ids=[
        "ip",
        "localhost",
        "ipv6",
        "foreign",
        "foreign-port",
        "missing",
        "cluster-any",
        "listed",
        "listed-port",
        "unlisted",
    ],
)
def test_host_validation(host: str | None, settings: ProxyRunnerSettings, allowed: bool) -> None:
    assert is_host_allowed(host, settings) is allowed


@pytest.mark.parametrize(
    ("origin", "host", "settings", "allowed"),
    [
        (None, "127.0.0.1:8080", LOCAL, True),
        ("http://127.0.0.1:8080", "127.0.0.1:8080", LOCAL, True),
        ("http://localhost:3000", "127.0.0.1:8080", LOCAL, True),
        ("https://evil.example.com", "127.0.0.1:8080", LOCAL, False),
        ("null", "127.0.0.1:8080", LOCAL, False),
        ("https://mcp.example.com", "mcp.example.com", CLUSTER, True),
        ("https://evil.example.com", "mcp.example.com", CLUSTER, False),
        ("https://app.example.com", "mcp.example.com", LISTED, True),
    ],
    ids=[
        "none",
        "same-origin",
        "loopback",
        "foreign",
        "null",
        "cluster-same",
        "cluster-foreign",
        "listed",
    ],
)
def test_origin_validation(
    origin: str | None, host: str, settings: ProxyRunnerSettings, allowed: bool
) -> None:
    assert is_origin_allowed(origin, host, settings) is allowed


def test_events_are_framed_with_one_data_line_per_line() -> None:
    assert format_event(b"{}") == b"event: message\ndata: {}\n\n"
    assert (
        format_event(b"/messages?session_id=1", event="endpoint")
        == b"event: endpoint\ndata: /messages?session_id=1\n\n"
    )
    assert format_event(b"a\nb", event_id="7") == b"event: message\nid: 7\ndata: a\ndata: b\n\n"


@given(
    datas=st.lists(
        st.text(
            alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n"),
            max_size=30,
        ),
        max_size=6,
    ),
    cut=st.integers(min_value=1, max_value=7),
)
def test_the_parser_reads_back_what_was_framed_in_any_chunking(datas: list[str], cut: int) -> None:
    wire = b": keep-alive\n\n" + b"".join(format_event(d.encode()) for d in datas)
    parser = EventParser()
    events = []
    for start in range(0, len(wire), cut):
        events.extend(parser.feed(wire[start : start + cut]))
    assert [e.data for e in events] == datas
    assert b"".join(e.raw for e in events) == b"".join(format_event(d.encode()) for d in datas)


def test_the_parser_understands_crlf_and_comments() -> None:
    events = EventParser().feed(b": hi\r\nevent: endpoint\r\ndata: /m?s=1\r\n\r\n")
    assert [(e.event, e.data) for e in events] == [("endpoint", "/m?s=1")]


@pytest.mark.parametrize(
    ("settings", "headers", "url"),
    [
        (ProxyRunnerSettings(), {}, "/messages?session_id=s1"),
        (ProxyRunnerSettings(endpoint_prefix="/mcp/x/"), {}, "/mcp/x/messages?session_id=s1"),
        (
            ProxyRunnerSettings(endpoint_prefix="/p"),
            {"X-Forwarded-Prefix": "/evil"},
            "/p/messages?session_id=s1",
        ),
        (
            ProxyRunnerSettings(endpoint_prefix="/p", trust_proxy_headers=True),
            {"X-Forwarded-Prefix": "/ingress/"},
            "/ingress/messages?session_id=s1",
        ),
        (
            ProxyRunnerSettings(trust_proxy_headers=True),
            {"X-Forwarded-Host": "mcp.example.com, inner", "X-Forwarded-Proto": "https"},
            "https://mcp.example.com/messages?session_id=s1",
        ),
    ],
    ids=["plain", "prefix", "untrusted-header", "trusted-prefix", "trusted-host"],
)
def test_sse_endpoint_urls_honour_prefix_and_trusted_headers(
    settings: ProxyRunnerSettings, headers: dict[str, str], url: str
) -> None:
    request = make_mocked_request("GET", "/sse", headers=headers)
    assert endpoint_url(request, settings, "s1") == url


@pytest.mark.parametrize(
    ("accept", "prefers"),
    [
        pytest.param("text/event-stream, application/json", True, id="sse-first"),
        pytest.param("application/json, text/event-stream", False, id="json-first"),
        pytest.param("text/event-stream", True, id="sse-only"),
        pytest.param("application/json", False, id="json-only"),
        pytest.param("", False, id="none"),
        pytest.param("application/json;q=0.5, text/event-stream", True, id="json-lower-q"),
        pytest.param("text/event-stream;q=0.4, application/json", False, id="sse-lower-q"),
        pytest.param("text/event-stream;q=0, application/json", False, id="sse-refused"),
        pytest.param("TEXT/EVENT-STREAM ; q=1.0 , application/json", True, id="case-and-spaces"),
        pytest.param("text/event-stream;q=x, application/json", False, id="bad-q"),
    ],
)
def test_the_client_prefers_sse_when_it_ranks_it_above_json(accept: str, prefers: bool) -> None:
    assert prefers_event_stream(accept) is prefers
