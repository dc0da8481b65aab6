"""Whether a live object already holds everything we would apply, so the apply can be skipped.

The reconcile contract (spec §3.2) is "no write when nothing changed". Server-side apply of an
unchanged object does not bump its resourceVersion, but it is still a request, and at a thousand
MCPServers a resync would cost thousands of them. So before applying, the reconciler compares
the desired object with the cached one: every field we set must be present with an equal value;
fields we do not set (status, defaults the apiserver fills in, metadata it populates, fields other
managers own) are ignored.

Lists: a list of objects that all carry a `name` (containers, env, ports, volumes) is matched by
name, and extra live entries (another manager's) are allowed, because our apply would not remove
them anyway; any other list must have the same length and match element by element.

A subset test cannot see a field we stopped setting (an override label removed from the spec, an
unset `replicas`): the live object still holds it and the apply that would release it is skipped.
So every desired object is stamped (`stamp_applied_hash`) with a hash of itself in the annotation
`moorage.dev/applied-hash`; when the desired object changes in any way, so does the hash, the
live annotation no longer matches and the apply happens.

Lists keyed by a field (Service ports by port and protocol) have one more trap: an entry edited
by hand under a new key (port 8080 → 9999) belongs to whoever edited it, and our apply adds ours
next to it instead of replacing it. For the lists we must own whole, `takeover_patch` returns a
JSON merge patch that puts back exactly our entries; the reconciler sends it before the apply.

Pure: no I/O.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any, Final

ANNOTATION_APPLIED_HASH: Final = "moorage.dev/applied-hash"
"""On every object the operator applies: hash of the object as last applied (see module doc)."""

# Metadata the apiserver or other controllers own; never part of what we apply, but listed so
# that a desired object carrying them by mistake still compares sensibly.
_SERVER_METADATA = frozenset(
    {
        "uid",
        "resourceVersion",
        "generation",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "managedFields",
        "selfLink",
    }
)


EXCLUSIVE_LISTS: Final[Mapping[tuple[str, str], tuple[tuple[str, ...], ...]]] = {
    ("v1", "Service"): (("spec", "ports"),),
}
"""Lists we own whole, per (apiVersion, kind): nobody else's entries may stay in them."""


def _at(obj: Mapping[str, Any] | None, path: Sequence[str]) -> Any:
    value: Any = obj
    for part in path:
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


def takeover_patch(
    desired: Mapping[str, Any], live: Mapping[str, Any] | None
) -> dict[str, Any] | None:
    """A merge patch replacing the `EXCLUSIVE_LISTS` of `live` that hold more or other entries
    than `desired` (a merge patch replaces a list whole); None when there are none."""
    if live is None:
        return None
    patch: dict[str, Any] = {}
    for path in EXCLUSIVE_LISTS.get((str(desired.get("apiVersion")), str(desired.get("kind"))), ()):
        want, have = _at(desired, path), _at(live, path)
        if not isinstance(want, list) or not isinstance(have, list):
            continue
        same = len(want) == len(have) and all(
            is_subset(w, h) for w, h in zip(want, have, strict=True)
        )
        if same:
            continue
        target = patch
        for part in path[:-1]:
            target = target.setdefault(part, {})
        target[path[-1]] = copy.deepcopy(want)
    return patch or None


def stamp_applied_hash(body: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of `body` with `moorage.dev/applied-hash` set to a hash of the rest of it."""
    stamped = copy.deepcopy(dict(body))
    meta = stamped.setdefault("metadata", {})
    annotations = meta.setdefault("annotations", {})
    annotations.pop(ANNOTATION_APPLIED_HASH, None)
    text = json.dumps(stamped, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    annotations[ANNOTATION_APPLIED_HASH] = hashlib.sha256(text.encode()).hexdigest()[:32]
    return stamped


def is_applied(desired: Mapping[str, Any], live: Mapping[str, Any] | None) -> bool:
    """Whether `live` holds every field of `desired` with the same value (see module doc)."""
    if live is None:
        return False
    for key, want in desired.items():
        if key == "status":
            continue
        if key == "metadata" and isinstance(want, Mapping):
            have_meta = live.get("metadata")
            if not isinstance(have_meta, Mapping):
                return False
            wanted_meta = {k: v for k, v in want.items() if k not in _SERVER_METADATA}
            if not is_subset(wanted_meta, have_meta):
                return False
            continue
        if key not in live or not is_subset(want, live[key]):
            return False
    return True


def is_subset(desired: Any, live: Any) -> bool:
    """Whether `live` contains `desired`: maps by key, named lists by name, other values equal."""
    if isinstance(desired, Mapping):
        if not isinstance(live, Mapping):
            return False
        return all(k in live and is_subset(v, live[k]) for k, v in desired.items())
    if isinstance(desired, list):
        if not isinstance(live, list):
            return False
        return _list_subset(desired, live)
    if isinstance(desired, bool) or isinstance(live, bool):
        # True == 1 in Python; in JSON they differ.
        return type(desired) is type(live) and desired == live
    return bool(desired == live)


def _named(items: Sequence[Any]) -> dict[str, Any] | None:
    """`items` keyed by their `name`, or None when they are not all named objects."""
    if not items or not all(
        isinstance(i, Mapping) and isinstance(i.get("name"), str) for i in items
    ):
        return None
    return {str(i["name"]): i for i in items}


def _list_subset(desired: list[Any], live: list[Any]) -> bool:
    wanted = _named(desired)
    if wanted is not None and len(wanted) == len(desired):
        have = _named(live)
        if have is None:
            return False
        return all(name in have and is_subset(item, have[name]) for name, item in wanted.items())
    if len(desired) != len(live):
        return False
    return all(is_subset(d, v) for d, v in zip(desired, live, strict=True))
