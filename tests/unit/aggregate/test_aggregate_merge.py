"""The aggregator's merging rules as tables, and their promises as properties."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from moorage_proxyrunner.protocol.aggregation import (
    Owner,
    Rules,
    accounted,
    backend_order,
    conflict_messages,
    merge_names,
)

NAMES = {"time": ["now", "echo"], "everything": ["echo", "add"], "toolbox": ["echo", "sum"]}


@pytest.mark.parametrize(
    ("rules", "exposed", "unresolved", "shadowed"),
    [
        (
            Rules("prefix"),
            {
                "time_now": ("time", "now"),
                "time_echo": ("time", "echo"),
                "everything_echo": ("everything", "echo"),
                "everything_add": ("everything", "add"),
                "toolbox_echo": ("toolbox", "echo"),
                "toolbox_sum": ("toolbox", "sum"),
            },
            [],
            [],
        ),
        (
            Rules("prefix", separator="__"),
            {
                "time__now": ("time", "now"),
                "time__echo": ("time", "echo"),
                "everything__echo": ("everything", "echo"),
                "everything__add": ("everything", "add"),
                "toolbox__echo": ("toolbox", "echo"),
                "toolbox__sum": ("toolbox", "sum"),
            },
            [],
            [],
        ),
        (
            Rules("priority", priority=("toolbox",)),
            {
                "echo": ("toolbox", "echo"),
                "sum": ("toolbox", "sum"),
                "now": ("time", "now"),
                "add": ("everything", "add"),
            },
            [],
            [(("time", "echo"), "toolbox"), (("everything", "echo"), "toolbox")],
        ),
        (
            Rules("priority"),
            {
                "echo": ("time", "echo"),
                "sum": ("toolbox", "sum"),
                "now": ("time", "now"),
                "add": ("everything", "add"),
            },
            [],
            [(("everything", "echo"), "time"), (("toolbox", "echo"), "time")],
        ),
        (
            Rules("manual", manual={"everything/echo": "echo2", "toolbox/echo": "echo3"}),
            {
                "echo": ("time", "echo"),
                "echo2": ("everything", "echo"),
                "echo3": ("toolbox", "echo"),
                "now": ("time", "now"),
                "add": ("everything", "add"),
                "sum": ("toolbox", "sum"),
            },
            [],
            [],
        ),
        (
            Rules("manual", manual={"everything/echo": "echo2"}),
            {
                "echo2": ("everything", "echo"),
                "now": ("time", "now"),
                "add": ("everything", "add"),
                "sum": ("toolbox", "sum"),
            },
            [("echo", [("time", "echo"), ("toolbox", "echo")])],
            [],
        ),
        (
            Rules("manual", manual={"time/now": "add"}),
            {"sum": ("toolbox", "sum")},
            [
                ("add", [("time", "now"), ("everything", "add")]),
                ("echo", [("time", "echo"), ("everything", "echo"), ("toolbox", "echo")]),
            ],
            [],
        ),
    ],
    ids=["prefix", "prefix-sep", "priority", "priority-default", "manual", "manual-gap", "clash"],
)
def test_merging_under_each_strategy(
    rules: Rules,
    exposed: dict[str, tuple[str, str]],
    unresolved: list[tuple[str, list[tuple[str, str]]]],
    shadowed: list[tuple[tuple[str, str], str]],
) -> None:
    merge = merge_names(NAMES, rules)
    assert merge.exposed == {name: Owner(*owner) for name, owner in exposed.items()}
    assert sorted((c.name, [(o.backend, o.name) for o in c.owners]) for c in merge.unresolved) == (
        sorted(unresolved)
    )
    assert [((s.owner.backend, s.owner.name), s.by) for s in merge.shadowed] == shadowed


def test_prefixed_names_that_still_collide_are_reported() -> None:
    merge = merge_names({"a": ["b-c"], "a-b": ["c"]}, Rules("prefix", separator="-"))
    assert merge.exposed == {"a-b-c": Owner("a", "b-c")}
    assert conflict_messages(merge, "tool") == ["tool 'a-b-c' is claimed by a/b-c, a-b/c"]


def test_a_backend_listing_a_name_twice_is_one_name() -> None:
    merge = merge_names({"a": ["x", "x"]}, Rules("priority"))
    assert merge.exposed == {"x": Owner("a", "x")}
    assert merge.shadowed == ()


@pytest.mark.parametrize(
    ("backends", "priority", "order"),
    [
        (["a", "b", "c"], [], ["a", "b", "c"]),
        (["a", "b", "c"], ["c"], ["c", "a", "b"]),
        (["a", "b", "c"], ["b", "a"], ["b", "a", "c"]),
        (["a", "b"], ["gone", "b"], ["b", "a"]),
    ],
)
def test_backend_order(backends: list[str], priority: list[str], order: list[str]) -> None:
    assert backend_order(backends, priority) == order


BACKEND = st.sampled_from(["a", "b", "c", "a-b", "b-c"])
NAME = st.sampled_from(["x", "y", "b-c", "c", "b_c", "x_y"])
INPUTS = st.dictionaries(BACKEND, st.lists(NAME, max_size=6), max_size=5)


@st.composite
def rules(draw: Any) -> Rules:
    strategy = draw(st.sampled_from(["prefix", "priority", "manual"]))
    if strategy == "prefix":
        return Rules("prefix", separator=draw(st.sampled_from(["_", "-", "__", "."])))
    if strategy == "priority":
        return Rules("priority", priority=tuple(draw(st.lists(BACKEND, unique=True))))
    keys = draw(st.lists(st.tuples(BACKEND, NAME).map("/".join), unique=True, max_size=6))
    values = draw(
        st.lists(
            NAME | st.text("xyz", min_size=1, max_size=3),
            unique=True,
            min_size=len(keys),
            max_size=len(keys),
        )
    )
    return Rules("manual", manual=dict(zip(keys, values, strict=True)))


@given(INPUTS, rules())
def test_no_name_is_lost(names: dict[str, list[str]], chosen: Rules) -> None:
    merge = merge_names(names, chosen)
    given_owners = {Owner(b, n) for b, ns in names.items() for n in ns}
    assert accounted(merge) == given_owners


@given(INPUTS, rules())
def test_no_exposed_name_leads_to_two_places(names: dict[str, list[str]], chosen: Rules) -> None:
    merge = merge_names(names, chosen)
    owners = list(merge.exposed.values())
    assert len(owners) == len(set(owners))
    assert not set(merge.exposed) & {
        c.name for c in merge.unresolved if chosen.strategy != "prefix"
    }


@given(INPUTS, st.sampled_from(["_", "-", "."]))
def test_prefix_exposes_every_name_it_can(names: dict[str, list[str]], separator: str) -> None:
    merge = merge_names(names, Rules("prefix", separator=separator))
    hidden = {o for c in merge.unresolved for o in c.owners} - set(merge.exposed.values())
    if separator == "_":
        # Backend names are DNS labels without "_": an underscore prefix cannot collide.
        assert not hidden
        assert len(merge.exposed) == len({(b, n) for b, ns in names.items() for n in ns})
    assert merge.shadowed == ()


@given(INPUTS, st.lists(BACKEND, unique=True))
def test_priority_exposes_every_distinct_name(
    names: dict[str, list[str]], order: list[str]
) -> None:
    merge = merge_names(names, Rules("priority", priority=tuple(order)))
    assert set(merge.exposed) == {n for ns in names.values() for n in ns}
    assert merge.unresolved == ()
    for s in merge.shadowed:
        ranked = backend_order(list(names), order)
        assert ranked.index(s.by) < ranked.index(s.owner.backend)
