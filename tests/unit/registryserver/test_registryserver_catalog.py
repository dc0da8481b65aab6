"""The registry API's data and queries: what is served, what is refused, how queries filter."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from moorage_registryserver.catalog import (
    Catalog,
    CatalogError,
    Query,
    QueryError,
    parse_catalog,
    parse_query,
    search,
)

SERVERS: list[dict[str, Any]] = [
    {"name": "time", "description": "Time and timezones", "tags": ["time", "utility"]},
    {"name": "fetch", "description": "Fetches web pages", "tags": ["web"]},
    {"name": "io.github.acme/weather", "description": "Weather forecasts", "tags": ["web", "api"]},
    {"name": "notes", "description": "Keeps notes about TIME spent"},
]


def catalog() -> Catalog:
    raw = json.dumps({"format": "toolhive", "version": "1.0.0", "servers": SERVERS}).encode()
    meta = json.dumps({"hash": "abc", "timestamp": "t", "serverCount": 4, "source": "s"})
    return parse_catalog(raw, sync_metadata=meta.encode())


def test_parse_catalog_sorts_servers_and_reads_metadata() -> None:
    cat = catalog()
    assert [s["name"] for s in cat.servers] == ["fetch", "io.github.acme/weather", "notes", "time"]
    assert (cat.format, cat.version, cat.last_updated) == ("toolhive", "1.0.0", None)
    assert cat.sync["hash"] == "abc"
    assert cat.get("time") == SERVERS[0]
    assert cat.get("missing") is None


def test_unreadable_metadata_does_not_block_serving() -> None:
    cat = parse_catalog(json.dumps({"servers": []}).encode(), sync_metadata=b"{broken")
    assert cat.sync == {}
    assert cat.servers == ()


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        pytest.param(b"{", "registry.json is not valid JSON", id="truncated"),
        pytest.param(b"[]", "expected an object with a servers array", id="array"),
        pytest.param(b'{"servers": {}}', "expected an object with a servers array", id="map"),
        pytest.param(b'{"servers": [1]}', "servers[0] is not an object with a name", id="item"),
        pytest.param(b'{"servers": [{"name": 1}]}', "servers[0] is not an object", id="name"),
        pytest.param(
            b'{"servers": [{"name": "a"}, {"name": "a"}]}', "'a' is listed twice", id="duplicate"
        ),
    ],
)
def test_parse_catalog_refuses_what_it_cannot_serve(raw: bytes, message: str) -> None:
    with pytest.raises(CatalogError, match=re.escape(message)):
        parse_catalog(raw)


@given(st.binary(max_size=300))
def test_any_bytes_are_a_catalog_or_a_catalog_error(raw: bytes) -> None:
    try:
        result: Catalog | str = parse_catalog(raw, sync_metadata=raw)
    except CatalogError as exc:
        result = str(exc)
    assert isinstance(result, Catalog | str)
    assert result


@pytest.mark.parametrize(
    ("query", "names"),
    [
        pytest.param(Query(), ["fetch", "io.github.acme/weather", "notes", "time"], id="all"),
        pytest.param(Query(search="time"), ["notes", "time"], id="search-case-insensitive"),
        pytest.param(Query(search="ACME"), ["io.github.acme/weather"], id="search-name"),
        pytest.param(Query(search="nothing"), [], id="search-misses"),
        pytest.param(Query(tags=("web",)), ["fetch", "io.github.acme/weather"], id="tag"),
        pytest.param(Query(tags=("web", "api")), ["io.github.acme/weather"], id="every-tag"),
        pytest.param(Query(tags=("Web",)), [], id="tags-exact"),
        pytest.param(Query(search="web", tags=("web",)), ["fetch"], id="search-and-tag"),
        pytest.param(Query(cursor="notes"), ["time"], id="after-cursor"),
    ],
)
def test_search(query: Query, names: list[str]) -> None:
    page = search(catalog(), query)
    assert [s["name"] for s in page.servers] == names
    assert page.next_cursor is None


def test_paging_walks_every_server_once() -> None:
    seen: list[str] = []
    cursor: str | None = None
    for _ in range(10):
        page = search(catalog(), Query(limit=3, cursor=cursor))
        seen.extend(str(s["name"]) for s in page.servers)
        cursor = page.next_cursor
        if cursor is None:
            break
    assert seen == ["fetch", "io.github.acme/weather", "notes", "time"]


@pytest.mark.parametrize(
    ("params", "tags", "expected"),
    [
        pytest.param({}, [], Query(), id="empty"),
        pytest.param({"search": "  x "}, [], Query(search="x"), id="search-trimmed"),
        pytest.param({"limit": "5", "cursor": "a"}, [], Query(limit=5, cursor="a"), id="paging"),
        pytest.param({}, ["a", "", "b"], Query(tags=("a", "b")), id="tags"),
        pytest.param({"cursor": ""}, [], Query(), id="empty-cursor"),
    ],
)
def test_parse_query(params: dict[str, str], tags: list[str], expected: Query) -> None:
    assert parse_query(params, tags=tags) == expected


@pytest.mark.parametrize(
    ("limit", "message"),
    [("x", "limit: expected a whole number"), ("0", "limit: expected 1-1000"), ("1001", "1-1000")],
)
def test_parse_query_rejects_bad_limits(limit: str, message: str) -> None:
    with pytest.raises(QueryError, match=message):
        parse_query({"limit": limit})
