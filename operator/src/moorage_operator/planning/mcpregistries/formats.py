"""The registry source formats: decode, validate and turn into entries.

Pure: no I/O. Two formats (spec §2.3, `source.format`):

- `toolhive`: ToolHive's registry JSON, an object with `version`, `last_updated`, `servers`
  (name → container server: `description`, `image`, `transport`, `tools`, `tags`, `tier`,
  `status`, `env_vars`, ...) and optionally `remote_servers` (name → `url`, `description`,
  `transport`, ...). `groups` are accepted and not carried over.
- `upstream`: the official MCP registry's `server.json` documents: a JSON array of them, or an
  object with a `servers` array (the registry API's list answer), whose items are `server.json`
  documents or `{"server": {...}, "_meta": {...}}` wrappers. A name listed more than once keeps
  the entry the official metadata marks `isLatest`, else the last one.

Validation stops at the first problem and says where and what was expected
(`servers.time.transport: expected one of stdio, sse, streamable-http (got "tcp")`), so a person
can fix the document. Fields we do not know are kept as they are (formats grow); fields we know
must have the right shape. Every failure is a `RegistryFormatError`; nothing else escapes for any
input.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

from moorage_api.jsonkinds import describe_json_type

RegistryFormat = Literal["toolhive", "upstream"]

TRANSPORTS: Final = ("stdio", "sse", "streamable-http")
REMOTE_TRANSPORTS: Final = ("sse", "streamable-http")

# ToolHive's schema asks for `^[a-z0-9][a-z0-9-]+[a-z0-9]$`; we also accept one-character names
# and dots and underscores, which cost nothing and appear in private registries.
TOOLHIVE_NAME_PATTERN: Final = re.compile(r"[a-z0-9]([a-z0-9._-]{0,198}[a-z0-9])?")
UPSTREAM_NAME_PATTERN: Final = re.compile(r"[a-zA-Z0-9.-]+/[a-zA-Z0-9._-]+")
ENV_NAME_PATTERN: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
HEADER_NAME_PATTERN: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]*")
URL_PATTERN: Final = re.compile(r"https?://\S+")
UPSTREAM_NAME_MAX: Final = 200

OFFICIAL_META: Final = "io.modelcontextprotocol.registry/official"
PUBLISHER_META: Final = "io.modelcontextprotocol.registry/publisher-provided"
_TAG_SEARCH_DEPTH: Final = 4
_SIMPLE_KEY: Final = re.compile(r"[A-Za-z0-9_-]+")


class RegistryError(ValueError):
    """Registry data we cannot store; the message says why in a sentence a person can act on."""


class RegistryFormatError(RegistryError):
    """The document is not valid in its format: `path` is where, `expected` what should be."""

    def __init__(self, path: str, expected: str, *, got: str | None = None) -> None:
        self.path = path or "document"
        self.expected = expected
        self.got = got
        text = f"{self.path}: expected {expected}"
        if got is not None:
            text += f" (got {got})"
        super().__init__(text)


@dataclass(frozen=True, slots=True)
class RegistryEntry:
    """One MCP server of a registry."""

    name: str
    """Unique within the document."""
    description: str
    tags: tuple[str, ...]
    """Free-form tags the filter and the API's `?tag=` match on; may be empty."""
    body: Mapping[str, Any]
    """The JSON stored and served for this server: the source's entry plus `name` and `tags`.
    Treat as read-only."""


@dataclass(frozen=True, slots=True)
class RegistryDocument:
    """A validated source document."""

    format: RegistryFormat
    version: str | None
    """The document's own version (`toolhive`); None for `upstream`."""
    last_updated: str | None
    """When the source says it was last updated (`toolhive`); None for `upstream`."""
    entries: tuple[RegistryEntry, ...]
    """Sorted by name, names unique."""


# -- decoding --------------------------------------------------------------------------------


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def decode_json(raw: bytes | str) -> Any:
    """The JSON value in `raw` (UTF-8, a BOM allowed); `RegistryFormatError` when it is not."""
    if isinstance(raw, bytes):
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise RegistryFormatError(
                "document", "UTF-8 text", got=f"an invalid byte at offset {exc.start}"
            ) from None
    else:
        text = raw.removeprefix("\ufeff")
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise RegistryFormatError(
            f"line {exc.lineno} column {exc.colno}", f"valid JSON ({exc.msg})"
        ) from None
    except RecursionError:
        raise RegistryFormatError("document", "JSON nested less deeply") from None
    except ValueError as exc:
        # NaN/Infinity, or an integer with more digits than Python converts.
        raise RegistryFormatError("document", "valid JSON", got=str(exc)) from None


