"""Registry source formats: what is accepted, what each rejection says, and that no input makes
the parsers fail any other way."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any, TypeVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from moorage_operator.planning.mcpregistries.formats import (
    RegistryError,
    RegistryFormatError,
    decode_json,
    parse_document,
    parse_registry,
)
from moorage_operator.planning.mcpregistries.storage import prepare_registry

T = TypeVar("T")

TOOLHIVE: dict[str, Any] = {
    "version": "1.0.0",
    "last_updated": "2025-09-25T00:00:00Z",
    "servers": {
        "time": {
            "description": "Time and timezone conversion.",
            "image": "ghcr.io/example/time:1.0",
            "transport": "stdio",
            "tier": "Community",
            "status": "Active",
            "tools": ["get_current_time"],
            "tags": ["time", "utility", "time"],
            "env_vars": [{"name": "TZ", "description": "Zone", "required": False}],
            "args": ["--verbose"],
            "target_port": 8080,
            "custom_metadata": {"owner": "team-a"},
            "future_field": {"kept": True},
        },
        "fetch": {
            "description": "Fetches web pages.",
            "image": "mcp/fetch:latest",
            "transport": "streamable-http",
        },
    },
    "remote_servers": {
        "weather": {
            "description": "Weather forecasts.",
            "url": "https://weather.example.com/mcp",
            "transport": "streamable-http",
            "headers": [{"name": "X-Api-Key", "description": "key", "required": True}],
            "tags": ["weather"],
        }
    },
    "groups": [],
}

SERVER_JSON: dict[str, Any] = {
    "$schema": "https://static.modelcontextprotocol.io/schemas/2025-09-29/server.schema.json",
    "name": "io.github.example/weather",
    "description": "Weather data and forecasts",
    "version": "1.0.2",
    "repository": {"url": "https://github.com/example/weather", "source": "github"},
    "packages": [
        {
            "registryType": "oci",
            "identifier": "ghcr.io/example/weather",
            "version": "1.0.2",
            "transport": {"type": "stdio"},
            "environmentVariables": [{"name": "API_KEY", "isSecret": True, "isRequired": True}],
            "packageArguments": [{"type": "positional", "valueHint": "city"}],
            "runtimeArguments": [{"type": "named", "name": "--rm"}],
        }
    ],
    "remotes": [{"type": "sse", "url": "https://weather.example.com/sse"}],
    "_meta": {
        "io.modelcontextprotocol.registry/publisher-provided": {
            "io.github.stacklok": {"ghcr.io/example/weather": {"tags": ["weather", "api"]}}
        }
    },
}


def test_toolhive_entries_are_sorted_named_and_keep_unknown_fields() -> None:
    doc = parse_document(TOOLHIVE, fmt="toolhive")
    assert doc.format == "toolhive"
    assert doc.version == "1.0.0"
    assert doc.last_updated == "2025-09-25T00:00:00Z"
    assert [e.name for e in doc.entries] == ["fetch", "time", "weather"]
    time = doc.entries[1]
    assert time.description == "Time and timezone conversion."
    assert time.tags == ("time", "utility")
    assert time.body["name"] == "time"
    assert time.body["tags"] == ["time", "utility"]
    assert time.body["future_field"] == {"kept": True}
    assert doc.entries[0].tags == ()
    assert doc.entries[2].body["url"] == "https://weather.example.com/mcp"


def test_toolhive_entry_may_repeat_its_own_name() -> None:
    data = copy.deepcopy(TOOLHIVE)
    data["servers"]["time"]["name"] = "time"
    assert parse_document(data, fmt="toolhive").entries[1].name == "time"


def test_toolhive_without_last_updated_or_remote_servers_is_valid() -> None:
    doc = parse_document({"version": "1", "servers": {}}, fmt="toolhive")
    assert doc.entries == ()
    assert doc.last_updated is None


_DELETE = object()


def _changed(base: Any, path: list[str | int], value: Any) -> Any:
    """A copy of `base` with the value at `path` replaced by `value` (or deleted)."""
    data = copy.deepcopy(base)
    target: Any = data
    for key in path[:-1]:
        target = target[key]
    if value is _DELETE:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return data


TOOLHIVE_REJECTIONS = [
    ("not-an-object", None, [], "document: expected an object (got an array)"),
    ("version-missing", ["version"], _DELETE, "version: expected a value (required)"),
    ("version-number", ["version"], 1, "version: expected a string (got a number)"),
    ("version-blank", ["version"], " ", "version: expected a string, not empty"),
    ("last-updated-number", ["last_updated"], 5, "last_updated: expected a string"),
    ("servers-missing", ["servers"], _DELETE, "servers: expected a value (required)"),
    ("servers-array", ["servers"], [], "servers: expected an object (got an array)"),
    (
        "server-name-upper",
        ["servers", "Bad"],
        {},
        "servers.Bad: expected a server name of lower-case letters",
    ),
    (
        "server-name-space",
        ["servers", "a b"],
        {},
        'servers["a b"]: expected a server name',
    ),
    ("server-null", ["servers", "time"], None, "servers.time: expected an object (got null)"),
    (
        "description-missing",
        ["servers", "time", "description"],
        _DELETE,
        "servers.time.description: expected a value (required)",
    ),
    (
        "image-missing",
        ["servers", "time", "image"],
        _DELETE,
        "servers.time.image: expected a value (required)",
    ),
    (
        "image-spaces",
        ["servers", "time", "image"],
        "a b",
        'servers.time.image: expected an image reference (got "a b")',
    ),
    (
        "transport-unknown",
        ["servers", "time", "transport"],
        "tcp",
        'servers.time.transport: expected one of stdio, sse, streamable-http (got "tcp")',
    ),
    (
        "transport-missing",
        ["servers", "time", "transport"],
        _DELETE,
        "servers.time.transport: expected a value (required)",
    ),
    (
        "tools-not-strings",
        ["servers", "time", "tools"],
        ["a", 1],
        "servers.time.tools[1]: expected a string (got a number)",
    ),
    ("tags-object", ["servers", "time", "tags"], {}, "servers.time.tags: expected an array"),
    (
        "env-var-name",
        ["servers", "time", "env_vars"],
        [{"name": "1BAD"}],
        "servers.time.env_vars[0].name: expected an environment variable name",
    ),
    (
        "env-var-required-string",
        ["servers", "time", "env_vars"],
        [{"name": "A", "required": "yes"}],
        "servers.time.env_vars[0].required: expected true or false (got a string)",
    ),
    (
        "target-port-zero",
        ["servers", "time", "target_port"],
        0,
        "servers.time.target_port: expected a port number 1-65535",
    ),
    (
        "target-port-bool",
        ["servers", "time", "target_port"],
        True,
        "servers.time.target_port: expected a port number 1-65535",
    ),
    (
        "name-mismatch",
        ["servers", "time", "name"],
        "other",
        'servers.time.name: expected the entry\'s key "time" (got "other")',
    ),
    (
        "remote-url-missing",
        ["remote_servers", "weather", "url"],
        _DELETE,
        "remote_servers.weather.url: expected a value (required)",
    ),
    (
        "remote-url-scheme",
        ["remote_servers", "weather", "url"],
        "ftp://x",
        "remote_servers.weather.url: expected an http:// or https:// URL",
    ),
    (
        "remote-stdio",
        ["remote_servers", "weather", "transport"],
        "stdio",
        "remote_servers.weather.transport: expected one of sse, streamable-http",
    ),
    (
        "remote-header-name",
        ["remote_servers", "weather", "headers"],
        [{"name": "bad header"}],
        "remote_servers.weather.headers[0].name: expected an HTTP header name",
    ),
    (
        "remote-duplicates-server",
        ["remote_servers", "time"],
        {"description": "x", "url": "https://x", "transport": "sse"},
        "remote_servers.time: expected a name not already used in servers",
    ),
    ("groups-object", ["groups"], {}, "groups: expected an array (got an object)"),
]


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [pytest.param(p, v, m, id=i) for i, p, v, m in TOOLHIVE_REJECTIONS],
)
def test_toolhive_rejection_names_the_path_and_what_is_expected(
    path: list[str | int] | None, value: Any, message: str
) -> None:
    data = value if path is None else _changed(TOOLHIVE, path, value)
    with pytest.raises(RegistryFormatError) as caught:
        parse_document(data, fmt="toolhive")
    assert str(caught.value).startswith(message)


def test_upstream_accepts_a_list_of_server_json_documents() -> None:
    doc = parse_document([SERVER_JSON], fmt="upstream")
    assert doc.format == "upstream"
    assert doc.version is None
    (entry,) = doc.entries
    assert entry.name == "io.github.example/weather"
    assert entry.description == "Weather data and forecasts"
    assert entry.tags == ("weather", "api")
    assert entry.body["packages"] == SERVER_JSON["packages"]
    assert entry.body["tags"] == ["weather", "api"]


def test_upstream_accepts_the_registry_api_list_with_wrapped_servers() -> None:
    wrapped = {
        "servers": [
            {
                "server": {k: v for k, v in SERVER_JSON.items() if k != "_meta"},
                "_meta": {
                    "io.modelcontextprotocol.registry/official": {"isLatest": True},
                    "io.modelcontextprotocol.registry/publisher-provided": {"tags": ["x"]},
                },
            }
        ],
        "metadata": {"count": 1},
    }
    (entry,) = parse_document(wrapped, fmt="upstream").entries
    assert entry.tags == ("x",)
    assert entry.body["_meta"]["io.modelcontextprotocol.registry/official"] == {"isLatest": True}


def test_upstream_duplicate_names_keep_the_latest_version() -> None:
    def version(v: str, *, latest: bool) -> dict[str, Any]:
        meta = {"io.modelcontextprotocol.registry/official": {"isLatest": latest}}
        return {"name": "a.b/c", "description": "d", "version": v, "_meta": meta}

    doc = parse_document(
        [version("1", latest=False), version("2", latest=True), version("3", latest=False)],
        fmt="upstream",
    )
    assert [e.body["version"] for e in doc.entries] == ["2"]
    plain = [{"name": "a.b/c", "description": "d", "version": v} for v in ("1", "2")]
    assert [e.body["version"] for e in parse_document(plain, fmt="upstream").entries] == ["2"]


UPSTREAM_REJECTIONS = [
    (
        "object-without-servers",
        None,
        {"items": []},
        "document: expected an array of server.json documents, or an object with a servers array",
    ),
    ("item-string", None, ["x"], "[0]: expected an object (got a string)"),
    ("name-missing", ["name"], _DELETE, "[0].name: expected a value (required)"),
    ("name-no-slash", ["name"], "weather", "[0].name: expected a name like io.github.owner/server"),
    ("name-too-long", ["name"], "a/" + "b" * 250, "[0].name: expected at most 200 characters"),
    ("description-empty", ["description"], "", "[0].description: expected a string, not empty"),
    ("version-missing", ["version"], _DELETE, "[0].version: expected a value (required)"),
    ("packages-object", ["packages"], {}, "[0].packages: expected an array"),
    (
        "package-identifier",
        ["packages", 0, "identifier"],
        _DELETE,
        "[0].packages[0].identifier: expected a value (required)",
    ),
    (
        "package-transport-type",
        ["packages", 0, "transport"],
        {"type": "pipe"},
        '[0].packages[0].transport.type: expected one of stdio, sse, streamable-http (got "pipe")',
    ),
    (
        "package-http-without-url",
        ["packages", 0, "transport"],
        {"type": "streamable-http"},
        "[0].packages[0].transport.url: expected a value (required)",
    ),
    (
        "env-without-name",
        ["packages", 0, "environmentVariables"],
        [{"isSecret": True}],
        "[0].packages[0].environmentVariables[0].name: expected a value (required)",
    ),
    (
        "positional-without-value",
        ["packages", 0, "packageArguments"],
        [{"type": "positional"}],
        "[0].packages[0].packageArguments[0]: expected a value or a valueHint",
    ),
    (
        "named-without-name",
        ["packages", 0, "runtimeArguments"],
        [{"type": "named"}],
        "[0].packages[0].runtimeArguments[0].name: expected a value (required)",
    ),
    (
        "remote-stdio",
        ["remotes", 0, "type"],
        "stdio",
        '[0].remotes[0].type: expected one of sse, streamable-http (got "stdio")',
    ),
    ("repository-string", ["repository"], "x", "[0].repository: expected an object"),
    ("meta-array", ["_meta"], [], "[0]._meta: expected an object"),
]


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [pytest.param(p, v, m, id=i) for i, p, v, m in UPSTREAM_REJECTIONS],
)
def test_upstream_rejection_names_the_path_and_what_is_expected(
    path: list[str | int] | None, value: Any, message: str
) -> None:
    data = value if path is None else [_changed(SERVER_JSON, path, value)]
    with pytest.raises(RegistryFormatError) as caught:
        parse_document(data, fmt="upstream")
    assert str(caught.value).startswith(message)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        pytest.param(b"\xff\xfe", "document: expected UTF-8 text", id="not-utf8"),
        pytest.param("{", "line 1 column 2: expected valid JSON", id="truncated"),
        pytest.param("", "line 1 column 1: expected valid JSON", id="empty"),
        pytest.param("NaN", "document: expected valid JSON", id="nan"),
        pytest.param("[" * 100_000, "", id="deep"),
        pytest.param("1" * 5000, "document: expected valid JSON", id="huge-int"),
    ],
)
def test_undecodable_input_is_a_format_error(raw: bytes | str, message: str) -> None:
    with pytest.raises(RegistryFormatError) as caught:
        decode_json(raw)
    assert str(caught.value).startswith(message)


def test_a_byte_order_mark_is_allowed() -> None:
    assert decode_json(b"\xef\xbb\xbf{}") == {}
    assert parse_registry(json.dumps(TOOLHIVE).encode(), fmt="toolhive").version == "1.0.0"


def test_a_lone_surrogate_cannot_be_stored() -> None:
    raw = json.dumps({"version": "1", "servers": {}, "x": "\ud800"})
    # Unknown top-level keys are not stored, so this passes; inside an entry it cannot.
    assert prepare_registry(raw, fmt="toolhive", selection=None).server_count == 0
    data = copy.deepcopy(TOOLHIVE)
    data["servers"]["time"]["description"] = "bad \ud800"
    with pytest.raises(RegistryFormatError, match="surrogate"):
        prepare_registry(json.dumps(data), fmt="toolhive", selection=None)


# -- properties --------------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=30,
)


@st.composite
def mutated(draw: st.DrawFn, base: Any) -> Any:
    """`base` with one value somewhere replaced by arbitrary JSON, or a key dropped."""
    data = copy.deepcopy(base)
    target = data
    while True:
        if isinstance(target, dict) and target:
            key = draw(st.sampled_from(sorted(target)))
        elif isinstance(target, list) and target:
            key = draw(st.integers(0, len(target) - 1))
        else:
            return data
        if draw(st.booleans()):
            if isinstance(target, dict) and draw(st.booleans()):
                del target[key]
            else:
                target[key] = draw(json_values)
            return data
        target = target[key]


def _attempt(call: Callable[[], T]) -> tuple[T | None, str | None]:
    """The result of `call`, or the message of the `RegistryError` it raised."""
    try:
        return call(), None
    except RegistryError as exc:
        return None, str(exc)


@settings(max_examples=300)
@given(doc=json_values, fmt=st.sampled_from(["toolhive", "upstream"]))
def test_any_json_is_parsed_or_rejected_with_a_format_error(doc: Any, fmt: Any) -> None:
    parsed, error = _attempt(lambda: parse_document(doc, fmt=fmt))
    assert (parsed is None) != (error is None)
    assert error is None or ": expected " in error


@settings(max_examples=300)
@given(doc=mutated(TOOLHIVE))
def test_a_mutated_toolhive_document_is_stored_or_rejected_with_a_format_error(doc: Any) -> None:
    rendered, error = _attempt(
        lambda: prepare_registry(json.dumps(doc), fmt="toolhive", selection=None)
    )
    assert error is None or ": expected " in error
    if rendered is not None:
        assert json.loads(rendered.data)["format"] == "toolhive"


@settings(max_examples=300)
@given(doc=mutated([SERVER_JSON]))
def test_a_mutated_upstream_document_is_stored_or_rejected_with_a_format_error(doc: Any) -> None:
    rendered, error = _attempt(
        lambda: prepare_registry(json.dumps(doc), fmt="upstream", selection=None)
    )
    assert error is None or ": expected " in error
    if rendered is not None:
        assert json.loads(rendered.data)["format"] == "upstream"


@settings(max_examples=300)
@given(
    raw=st.binary(max_size=200) | st.text(max_size=200),
    fmt=st.sampled_from(["toolhive", "upstream"]),
)
def test_any_bytes_are_stored_or_rejected_with_a_registry_error(raw: bytes | str, fmt: Any) -> None:
    rendered, error = _attempt(lambda: prepare_registry(raw, fmt=fmt, selection=None))
    assert (rendered is None) != (error is None)
    if rendered is not None:
        assert json.loads(rendered.data)["format"] == fmt
