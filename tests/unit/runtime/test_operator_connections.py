"""The operator's kube client holds a connection for every watch at once, with room to spare for
requests: a watch waiting for a free connection would starve the Lease renewal (the leader would
lose its Lease and exit) and every reconcile."""

from __future__ import annotations

from typing import Any

import pytest

from moorage_operator.__main__ import (
    REQUEST_CONNECTIONS,
    WATCHES_PER_SCOPE,
    check_watch_budget,
    connection_budget,
    manager_options,
)
from moorage_operator.runtime.manager import Manager
from moorage_operator.settings import OperatorSettings
from moorage_operator.wiring import build_controllers


def settings(*namespaces: str) -> OperatorSettings:
    return OperatorSettings(
        watch_namespaces=namespaces,
        leader_election=False,
        proxyrunner_image="moorage/proxyrunner:test",
        metrics_bind=("127.0.0.1", 0),
        pod_name="moorage-operator-test",
    )


@pytest.mark.parametrize(
    ("namespaces", "watches"),
    [
        pytest.param((), WATCHES_PER_SCOPE, id="cluster-wide"),
        pytest.param(("a", "b"), 2 * WATCHES_PER_SCOPE, id="two-namespaces"),
    ],
)
def test_the_budget_has_a_connection_per_watch_and_room_for_requests(
    namespaces: tuple[str, ...], watches: int
) -> None:
    assert connection_budget(settings(*namespaces)) == watches + REQUEST_CONNECTIONS


def test_every_informer_the_controllers_use_fits_the_budget() -> None:
    operator_settings = settings("a", "b")
    kube: Any = object()  # informers are only declared here: nothing connects
    manager = Manager(kube, options=manager_options(operator_settings))
    build_controllers(manager, operator_settings)
    check_watch_budget(len(manager.informers))


def test_more_informers_than_the_budget_are_refused() -> None:
    with pytest.raises(RuntimeError, match="WATCHES_PER_SCOPE"):
        check_watch_budget(WATCHES_PER_SCOPE + 1)
