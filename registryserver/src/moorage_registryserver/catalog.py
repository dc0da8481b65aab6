"""The registry data the API serves, and the queries over it.

Pure: no I/O. The operator stores an MCPRegistry's synced data in ConfigMap
`<name>-registry-storage`, mounted into the API's pod:

- `registry.json`: `{"format", "version", "last_updated", "servers": [entry, ...]}`, each entry
  a JSON object with at least `name` (unique), `description` and `tags` (the source's entry plus
  those), sorted by name;
- `sync_metadata.json`: `{"timestamp", "hash", "serverCount", "source"}`.

`parse_catalog` reads them defensively (the files could be edited by hand or be half-written):
anything it cannot serve raises `CatalogError`, and the caller keeps serving what it had.
Queries: `?search=` is a case-insensitive substring of the name or the description; `?tag=`
(repeatable) keeps servers carrying every tag given; `?limit=` and `?cursor=` page through the
result in name order (the cursor is the last name of the previous page).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

MAX_LIMIT: Final = 1000


class CatalogError(ValueError):
    """The stored data cannot be served; the message says why."""


class QueryError(ValueError):
    """A query parameter is invalid; the message names it."""


@dataclass(frozen=True, slots=True)
class Catalog:
    """One loaded version of the registry data. Entries are shared: treat them as read-only."""

    servers: tuple[Mapping[str, Any], ...]
    """Sorted by name."""
    format: str | None = None
    version: str | None = None
    last_updated: str | None = None
    sync: Mapping[str, Any] = field(default_factory=dict)
    """The contents of `sync_metadata.json` (empty when absent or unreadable)."""
    by_name: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def get(self, name: str) -> Mapping[str, Any] | None:
        return self.by_name.get(name)


@dataclass(frozen=True, slots=True)
class Query:
    """A validated `/v0/servers` query."""

    search: str = ""
    tags: tuple[str, ...] = ()
    limit: int | None = None
    cursor: str | None = None


@dataclass(frozen=True, slots=True)
class Page:
    """The answer to a query."""

    servers: list[Mapping[str, Any]]
    next_cursor: str | None


def _optional_text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def parse_catalog(registry_json: bytes, *, sync_metadata: bytes | None = None) -> Catalog:
    """The catalog in a stored `registry.json` (and its `sync_metadata.json`)."""
    try:
        doc = json.loads(registry_json)
    except (ValueError, RecursionError) as exc:
        raise CatalogError(f"registry.json is not valid JSON: {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("servers"), list):
        raise CatalogError("registry.json: expected an object with a servers array")
    by_name: dict[str, Mapping[str, Any]] = {}
    for index, entry in enumerate(doc["servers"]):
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise CatalogError(f"registry.json: servers[{index}] is not an object with a name")
        if entry["name"] in by_name:
            raise CatalogError(f"registry.json: server {entry['name']!r} is listed twice")
        by_name[entry["name"]] = entry
    sync: Mapping[str, Any] = {}
    if sync_metadata:
        try:
            loaded = json.loads(sync_metadata)
        except (ValueError, RecursionError):
            loaded = None
        # The metadata is informative only; unreadable metadata does not block serving.
        if isinstance(loaded, dict):
            sync = loaded
    return Catalog(
        servers=tuple(by_name[name] for name in sorted(by_name)),
        format=_optional_text(doc.get("format")),
        version=_optional_text(doc.get("version")),
        last_updated=_optional_text(doc.get("last_updated")),
        sync=sync,
        by_name=by_name,
    )


def parse_query(params: Mapping[str, str], *, tags: Sequence[str] = ()) -> Query:
    """A query from URL parameters (`tags`: every `tag` value given)."""
    limit: int | None = None
    raw_limit = params.get("limit")
    if raw_limit is not None:
        try:
            limit = int(raw_limit)
        except ValueError:
            raise QueryError(f"limit: expected a whole number, got {raw_limit!r}") from None
        if not 1 <= limit <= MAX_LIMIT:
            raise QueryError(f"limit: expected 1-{MAX_LIMIT}, got {limit}")
    cursor = params.get("cursor") or None
    return Query(
        search=params.get("search", "").strip(),
        tags=tuple(tag for tag in tags if tag),
        limit=limit,
        cursor=cursor,
    )


def _tags_of(entry: Mapping[str, Any]) -> set[str]:
    tags = entry.get("tags")
    if not isinstance(tags, list):
        return set()
    return {tag for tag in tags if isinstance(tag, str)}


def matches(entry: Mapping[str, Any], query: Query) -> bool:
    """Whether `entry` answers `query` (ignoring paging)."""
    if query.search:
        needle = query.search.casefold()
        name = str(entry.get("name", ""))
        description = entry.get("description")
        text = description if isinstance(description, str) else ""
        if needle not in name.casefold() and needle not in text.casefold():
            return False
    return not query.tags or set(query.tags) <= _tags_of(entry)


def search(catalog: Catalog, query: Query) -> Page:
    """The servers answering `query`, one page of them."""
    found = [
        entry
        for entry in catalog.servers
        if (query.cursor is None or str(entry["name"]) > query.cursor) and matches(entry, query)
    ]
    if query.limit is not None and len(found) > query.limit:
        page = found[: query.limit]
        return Page(servers=page, next_cursor=str(page[-1]["name"]))
    return Page(servers=found, next_cursor=None)
