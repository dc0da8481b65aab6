"""Protocol-era rules: the modern request ladder, version negotiation, result translation."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from moorage_proxyrunner.protocol import eras
from moorage_proxyrunner.protocol.eras import Envelope, LadderRejection

META = {
    eras.PROTOCOL_VERSION_KEY: "2026-07-28",
    eras.CLIENT_CAPABILITIES_KEY: {"sampling": {}},
}


def body(method: str = "tools/call", meta: Any = META, **params: Any) -> dict[str, Any]:
    content: dict[str, Any] = {"name": "echo", **params}
    if meta is not None:
        content["_meta"] = meta
    return {"jsonrpc": "2.0", "id": 1, "method": method, "params": content}


def headers(
    version: str = "2026-07-28", method: str = "tools/call", name: str | None = "echo"
) -> dict[str, str]:
    out = {eras.PROTOCOL_VERSION_HEADER: version, eras.METHOD_HEADER: method}
    if name is not None:
        out[eras.NAME_HEADER] = name
    return out


@pytest.mark.parametrize(
    ("request_body", "request_headers", "code"),
    [
        (body(meta=None), headers(), -32602),
        (body(meta={eras.CLIENT_CAPABILITIES_KEY: {}}), headers(), -32602),
        (body(meta={eras.PROTOCOL_VERSION_KEY: "2026-07-28"}), headers(), -32602),
        (body(), headers(version="2025-11-25"), -32020),
        (body(), {eras.METHOD_HEADER: "tools/call", eras.NAME_HEADER: "echo"}, -32020),
        (body(), headers(method="tools/list"), -32020),
        (body(), headers(name="other"), -32020),
        (body(), headers(name=None), -32020),
        (body(meta={**META, eras.PROTOCOL_VERSION_KEY: "v9"}), headers(version="v9"), -32022),
        (body(meta={**META, eras.CLIENT_CAPABILITIES_KEY: []}), headers(), -32602),
        (body(meta={**META, eras.LOG_LEVEL_KEY: "loud"}), headers(), -32602),
    ],
    ids=[
        "no-meta",
        "no-version",
        "no-capabilities",
        "version-header-differs",
        "version-header-missing",
        "method-header-differs",
        "name-header-differs",
        "name-header-missing",
        "unsupported-version",
        "capabilities-not-object",
        "unknown-log-level",
    ],
)
def test_the_ladder_rejects_with_the_first_failing_rung(
    request_body: dict[str, Any], request_headers: dict[str, str], code: int
) -> None:
    verdict = eras.check_modern_request(request_body, request_headers)
    assert isinstance(verdict, LadderRejection)
    assert verdict.code == code


def test_an_unsupported_version_names_the_supported_ones() -> None:
    verdict = eras.check_modern_request(
        body(meta={**META, eras.PROTOCOL_VERSION_KEY: "v9"}), headers(version="v9")
    )
    assert isinstance(verdict, LadderRejection)
    assert verdict.data == {"supported": ["2026-07-28"], "requested": "v9"}


def test_a_valid_request_yields_its_envelope() -> None:
    meta = {**META, eras.LOG_LEVEL_KEY: "info", eras.CLIENT_INFO_KEY: {"name": "c"}}
    verdict = eras.check_modern_request(body(meta=meta), headers())
    assert verdict == Envelope("2026-07-28", {"sampling": {}}, {"name": "c"}, "info")


def test_a_base64_name_header_matches_a_non_ascii_name() -> None:
    name = "grüße"
    encoded = f"=?base64?{base64.b64encode(name.encode()).decode()}?="
    verdict = eras.check_modern_request(body(name=name), headers(name=encoded))
    assert isinstance(verdict, Envelope)


@pytest.mark.parametrize(
    ("value", "decoded"),
    [
        ("plain", "plain"),
        ("=?base64?aGk=?=", "hi"),
        ("=?base64?not base64?=", None),
        ("=?base64?aGk?=", None),
        (None, None),
    ],
    ids=["plain", "base64", "garbage", "unpadded", "absent"],
)
def test_header_values_decode(value: str | None, decoded: str | None) -> None:
    assert eras.decode_header_value(value) == decoded


def test_headers_are_not_compared_when_the_envelope_is_missing() -> None:
    assert eras.check_modern_headers(body(meta=None), {}) is None


@pytest.mark.parametrize(
    ("requested", "backend", "answer"),
    [
        ("2025-06-18", "2025-11-25", "2025-06-18"),
        ("2025-11-25", "2025-11-25", "2025-11-25"),
        ("2025-11-25", "2025-06-18", "2025-06-18"),
        ("2099-01-01", "2025-11-25", "2025-11-25"),
        (None, "2025-11-25", "2025-11-25"),
    ],
    ids=["older-client", "same", "newer-client", "unknown", "missing"],
)
def test_initialize_negotiates_against_what_the_backend_agreed(
    requested: Any, backend: str, answer: str
) -> None:
    assert eras.negotiate(requested, backend) == answer


def test_strip_envelope_keeps_the_progress_token() -> None:
    params = {"name": "x", "_meta": {**META, "progressToken": 7}}
    eras.strip_envelope(params)
    assert params == {"name": "x", "_meta": {"progressToken": 7}}
    bare = {"_meta": dict(META)}
    eras.strip_envelope(bare)
    assert bare == {}


def test_modern_results_get_result_type_cache_hints_and_server_info() -> None:
    info = {"name": "s", "version": "1"}
    listed = eras.modern_result("tools/list", {"tools": []}, info)
    assert listed == {
        "tools": [],
        "resultType": "complete",
        "ttlMs": 0,
        "cacheScope": "private",
        "_meta": {eras.SERVER_INFO_KEY: info},
    }
    called = eras.modern_result("tools/call", {"content": [], "resultType": "input_required"}, None)
    assert called == {"content": [], "resultType": "input_required"}


def test_discover_is_built_from_the_initialize_result() -> None:
    cached = {
        "protocolVersion": "2025-11-25",
        "capabilities": {"tools": {"listChanged": True}, "logging": {}},
        "serverInfo": {"name": "s", "version": "1"},
        "instructions": "be nice",
    }
    result = eras.discover_result(cached)
    assert result["supportedVersions"] == ["2026-07-28"]
    assert result["capabilities"] == {"tools": {"listChanged": True}, "logging": {}}
    assert result["instructions"] == "be nice"
    assert result["_meta"] == {eras.SERVER_INFO_KEY: {"name": "s", "version": "1"}}
    assert result["resultType"] == "complete"


@pytest.mark.parametrize(
    ("level", "threshold", "logged"),
    [
        ("error", "warning", True),
        ("info", "warning", False),
        ("debug", None, True),
        ("weird", "info", True),
    ],
    ids=["above", "below", "no-threshold", "unknown-level"],
)
def test_log_levels_filter(level: str, threshold: str | None, logged: bool) -> None:
    assert eras.is_logged(level, threshold) is logged


@pytest.mark.parametrize(
    ("code", "status"),
    [
        (-32700, 400),
        (-32600, 400),
        (-32602, 400),
        (-32020, 400),
        (-32021, 400),
        (-32022, 400),
        (-32601, 404),
        (-32603, 200),
    ],
)
def test_modern_errors_carry_their_http_status(code: int, status: int) -> None:
    assert eras.modern_status(code) == status
