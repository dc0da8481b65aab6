"""Thousands of generated and mutated AdmissionReviews through aiohttp's test client.

Properties: no request ever gets a 500 or breaks the server; a request that is answered (200)
gets a well-formed AdmissionReview response carrying the request's UID; anything else is a 4xx
that the apiserver reports as a failed call.
"""

from __future__ import annotations

import asyncio
import copy
import json
from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from webhook_samples import POLICY, mcpregistry, mcpserver, mcptoolconfig, review

from moorage_webhook.admission import ENDPOINTS
from moorage_webhook.app import make_app
from moorage_webhook.settings import WebhookSettings

JSON = {"Content-Type": "application/json"}
PATHS = [e.path for e in ENDPOINTS]


class Harness:
    """A test client on its own event loop, so that synchronous hypothesis tests can use it."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        app = make_app(WebhookSettings(max_request_bytes=256 * 1024))
        self.client: TestClient[Any, Any] = TestClient(TestServer(app), loop=self.loop)
        self.loop.run_until_complete(self.client.start_server())

    def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        async def send() -> tuple[int, bytes]:
            resp = await self.client.post(path, data=body, headers=JSON)
            return resp.status, await resp.read()

        return self.loop.run_until_complete(send())

    def close(self) -> None:
        self.loop.run_until_complete(self.client.close())
        self.loop.close()


@pytest.fixture(scope="module")
def harness() -> Iterator[Harness]:
    h = Harness()
    yield h
    h.close()


def check_answer(status: int, body: bytes, sent: object) -> None:
    assert status != 500, body
    assert status in {200, 400, 413}, (status, body)
    if status != 200:
        assert body.strip(), "an error must say why"
        return
    document = json.loads(body)
    assert document["apiVersion"] == "admission.k8s.io/v1"
    assert document["kind"] == "AdmissionReview"
    response = document["response"]
    assert isinstance(sent, dict)
    assert response["uid"] == sent["request"]["uid"]
    assert isinstance(response["allowed"], bool)
    if not response["allowed"]:
        assert response["status"]["code"] >= 400
        assert isinstance(response["status"]["message"], str)
        assert response["status"]["message"]
    for warning in response.get("warnings", []):
        assert isinstance(warning, str)
        assert warning.isascii()
        assert len(warning) <= 256


# -- generated reviews ------------------------------------------------------------------------

_scalar = st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.text(max_size=12)
_json = st.recursive(
    _scalar | st.floats(allow_nan=False, allow_infinity=False),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)
_names = st.from_regex(r"[a-z][a-z0-9-]{0,12}", fullmatch=True)
_images = st.sampled_from(
    [
        "nginx",
        "nginx:latest",
        "ghcr.io/org/srv:1.0",
        "Foo:bar",
        "a@sha256:" + "f" * 64,
        "a@sha256:" + "f" * 40,
        "",
        "x//y",
    ]
)
_server_specs = st.fixed_dictionaries(
    {"image": _images},
    optional={
        "transport": st.sampled_from(["stdio", "sse", "streamable-http", "tcp"]),
        "proxyMode": st.sampled_from(["sse", "streamable-http"]),
        "port": st.integers(-5, 70000),
        "targetPort": st.integers(0, 70000),
        "replicas": st.integers(-1, 5) | st.none(),
        "args": st.lists(st.text(max_size=8), max_size=3),
        "env": st.lists(
            st.fixed_dictionaries({"name": st.text(max_size=6), "value": st.text(max_size=4)}),
            max_size=3,
        ),
        "secrets": st.lists(
            st.fixed_dictionaries(
                {"name": _names, "key": st.text(max_size=6)},
                optional={"targetEnvName": st.text(max_size=6)},
            ),
            max_size=3,
        ),
        "resources": st.fixed_dictionaries(
            {},
            optional={
                "limits": st.dictionaries(
                    st.sampled_from(["cpu", "memory", "x"]), st.sampled_from(["1", "500m", "z"])
                ),
                "requests": st.dictionaries(
                    st.sampled_from(["cpu", "memory"]), st.sampled_from(["2", "1Gi", 3])
                ),
            },
        ),
        "podTemplateSpec": _json,
        "authzConfig": st.fixed_dictionaries(
            {"type": st.just("inline")},
            optional={
                "inline": st.fixed_dictionaries(
                    {"policies": st.lists(st.sampled_from([POLICY, "permit(", ""]), max_size=2)},
                    optional={"entitiesJson": st.sampled_from(["[]", "{", "[1]"])},
                )
            },
        ),
        "oidcConfig": _json,
        "resourceOverrides": _json,
        "bogus": _json,
    },
)
_objects = st.one_of(
    _server_specs.map(mcpserver),
    st.dictionaries(st.text(max_size=8), _json, max_size=3).map(mcptoolconfig),
    st.fixed_dictionaries(
        {
            "toolsFilter": st.lists(st.text(max_size=5), max_size=3),
            "toolsOverride": st.dictionaries(
                st.text(max_size=5),
                st.fixed_dictionaries(
                    {}, optional={"name": st.text(max_size=5), "description": st.text(max_size=5)}
                ),
                max_size=3,
            ),
        }
    ).map(mcptoolconfig),
    st.one_of(
        st.fixed_dictionaries(
            {"type": st.sampled_from(["git", "configMap", "s3"])},
            optional={
                "git": st.fixed_dictionaries(
                    {"repository": st.sampled_from(["https://g.io/a", "git@g:x", "ftp://x", ""])},
                    optional={
                        "branch": st.text(max_size=6),
                        "tag": st.text(max_size=6),
                        "commit": st.text("0123456789abcdefABC", max_size=41),
                    },
                ),
                "configMap": st.fixed_dictionaries({"name": _names}),
            },
        ),
        _json,
    ).map(mcpregistry),
    _json,
)


def _as_object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {"kind": "MCPServer", "junk": value}


@st.composite
def reviews(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    operation = draw(st.sampled_from(["CREATE", "UPDATE", "DELETE", "CONNECT"]))
    obj = _as_object(draw(_objects))
    old = _as_object(draw(_objects)) if operation in {"UPDATE", "DELETE"} else None
    if old is not None and draw(st.booleans()):
        old = copy.deepcopy(obj)
    document = review(
        obj,
        uid=draw(st.text(min_size=1, max_size=36)),
        operation=operation,
        old=old,
        dry_run=draw(st.booleans()),
    )
    if operation == "DELETE":
        document["request"]["object"] = None
    if draw(st.booleans()):
        document["request"]["extraField"] = draw(_json)
    return draw(st.sampled_from(PATHS)), document


@given(reviews())
@settings(
    max_examples=1500,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_generated_reviews_are_always_answered_well(
    harness: Harness, case: tuple[str, dict[str, Any]]
) -> None:
    path, document = case
    status, body = harness.post(path, json.dumps(document).encode())
    assert status == 200, body
    check_answer(status, body, document)


# -- mutated reviews --------------------------------------------------------------------------

_BASES = [
    review(mcpserver({"podTemplateSpec": {"spec": {"containers": [{"name": "mcp"}]}}})),
    review(mcpserver(), operation="UPDATE", old=mcpserver({"transport": "sse"})),
    review(mcptoolconfig({"toolsOverride": {"a": {"name": "b"}}})),
    review(mcpregistry({"type": "git", "git": {"repository": "https://g.io/r", "tag": "v1"}})),
    review(None, operation="DELETE", old=mcpserver()),
]


def _locations(value: Any) -> list[tuple[Any, Any]]:
    """Every (container, key) pair inside `value`."""
    found: list[tuple[Any, Any]] = []
    if isinstance(value, dict):
        for key, item in value.items():
            found.append((value, key))
            found.extend(_locations(item))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found.append((value, index))
            found.extend(_locations(item))
    return found


@st.composite
def mutated_reviews(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    document = copy.deepcopy(draw(st.sampled_from(_BASES)))
    for _ in range(draw(st.integers(1, 5))):
        locations = _locations(document)
        if not locations:
            break
        container, key = draw(st.sampled_from(locations))
        action = draw(st.sampled_from(["delete", "replace", "empty", "add"]))
        if action == "delete":
            del container[key]
        elif action == "replace":
            container[key] = draw(_json)
        elif action == "empty":
            container[key] = type(container[key])() if container[key] is not None else None
        elif isinstance(container, dict):
            container[draw(st.text(max_size=8))] = draw(_json)
        else:
            container.append(draw(_json))
    return draw(st.sampled_from(PATHS)), document


@given(mutated_reviews())
@settings(
    max_examples=2000,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_mutated_reviews_never_crash_the_webhook(
    harness: Harness, case: tuple[str, dict[str, Any]]
) -> None:
    path, document = case
    status, body = harness.post(path, json.dumps(document).encode())
    check_answer(status, body, document)


@given(st.sampled_from(_BASES), st.data())
@settings(
    max_examples=500,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_damaged_bytes_never_crash_the_webhook(
    harness: Harness, document: dict[str, Any], data: st.DataObject
) -> None:
    raw = bytearray(json.dumps(document).encode())
    for _ in range(data.draw(st.integers(1, 4))):
        position = data.draw(st.integers(0, len(raw) - 1))
        raw[position] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(raw)))
    status, body = harness.post(data.draw(st.sampled_from(PATHS)), bytes(raw[:cut]))
    assert status in {200, 400}, (status, body)
    if status == 200:
        check_answer(status, body, json.loads(bytes(raw[:cut])))
