"""Which entries a registry keeps: `spec.filter` name and tag globs.

Pure. Globs are shell-style (`*`, `?`, `[...]`), case-sensitive, matched against the whole name
or tag. A server passes a `GlobFilter` when it matches an include (or there are none) and no
exclude; names and tags must both pass. For tags, "matches" means any of the server's tags
matches: a server without tags fails a tag filter that has includes, and passes one with only
excludes.
"""

from __future__ import annotations

from collections.abc import Iterable
from fnmatch import fnmatchcase

from moorage_api.mcpregistry import GlobFilter, RegistryFilter
from moorage_operator.planning.mcpregistries.formats import RegistryDocument, RegistryEntry


def _matches_any(values: Iterable[str], patterns: Iterable[str]) -> bool:
    patterns = tuple(patterns)
    return any(fnmatchcase(value, pattern) for value in values for pattern in patterns)


def passes(values: tuple[str, ...], glob: GlobFilter | None) -> bool:
    """Whether `values` (one name, or a server's tags) pass `glob`."""
    if glob is None:
        return True
    if glob.include and not _matches_any(values, glob.include):
        return False
    return not _matches_any(values, glob.exclude)


def is_selected(entry: RegistryEntry, selection: RegistryFilter | None) -> bool:
    """Whether the registry keeps `entry`."""
    if selection is None:
        return True
    return passes((entry.name,), selection.names) and passes(entry.tags, selection.tags)


def filter_document(doc: RegistryDocument, selection: RegistryFilter | None) -> RegistryDocument:
    """`doc` with only the entries `selection` keeps (order kept)."""
    if selection is None:
        return doc
    kept = tuple(entry for entry in doc.entries if is_selected(entry, selection))
    return RegistryDocument(
        format=doc.format, version=doc.version, last_updated=doc.last_updated, entries=kept
    )
