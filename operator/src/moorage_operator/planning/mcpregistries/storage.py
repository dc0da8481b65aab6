"""The storage of a synced registry: ConfigMap `<name>-registry-storage` (spec §2.3).

Pure. Keys:

- `registry.json`: the filtered registry in Moorage's stored form, which the registry API
  serves: `{"format", "version", "last_updated", "servers": [entry, ...]}` with the entries
  sorted by name, each the source's entry plus `name` and `tags`. Compact JSON with sorted keys,
  so equal data renders to equal bytes.
- `sync_metadata.json`: `{"timestamp", "hash", "serverCount", "source"}`.

The hash is the SHA-256 of `registry.json`; it is also the ConfigMap's
`moorage.dev/content-checksum` annotation, and the reconciler writes the ConfigMap only when the
hash differs (an unchanged source writes nothing). A ConfigMap holds at most 1 MiB of data;
a registry that does not fit is refused with `StorageTooLarge`, whose message says to filter.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlsplit, urlunsplit

from moorage_api.constants import (
    ANNOTATION_CONTENT_CHECKSUM,
    REGISTRY_DATA_KEY,
    REGISTRY_SYNC_METADATA_KEY,
)
from moorage_api.mcpregistry import RegistryFilter
from moorage_api.naming import registry_storage_configmap_name
from moorage_operator.planning.mcpregistries.children import JsonObject, Owner, child_metadata
from moorage_operator.planning.mcpregistries.filtering import filter_document
from moorage_operator.planning.mcpregistries.formats import (
    RegistryDocument,
    RegistryError,
    RegistryFormat,
    RegistryFormatError,
    parse_registry,
)

CONFIGMAP_MAX_DATA_BYTES: Final = 1024 * 1024
"""The apiserver's limit on a ConfigMap's data (keys and values together)."""
COMPONENT_STORAGE: Final = "registry-storage"
_TIMESTAMP_PLACEHOLDER: Final = "1970-01-01T00:00:00Z"


class StorageTooLarge(RegistryError):
    """The filtered registry does not fit in a ConfigMap."""

    def __init__(self, size: int) -> None:
        self.size = size
        super().__init__(
            f"the filtered registry takes {size / 1048576:.2f} MiB, more than a ConfigMap holds "
            f"(1 MiB); keep fewer servers with spec.filter"
        )


@dataclass(frozen=True, slots=True)
class RenderedRegistry:
    """`registry.json` ready to store."""

    data: str
    """The text of `registry.json`."""
    hash: str
    """SHA-256 (hex) of `data` in UTF-8."""
    server_count: int
    format: RegistryFormat


def render_registry(doc: RegistryDocument) -> RenderedRegistry:
    """The stored form of `doc`; `RegistryFormatError` if a value cannot be stored as text."""
    stored: dict[str, Any] = {
        "format": doc.format,
        "version": doc.version,
        "last_updated": doc.last_updated,
        "servers": [dict(entry.body) for entry in doc.entries],
    }
    try:
        data = json.dumps(stored, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        encoded = data.encode("utf-8")
    except RecursionError:
        raise RegistryFormatError("document", "JSON nested less deeply") from None
    except UnicodeEncodeError:
        # json.loads turns an escaped lone surrogate ("\ud800") into a str that is not text.
        raise RegistryFormatError(
            "document", "text without unpaired UTF-16 surrogate escapes"
        ) from None
    return RenderedRegistry(
        data=data,
        hash=hashlib.sha256(encoded).hexdigest(),
        server_count=len(doc.entries),
        format=doc.format,
    )


def prepare_registry(
    raw: bytes | str, *, fmt: RegistryFormat, selection: RegistryFilter | None
) -> RenderedRegistry:
    """Source bytes → validated, filtered, rendered registry. Raises only `RegistryError`."""
    return render_registry(filter_document(parse_registry(raw, fmt=fmt), selection))


def render_sync_metadata(rendered: RenderedRegistry, *, timestamp: str, source: str) -> str:
    """`sync_metadata.json` for data stored at `timestamp` from `source`."""
    return json.dumps(
        {
            "timestamp": timestamp,
            "hash": rendered.hash,
            "serverCount": rendered.server_count,
            "source": source,
        },
        sort_keys=True,
        indent=2,
    )


def data_size(data: Mapping[str, str]) -> int:
    """Bytes a ConfigMap's `data` counts against the limit, as the apiserver counts them."""
    return sum(len(key.encode()) + len(value.encode()) for key, value in data.items())


def _storage_data(rendered: RenderedRegistry, *, metadata_json: str) -> dict[str, str]:
    data = {REGISTRY_DATA_KEY: rendered.data, REGISTRY_SYNC_METADATA_KEY: metadata_json}
    size = data_size(data)
    if size > CONFIGMAP_MAX_DATA_BYTES:
        raise StorageTooLarge(size)
    return data


def check_fits(rendered: RenderedRegistry, *, source: str) -> None:
    """Raise `StorageTooLarge` if `rendered`, stored with its metadata, would not fit.

    Lets a caller refuse data before deciding to store it; the metadata's timestamp always has
    the same length, so a placeholder measures the same.
    """
    metadata_json = render_sync_metadata(rendered, timestamp=_TIMESTAMP_PLACEHOLDER, source=source)
    _storage_data(rendered, metadata_json=metadata_json)


def desired_storage_configmap(
    owner: Owner, rendered: RenderedRegistry, *, metadata_json: str
) -> JsonObject:
    """The storage ConfigMap holding `rendered`; raises `StorageTooLarge` when it cannot."""
    data = _storage_data(rendered, metadata_json=metadata_json)
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": child_metadata(
            owner,
            name=registry_storage_configmap_name(owner.name),
            component=COMPONENT_STORAGE,
            annotations={ANNOTATION_CONTENT_CHECKSUM: rendered.hash},
        ),
        "data": data,
    }


def stored_hash(configmap: Mapping[str, Any] | None) -> str | None:
    """The hash of the registry a storage ConfigMap holds (None: no ConfigMap or no data)."""
    if configmap is None:
        return None
    meta = configmap.get("metadata") or {}
    annotations = meta.get("annotations") or {}
    value = annotations.get(ANNOTATION_CONTENT_CHECKSUM)
    has_data = REGISTRY_DATA_KEY in (configmap.get("data") or {})
    return str(value) if value and has_data else None


def redact_url(url: str) -> str:
    """`url` without a password in its user info (`https://user:secret@host` → `user@host`)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    netloc = f"{parts.username}@{host}" if parts.username else host
    return urlunsplit(parts._replace(netloc=netloc))


def describe_configmap_source(*, namespace: str, name: str, key: str) -> str:
    """`sync_metadata.json`'s `source` for a ConfigMap."""
    return f"configmap:{namespace}/{name}#{key}"


def describe_git_source(*, repository: str, commit: str, path: str) -> str:
    """`sync_metadata.json`'s `source` for a git checkout."""
    return f"git:{redact_url(repository)}@{commit}#{path}"
