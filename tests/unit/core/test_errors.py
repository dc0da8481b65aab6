"""The error hierarchy: each apiserver status maps to one type that keeps the Status body."""

from __future__ import annotations

import pytest

from moorage_core import errors


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (400, errors.BadRequest),
        (401, errors.Unauthorized),
        (403, errors.Forbidden),
        (404, errors.NotFound),
        (409, errors.Conflict),
        (410, errors.Gone),
        (422, errors.Invalid),
        (429, errors.TooManyRequests),
        (500, errors.ServerError),
        (503, errors.ServerError),
        (0, errors.ServerError),
        (418, errors.KubeError),
    ],
)
def test_maps_each_status_to_its_error(status: int, cls: type[errors.KubeError]) -> None:
    err = errors.error_for_status(status, {"message": "m", "reason": "R"}, fallback="f")
    assert type(err) is cls
    assert err.status == status
    assert err.message == "m"
    assert err.reason == "R"


def test_falls_back_to_a_message_when_the_body_has_none() -> None:
    err = errors.error_for_status(404, None, fallback="GET /api/v1/x")
    assert err.message == "GET /api/v1/x"
    assert str(err) == "404 : GET /api/v1/x"


def test_invalid_exposes_the_field_causes() -> None:
    body = {"details": {"causes": [{"field": "spec.port", "message": "too big"}, "junk"]}}
    err = errors.error_for_status(422, body, fallback="")
    assert isinstance(err, errors.Invalid)
    assert err.causes == [{"field": "spec.port", "message": "too big"}]