def parse_registry(raw: bytes | str, *, fmt: RegistryFormat) -> RegistryDocument:
    """Decode and validate a source document of format `fmt`."""
    return parse_document(decode_json(raw), fmt=fmt)


def parse_document(doc: Any, *, fmt: RegistryFormat) -> RegistryDocument:
    """Validate a decoded document of format `fmt`."""
    if fmt == "toolhive":
        return parse_toolhive(doc)
    if fmt == "upstream":
        return parse_upstream(doc)
    raise RegistryFormatError("source.format", "toolhive or upstream", got=_show(fmt))


# -- shapes ------------------------------------------------------------------------------------


def _kind(value: Any) -> str:
    """How a JSON value reads in a message: `a string`, `null`, `an array` ..."""
    return describe_json_type(value, array="an array")


def _show(value: Any) -> str:
    if isinstance(value, str):
        shown = json.dumps(value[:60], ensure_ascii=True)
        return shown if len(value) <= 60 else shown[:-1] + '..."'
    return _kind(value)


def _child(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    if _SIMPLE_KEY.fullmatch(key) is None:
        return f"{path}[{json.dumps(key, ensure_ascii=True)}]"
    return f"{path}.{key}" if path else key


def _object(value: Any, path: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise RegistryFormatError(path, "an object", got=_kind(value))
    return value


def _array(value: Any, path: str) -> list[Any]:
    if not isinstance(value, list):
        raise RegistryFormatError(path, "an array", got=_kind(value))
    return value


def _string(
    value: Any,
    path: str,
    *,
    non_empty: bool = False,
    pattern: re.Pattern[str] | None = None,
    what: str = "a string",
    max_length: int | None = None,
) -> str:
    if not isinstance(value, str):
        raise RegistryFormatError(path, what, got=_kind(value))
    if non_empty and not value.strip():
        raise RegistryFormatError(path, f"{what}, not empty")
    if max_length is not None and len(value) > max_length:
        raise RegistryFormatError(path, f"at most {max_length} characters", got=str(len(value)))
    if pattern is not None and pattern.fullmatch(value) is None:
        raise RegistryFormatError(path, what, got=_show(value))
    return value


def _choice(value: Any, path: str, options: Sequence[str]) -> str:
    if not isinstance(value, str) or value not in options:
        raise RegistryFormatError(path, f"one of {', '.join(options)}", got=_show(value))
    return value


def _boolean(value: Any, path: str) -> bool:
    if not isinstance(value, bool):
        raise RegistryFormatError(path, "true or false", got=_kind(value))
    return value


def _port(value: Any, path: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise RegistryFormatError(path, "a port number 1-65535", got=_show(value))
    return value


def _strings(value: Any, path: str) -> list[str]:
    items = _array(value, path)
    for index, item in enumerate(items):
        _string(item, _child(path, index))
    return items


def _required(entry: Mapping[str, Any], key: str, path: str) -> Any:
    if key not in entry:
        raise RegistryFormatError(_child(path, key), "a value (required)")
    return entry[key]


Check = Callable[[Any, str], object]
"""Validates the value at a path; raises `RegistryFormatError`."""


def _check_optional(entry: Mapping[str, Any], path: str, checks: Mapping[str, Check]) -> None:
    """Run the check of every known key present in `entry` (absent keys are fine)."""
    for key, check in checks.items():
        if key in entry:
            check(entry[key], _child(path, key))


def _each_object(check: Callable[[dict[str, Any], str], object]) -> Check:
    """A check for an array whose items are objects that `check` validates."""

    def run(value: Any, path: str) -> None:
        for index, item in enumerate(_array(value, path)):
            item_path = _child(path, index)
            check(_object(item, item_path), item_path)

    return run


def _named(pattern: re.Pattern[str], what: str) -> Callable[[dict[str, Any], str], None]:
    """An object with a `name` matching `pattern` (env vars, headers)."""

    def run(item: dict[str, Any], path: str) -> None:
        _string(_required(item, "name", path), _child(path, "name"), pattern=pattern, what=what)

    return run


def _optional_string(value: Any, path: str) -> str:
    return _string(value, path)


# -- toolhive ----------------------------------------------------------------------------------


def _toolhive_env_var(item: dict[str, Any], path: str) -> None:
    _named(ENV_NAME_PATTERN, "an environment variable name")(item, path)
    _check_optional(
        item,
        path,
        {
            "description": _optional_string,
            "required": _boolean,
            "secret": _boolean,
            "default": _optional_string,
        },
    )


_TOOLHIVE_COMMON: Final[Mapping[str, Check]] = {
    "tier": _optional_string,
    "status": _optional_string,
    "tools": _strings,
    "tags": _strings,
    "env_vars": _each_object(_toolhive_env_var),
    "repository_url": _optional_string,
    "metadata": _object,
    "custom_metadata": _object,
}


def _toolhive_entry(name: str, entry: dict[str, Any], path: str, *, remote: bool) -> RegistryEntry:
    description = _string(
        _required(entry, "description", path), _child(path, "description"), non_empty=True
    )
    if remote:
        _string(
            _required(entry, "url", path),
            _child(path, "url"),
            pattern=URL_PATTERN,
            what="an http:// or https:// URL",
        )
        _choice(_required(entry, "transport", path), _child(path, "transport"), REMOTE_TRANSPORTS)
        _check_optional(
            entry,
            path,
            {
                **_TOOLHIVE_COMMON,
                "headers": _each_object(_named(HEADER_NAME_PATTERN, "an HTTP header name")),
                "oauth_config": _object,
            },
        )
    else:
        _string(
            _required(entry, "image", path),
            _child(path, "image"),
            non_empty=True,
            pattern=re.compile(r"\S+"),
            what="an image reference",
        )
        _choice(_required(entry, "transport", path), _child(path, "transport"), TRANSPORTS)
        _check_optional(
            entry,
            path,
            {
                **_TOOLHIVE_COMMON,
                "args": _strings,
                "target_port": _port,
                "proxy_port": _port,
                "permissions": _object,
                "provenance": _object,
                "docker_tags": _strings,
            },
        )
    if "name" in entry and entry["name"] != name:
        raise RegistryFormatError(
            _child(path, "name"), f"the entry's key {_show(name)}", got=_show(entry["name"])
        )
    tags = tuple(dict.fromkeys(entry.get("tags") or ()))
    body = {**entry, "name": name, "tags": list(tags)}
    return RegistryEntry(name=name, description=description, tags=tags, body=body)


def _toolhive_servers(
    value: Any, path: str, *, remote: bool, taken: Mapping[str, RegistryEntry]
) -> list[RegistryEntry]:
    servers = _object(value, path)
    entries: list[RegistryEntry] = []
    for name, entry in servers.items():
        entry_path = _child(path, name)
        _string(
            name,
            entry_path,
            pattern=TOOLHIVE_NAME_PATTERN,
            what="a server name of lower-case letters, digits, '.', '_' and '-'",
        )
        if name in taken:
            raise RegistryFormatError(entry_path, "a name not already used in servers")
        entries.append(_toolhive_entry(name, _object(entry, entry_path), entry_path, remote=remote))
    return entries


def parse_toolhive(doc: Any) -> RegistryDocument:
    """Validate a decoded ToolHive registry document."""
    root = _object(doc, "")
    version = _string(_required(root, "version", ""), "version", non_empty=True)
    last_updated = None
    if "last_updated" in root:
        last_updated = _string(root["last_updated"], "last_updated")
    servers = _toolhive_servers(_required(root, "servers", ""), "servers", remote=False, taken={})
    by_name = {entry.name: entry for entry in servers}
    if "remote_servers" in root:
        remote = _toolhive_servers(
            root["remote_servers"], "remote_servers", remote=True, taken=by_name
        )
        by_name.update((entry.name, entry) for entry in remote)
    if "groups" in root:
        _array(root["groups"], "groups")
    return RegistryDocument(
        format="toolhive",
        version=version,
        last_updated=last_updated,
        entries=tuple(by_name[name] for name in sorted(by_name)),
    )


# -- upstream ----------------------------------------------------------------------------------


def _key_value_input(item: dict[str, Any], path: str) -> None:
    _string(_required(item, "name", path), _child(path, "name"), non_empty=True)
    _check_optional(
        item,
        path,
        {
            "description": _optional_string,
            "value": _optional_string,
            "default": _optional_string,
            "isRequired": _boolean,
            "isSecret": _boolean,
            "choices": _strings,
        },
    )


def _argument(item: dict[str, Any], path: str) -> None:
    kind = _choice(_required(item, "type", path), _child(path, "type"), ("positional", "named"))
    if kind == "named":
        _string(_required(item, "name", path), _child(path, "name"), non_empty=True)
    elif "value" not in item and "valueHint" not in item:
        raise RegistryFormatError(path, "a value or a valueHint for a positional argument")
    _check_optional(
        item,
        path,
        {
            "value": _optional_string,
            "valueHint": _optional_string,
            "description": _optional_string,
            "isRequired": _boolean,
            "isRepeated": _boolean,
            "isSecret": _boolean,
        },
    )


def _transport(value: Any, path: str, *, options: Sequence[str]) -> None:
    transport = _object(value, path)
    kind = _choice(_required(transport, "type", path), _child(path, "type"), options)
    if kind != "stdio":
        _string(_required(transport, "url", path), _child(path, "url"), non_empty=True)
    _check_optional(transport, path, {"headers": _each_object(_key_value_input)})


def _package(item: dict[str, Any], path: str) -> None:
    _string(_required(item, "registryType", path), _child(path, "registryType"), non_empty=True)
    _string(_required(item, "identifier", path), _child(path, "identifier"), non_empty=True)
    _transport(_required(item, "transport", path), _child(path, "transport"), options=TRANSPORTS)
    _check_optional(
        item,
        path,
        {
            "version": _optional_string,
            "registryBaseUrl": _optional_string,
            "runtimeHint": _optional_string,
            "fileSha256": _optional_string,
            "runtimeArguments": _each_object(_argument),
            "packageArguments": _each_object(_argument),
            "environmentVariables": _each_object(_key_value_input),
        },
    )


def _remote(item: dict[str, Any], path: str) -> None:
    _transport(item, path, options=REMOTE_TRANSPORTS)


def _repository(value: Any, path: str) -> None:
    repository = _object(value, path)
    _check_optional(
        repository,
        path,
        {
            "url": _optional_string,
            "source": _optional_string,
            "id": _optional_string,
            "subfolder": _optional_string,
        },
    )


def _find_tags(value: Any, depth: int) -> list[str]:
    """Every string of every `tags` array within `depth` levels of objects."""
    if depth <= 0 or not isinstance(value, dict):
        return []
    found: list[str] = []
    tags = value.get("tags")
    if isinstance(tags, list):
        found.extend(tag for tag in tags if isinstance(tag, str))
    for key, child in value.items():
        if key != "tags":
            found.extend(_find_tags(child, depth - 1))
    return found


def _upstream_tags(*metas: Any) -> tuple[str, ...]:
    """Tags a publisher put in `_meta` (ToolHive nests them under its own extension keys)."""
    found: list[str] = []
    for meta in metas:
        if isinstance(meta, dict):
            found.extend(_find_tags(meta.get(PUBLISHER_META), _TAG_SEARCH_DEPTH))
    return tuple(dict.fromkeys(found))


def _is_latest(*metas: Any) -> bool:
    for meta in metas:
        if isinstance(meta, dict):
            official = meta.get(OFFICIAL_META)
            if isinstance(official, dict) and official.get("isLatest") is True:
                return True
    return False


@dataclass(frozen=True, slots=True)
class _Candidate:
    entry: RegistryEntry
    latest: bool


def _upstream_entry(item: Any, path: str) -> _Candidate:
    outer = _object(item, path)
    server, server_path, outer_meta = outer, path, None
    if "server" in outer and "name" not in outer:
        server_path = _child(path, "server")
        server = _object(outer["server"], server_path)
        if "_meta" in outer:
            outer_meta = _object(outer["_meta"], _child(path, "_meta"))
    name = _string(
        _required(server, "name", server_path),
        _child(server_path, "name"),
        pattern=UPSTREAM_NAME_PATTERN,
        what="a name like io.github.owner/server",
        max_length=UPSTREAM_NAME_MAX,
    )
    description = _string(
        _required(server, "description", server_path),
        _child(server_path, "description"),
        non_empty=True,
    )
    _string(
        _required(server, "version", server_path), _child(server_path, "version"), non_empty=True
    )
    _check_optional(
        server,
        server_path,
        {
            "title": _optional_string,
            "websiteUrl": _optional_string,
            "status": _optional_string,
            "repository": _repository,
            "packages": _each_object(_package),
            "remotes": _each_object(_remote),
            "_meta": _object,
        },
    )
    server_meta = server.get("_meta")
    tags = _upstream_tags(server_meta, outer_meta)
    body: dict[str, Any] = {**server, "tags": list(tags)}
    if outer_meta is not None:
        body["_meta"] = {**outer_meta, **(server_meta or {})}
    return _Candidate(
        entry=RegistryEntry(name=name, description=description, tags=tags, body=body),
        latest=_is_latest(server_meta, outer_meta),
    )


def parse_upstream(doc: Any) -> RegistryDocument:
    """Validate a decoded list of `server.json` documents."""
    if isinstance(doc, list):
        items, path = doc, ""
    elif isinstance(doc, dict) and isinstance(doc.get("servers"), list):
        items, path = doc["servers"], "servers"
    else:
        raise RegistryFormatError(
            "document",
            "an array of server.json documents, or an object with a servers array",
            got=_kind(doc),
        )
    chosen: dict[str, _Candidate] = {}
    for index, item in enumerate(items):
        candidate = _upstream_entry(item, _child(path, index))
        previous = chosen.get(candidate.entry.name)
        if previous is None or candidate.latest or not previous.latest:
            chosen[candidate.entry.name] = candidate
    return RegistryDocument(
        format="upstream",
        version=None,
        last_updated=None,
        entries=tuple(chosen[name].entry for name in sorted(chosen)),
    )
