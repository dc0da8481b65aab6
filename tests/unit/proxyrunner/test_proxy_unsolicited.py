"""Routing of server requests sent outside any client request (pure decisions)."""

from __future__ import annotations

import pytest

from moorage_proxyrunner.backends.stdio.unsolicited import (
    Candidate,
    Deliver,
    Hold,
    Refuse,
    Route,
    route_unsolicited,
)
from moorage_proxyrunner.protocol.jsonrpc import INTERNAL_ERROR, METHOD_NOT_FOUND

ROOTS = {"roots": {"listChanged": True}}
SAMPLING = {"sampling": {}}


def client(
    key: str, capabilities: dict[str, object], *, modern: bool = False, stream: bool = True
) -> Candidate:
    return Candidate(key=key, capabilities=capabilities, modern=modern, stream_open=stream)


@pytest.mark.parametrize(
    ("method", "clients", "route"),
    [
        pytest.param("roots/list", [], Hold(), id="roots-no-client-held"),
        pytest.param(
            "roots/list", [client("a", {}), client("b", ROOTS)], Deliver("b"), id="roots-capable"
        ),
        pytest.param(
            "roots/list",
            [client("a", ROOTS), client("b", ROOTS)],
            Deliver("a"),
            id="roots-longest-connected",
        ),
        pytest.param(
            "roots/list", [client("a", ROOTS, stream=False)], Hold(), id="roots-no-stream-held"
        ),
        pytest.param(
            "roots/list", [client("a", ROOTS, modern=True)], Hold(), id="roots-modern-held"
        ),
        pytest.param(
            "sampling/createMessage",
            [client("a", ROOTS), client("b", SAMPLING)],
            Deliver("b"),
            id="sampling-capable",
        ),
        pytest.param(
            "sampling/createMessage",
            [client("a", ROOTS)],
            Refuse(
                INTERNAL_ERROR,
                "Cannot route sampling/createMessage outside a client request: no connected "
                "client declared the sampling capability and has a stream open to receive it",
            ),
            id="sampling-refused",
        ),
        pytest.param(
            "elicitation/create",
            [],
            Refuse(
                INTERNAL_ERROR,
                "Cannot route elicitation/create outside a client request: no connected "
                "client declared the elicitation capability and has a stream open to receive it",
            ),
            id="elicitation-refused",
        ),
        pytest.param(
            "tasks/get",
            [client("a", ROOTS)],
            Refuse(METHOD_NOT_FOUND, "The proxy has no client to send tasks/get to"),
            id="unknown-method",
        ),
    ],
)
def test_unsolicited_requests_go_where_a_client_can_answer(
    method: str, clients: list[Candidate], route: Route
) -> None:
    assert route_unsolicited(method, clients) == route
