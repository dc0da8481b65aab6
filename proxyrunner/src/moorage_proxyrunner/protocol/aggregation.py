"""The aggregator's merging rules: many backends' names become one list without duplicates.

Pure: no I/O. `merge_names` takes each backend's names (tools, prompts, or resource URIs) in
the backends' configured order and returns what clients see (exposed name → owning backend and
its own name), the conflicts left unresolved and the duplicates shadowed by a winner. Nothing is
dropped silently: every (backend, name) given is exposed, shadowed, or part of an unresolved
conflict, and no exposed name is owned twice.

- `prefix`: every name is exposed as `<backend><separator><name>`. Should two prefixed names
  still coincide (backend `a` with `b-c` and backend `a-b` with `c`, separator `-`), the first
  backend in order keeps it and the collision is reported unresolved.
- `priority`: a name goes to the first backend that has it, in the order of `priority` and
  then of the backends not listed there; the others are reported shadowed.
- `manual`: `<backend>/<name>` keys of `manual` rename; any other name keeps its own. A name
  still claimed by several backends is left out for all of them and reported unresolved
  until the map names it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

Strategy = Literal["prefix", "priority", "manual"]


@dataclass(frozen=True, slots=True, order=True)
class Owner:
    """Where an exposed name leads: a backend and the name it knows."""

    backend: str
    name: str


@dataclass(frozen=True, slots=True)
class Conflict:
    """An exposed name several backends claim that the strategy left unresolved."""

    name: str
    owners: tuple[Owner, ...]


@dataclass(frozen=True, slots=True)
class Shadowed:
    """A backend's name hidden behind the same name of a backend of higher priority."""

    owner: Owner
    by: str


@dataclass(frozen=True, slots=True)
class Rules:
    """How conflicts are resolved (the RunConfig's `conflict_resolution`)."""

    strategy: Strategy = "prefix"
    separator: str = "_"
    priority: tuple[str, ...] = ()
    manual: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Merge:
    """What clients see, and what they do not and why."""

    exposed: dict[str, Owner]
    unresolved: tuple[Conflict, ...] = ()
    shadowed: tuple[Shadowed, ...] = ()

    def owner_of(self, name: str) -> Owner | None:
        return self.exposed.get(name)


def backend_order(backends: Sequence[str], priority: Sequence[str]) -> list[str]:
    """`priority` first (those among `backends`), then the other backends in their order."""
    first = [name for name in priority if name in backends]
    return first + [name for name in backends if name not in first]


def merge_names(names: Mapping[str, Sequence[str]], rules: Rules) -> Merge:
    """Merge each backend's names (`names`: backend → its names, in the backends' order)."""
    order = list(names)
    if rules.strategy == "priority":
        order = backend_order(order, rules.priority)
    claims: dict[str, list[Owner]] = {}
    for backend in order:
        for name in dict.fromkeys(names[backend]):
            owner = Owner(backend, name)
            claims.setdefault(_candidate(owner, rules), []).append(owner)
    exposed: dict[str, Owner] = {}
    unresolved: list[Conflict] = []
    shadowed: list[Shadowed] = []
    for name, owners in claims.items():
        if len(owners) == 1:
            exposed[name] = owners[0]
        elif rules.strategy == "priority":
            exposed[name] = owners[0]
            shadowed.extend(Shadowed(owner, by=owners[0].backend) for owner in owners[1:])
        elif rules.strategy == "prefix":
            exposed[name] = owners[0]
            unresolved.append(Conflict(name, tuple(owners)))
        else:
            unresolved.append(Conflict(name, tuple(owners)))
    return Merge(exposed, tuple(unresolved), tuple(shadowed))


def _candidate(owner: Owner, rules: Rules) -> str:
    if rules.strategy == "prefix":
        return f"{owner.backend}{rules.separator}{owner.name}"
    if rules.strategy == "manual":
        return rules.manual.get(f"{owner.backend}/{owner.name}", owner.name)
    return owner.name


def accounted(merge: Merge) -> set[Owner]:
    """Every (backend, name) the merge shows, shadows or reports: all it was given."""
    owners = set(merge.exposed.values())
    owners.update(s.owner for s in merge.shadowed)
    for conflict in merge.unresolved:
        owners.update(conflict.owners)
    return owners


def conflict_messages(merge: Merge, kind: str) -> list[str]:
    """One line per unresolved conflict, for the status and the log."""
    return [
        f"{kind} {c.name!r} is claimed by " + ", ".join(f"{o.backend}/{o.name}" for o in c.owners)
        for c in merge.unresolved
    ]
