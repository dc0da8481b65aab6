"""Keeps the served catalog in step with the files in the data directory.

A ConfigMap volume updates atomically: the kubelet writes a new timestamped directory and swaps
the `..data` symlink that `registry.json` points through, so the file we open after a swap is a
different inode. `DataStore.refresh()` compares a signature of the files (device, inode, size,
mtime, following symlinks) with the one it loaded and reloads only when it changed; `run()`
calls it every `interval` seconds. A file that cannot be parsed is logged and counted, and the
last good catalog keeps being served. Reading happens in a worker thread (the files are up to
1 MiB), never on the event loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import structlog

from moorage_registryserver.catalog import Catalog, CatalogError, parse_catalog

log = structlog.get_logger(__name__)

REGISTRY_FILE: Final = "registry.json"
METADATA_FILE: Final = "sync_metadata.json"

Signature = tuple[tuple[int, int, int, int] | None, ...]
"""Per file (registry.json, sync_metadata.json): (device, inode, size, mtime ns), or None."""


@dataclass(frozen=True, slots=True)
class Reload:
    """What one refresh did."""

    changed: bool
    """The files differed from the last load (whether or not they parsed)."""
    error: str | None = None
    """Why the new files could not be served (the previous catalog stays)."""


def _stat(path: Path) -> tuple[int, int, int, int] | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


class DataStore:
    """The current catalog of a data directory, reloaded when its files change."""

    def __init__(
        self,
        data_dir: Path,
        *,
        on_reload: Callable[[Reload, Catalog | None], None] | None = None,
    ) -> None:
        self.data_dir = data_dir
        self.catalog: Catalog | None = None
        """The catalog being served; None until valid data was loaded once."""
        self.last_error: str | None = None
        """Why the latest files could not be served, if they could not."""
        self._signature: Signature | None = None
        self._on_reload = on_reload
        self._lock = asyncio.Lock()

    def _signature_now(self) -> Signature:
        return (_stat(self.data_dir / REGISTRY_FILE), _stat(self.data_dir / METADATA_FILE))

    def _load(self) -> tuple[Signature, Catalog | None, str | None]:
        """Read and parse the files (in a worker thread)."""
        # Take the signature first: a swap during the read then shows up on the next refresh.
        signature = self._signature_now()
        raw = _read(self.data_dir / REGISTRY_FILE)
        if raw is None:
            return signature, None, f"no {REGISTRY_FILE} in {self.data_dir} yet"
        try:
            catalog = parse_catalog(raw, sync_metadata=_read(self.data_dir / METADATA_FILE))
        except CatalogError as exc:
            return signature, None, str(exc)
        return signature, catalog, None

    async def refresh(self) -> Reload:
        """Reload if the files changed since the last load."""
        async with self._lock:
            signature = await asyncio.to_thread(self._signature_now)
            if signature == self._signature:
                return Reload(changed=False)
            signature, catalog, error = await asyncio.to_thread(self._load)
            self._signature = signature
            if catalog is not None:
                self.catalog = catalog
            self.last_error = error
            result = Reload(changed=True, error=error)
        if error is None:
            log.info(
                "registry_data_loaded",
                servers=len(catalog.servers) if catalog else 0,
                hash=catalog.sync.get("hash") if catalog else None,
            )
        elif signature[0] is None:
            log.info("registry_data_missing", data_dir=str(self.data_dir))
        else:
            log.warning("registry_data_rejected", error=error, serving_previous=bool(self.catalog))
        if self._on_reload is not None:
            self._on_reload(result, self.catalog)
        return result

    async def run(self, *, interval: float) -> None:
        """Refresh every `interval` seconds until cancelled."""
        while True:
            await asyncio.sleep(interval)
            try:
                await self.refresh()
            except OSError as exc:
                # A directory being swapped can fail a read in ways other than "not found";
                # the next poll sees the settled files.
                log.warning("registry_data_read_failed", error=str(exc), errno=exc.errno)
