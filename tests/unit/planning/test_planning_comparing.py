"""Deciding that a live object already holds what we would apply (so no write is made)."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from planning_fixtures import SETTINGS, live_copy, server

from moorage_operator.planning import desired_children
from moorage_operator.planning.comparing import (
    ANNOTATION_APPLIED_HASH,
    is_applied,
    is_subset,
    stamp_applied_hash,
    takeover_patch,
)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3)
    ),
    max_leaves=12,
)


@pytest.mark.parametrize(
    ("desired", "live", "expected"),
    [
        pytest.param({"a": 1}, {"a": 1, "b": 2}, True, id="extra-live-keys-ignored"),
        pytest.param({"a": 1}, {"a": 2}, False, id="changed-value"),
        pytest.param({"a": 1}, {}, False, id="missing-key"),
        pytest.param({"a": {"b": 1}}, {"a": {"b": 1, "c": 2}}, True, id="nested-extra"),
        pytest.param({"a": True}, {"a": 1}, False, id="bool-is-not-int"),
        pytest.param({"a": 1}, {"a": True}, False, id="int-is-not-bool"),
        pytest.param({"a": "1"}, {"a": 1}, False, id="string-is-not-int"),
        pytest.param({"a": [1, 2]}, {"a": [1, 2]}, True, id="equal-list"),
        pytest.param({"a": [1, 2]}, {"a": [2, 1]}, False, id="reordered-list"),
        pytest.param({"a": [1]}, {"a": [1, 2]}, False, id="longer-plain-list"),
        pytest.param(
            {"env": [{"name": "A", "value": "1"}]},
            {"env": [{"name": "B", "value": "2"}, {"name": "A", "value": "1"}]},
            True,
            id="named-list-matched-by-name-extra-allowed",
        ),
        pytest.param(
            {"env": [{"name": "A", "value": "1"}]},
            {"env": [{"name": "A", "value": "2"}]},
            False,
            id="named-list-changed-entry",
        ),
        pytest.param(
            {"env": [{"name": "A", "value": "1"}]},
            {"env": ["A"]},
            False,
            id="named-list-against-plain-list",
        ),
        pytest.param(
            {"c": [{"name": "x", "probe": {"port": "http"}}]},
            {"c": [{"name": "x", "probe": {"port": "http", "timeoutSeconds": 1}}]},
            True,
            id="defaults-inside-named-entries-ignored",
        ),
        pytest.param({"a": {}}, {"a": None}, False, id="object-against-null"),
    ],
)
def test_is_subset(desired: Any, live: Any, expected: bool) -> None:
    assert is_subset(desired, live) is expected


@given(json_values)
def test_every_value_contains_itself(value: Any) -> None:
    assert is_subset(value, copy.deepcopy(value))


@given(st.dictionaries(st.text(max_size=4), json_values, max_size=4))
def test_stamping_is_stable_and_ignores_a_previous_stamp(body: dict[str, Any]) -> None:
    once = stamp_applied_hash(body)
    assert stamp_applied_hash(once) == once
    assert stamp_applied_hash(body) == once


@pytest.mark.parametrize("index", range(7))
def test_a_stored_child_with_server_defaults_counts_as_applied(index: int) -> None:
    child = desired_children(server(), settings=SETTINGS)[index]
    assert is_applied(child, live_copy(child))


def test_nothing_counts_as_applied_to_a_missing_object() -> None:
    child = desired_children(server(), settings=SETTINGS)[0]
    assert not is_applied(child, None)


def test_a_hand_edited_port_is_not_applied() -> None:
    children = desired_children(server(port=8080), settings=SETTINGS)
    service = children[-1]
    live = live_copy(service)
    live["spec"]["ports"][0]["port"] = 9999
    assert not is_applied(service, live)


def test_a_field_we_stopped_setting_is_detected_through_the_applied_hash() -> None:
    with_label = desired_children(
        server(resourceOverrides={"proxyService": {"labels": {"team": "a"}}}), settings=SETTINGS
    )[-1]
    without = desired_children(server(), settings=SETTINGS)[-1]
    live = live_copy(with_label)
    # Every field of the new desired object is present, yet the old label must be released.
    assert is_subset({k: v for k, v in without.items() if k != "metadata"}, live)
    assert not is_applied(without, live)
    assert (
        without["metadata"]["annotations"][ANNOTATION_APPLIED_HASH]
        != live["metadata"]["annotations"][ANNOTATION_APPLIED_HASH]
    )


def test_a_port_edited_by_hand_is_taken_back_whole() -> None:
    service = desired_children(server(port=8080), settings=SETTINGS)[-1]
    live = live_copy(service)
    assert takeover_patch(service, live) is None
    live["spec"]["ports"] = [
        {"name": "http", "port": 9999, "targetPort": "http", "protocol": "TCP"}
    ]
    assert takeover_patch(service, live) == {"spec": {"ports": service["spec"]["ports"]}}
    live["spec"]["ports"] = [*service["spec"]["ports"], {"name": "extra", "port": 1}]
    assert takeover_patch(service, live) == {"spec": {"ports": service["spec"]["ports"]}}


@pytest.mark.parametrize("index", range(6))
def test_only_service_ports_are_taken_over(index: int) -> None:
    child = desired_children(server(), settings=SETTINGS)[index]
    live = live_copy(child)
    live["spec"] = {"ports": [{"port": 1}]}
    assert takeover_patch(child, live) is None
    assert takeover_patch(child, None) is None
