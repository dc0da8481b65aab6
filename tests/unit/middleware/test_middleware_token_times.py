"""Time claims (`exp`, `nbf`, `iat`) of tokens the trusted issuer signed: whatever they hold, the
proxy answers with a valid identity or a 401 carrying `WWW-Authenticate`, never a 500."""

from __future__ import annotations

import json
import time
from typing import Any

import jwt
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from testkit.issuer import LocalIssuer

from moorage_proxyrunner.config.settings import ProxyRunnerSettings
from moorage_proxyrunner.policy.authn import (
    VERIFIED_CACHE_SECONDS,
    Authenticator,
    AuthnLayer,
    OidcSettings,
    is_numeric_date,
    remembered_until,
)
from moorage_proxyrunner.policy.jwks import JwksCache

ISSUER = "https://issuer.test"
NOW = int(time.time())
"""When this module was imported: only for values whose age does not matter."""


class Keys:
    def __init__(self, issuer: LocalIssuer) -> None:
        self.issuer = issuer

    async def fetch_jwks(self) -> dict[str, Any]:
        return {"keys": [k.public_jwk() for k in self.issuer.keys]}

    async def fetch_issuer(self) -> str:
        return ISSUER


def protected_app(issuer: LocalIssuer) -> web.Application:
    """`/mcp` behind the authentication middleware; answers 200 with the subject."""
    oidc = OidcSettings(kind="oidc", audience=issuer.audience, issuer=ISSUER)
    authenticator = Authenticator(oidc, keys=JwksCache(Keys(issuer)))
    app = web.Application()

    async def mcp(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app.router.add_post("/mcp", mcp)
    AuthnLayer(authenticator, settings=ProxyRunnerSettings()).install(app)
    return app


def signed(issuer: LocalIssuer, claims: dict[str, Any]) -> str:
    """`claims` (any JSON, even what PyJWT's encoder refuses) signed by the trusted key."""
    key = issuer.keys[-1]
    payload = json.dumps(claims).encode()
    return jwt.api_jws.encode(payload, key.private, algorithm=key.alg, headers={"kid": key.kid})  # type: ignore[arg-type]


async def status_of(issuer: LocalIssuer, **changes: Any) -> tuple[int, str | None]:
    """(status, WWW-Authenticate) of a POST /mcp with a signed token; `changes` replace or
    (with None) remove claims of a valid one."""
    async with TestClient(TestServer(protected_app(issuer))) as client:
        token = signed(issuer, issuer.claims(**changes))
        response = await client.post("/mcp", headers={"Authorization": f"Bearer {token}"})
        return response.status, response.headers.get("WWW-Authenticate")


@pytest.fixture
def issuer() -> LocalIssuer:
    return LocalIssuer(url=ISSUER)


@pytest.mark.parametrize(
    "claims",
    [
        {"exp": 10**400},
        {"exp": -(10**400)},
        {"nbf": 10**400},
        {"nbf": -(10**400)},
        {"iat": 10**400},
        {"iat": -(10**400)},
        {"exp": float("inf")},
        {"exp": float("nan")},
        {"nbf": float("-inf")},
        {"iat": float("nan")},
        {"exp": -1},
        {"exp": 1e308},
        {"exp": "NaN"},
        {"exp": "1e400"},
        {"exp": str(NOW + 300)},
        {"nbf": "soon"},
        {"iat": "Infinity"},
        {"exp": True},
        {"exp": [NOW + 300]},
        {"nbf": {"at": 0}},
    ],
    ids=[
        "exp-huge",
        "exp-huge-negative",
        "nbf-huge",
        "nbf-huge-negative",
        "iat-huge",
        "iat-huge-negative",
        "exp-inf",
        "exp-nan",
        "nbf-minus-inf",
        "iat-nan",
        "exp-negative",
        "exp-float-huge",
        "exp-nan-string",
        "exp-overflow-string",
        "exp-numeric-string",
        "nbf-word",
        "iat-infinity-string",
        "exp-bool",
        "exp-list",
        "nbf-object",
    ],
)
async def test_a_signed_token_with_unusable_times_gets_401_with_a_challenge(
    issuer: LocalIssuer, claims: dict[str, Any]
) -> None:
    status, challenge = await status_of(issuer, **claims)
    assert status == 401
    assert challenge is not None
    assert challenge.startswith('Bearer error="invalid_token"')


async def test_a_signed_token_with_ordinary_times_is_let_in(issuer: LocalIssuer) -> None:
    # The clock at the test, not at import: a whole suite can outlast a five-minute token.
    now = int(time.time())
    assert await status_of(issuer, exp=now + 300.5, nbf=now - 10, iat=now) == (200, None)


TIME_VALUES = st.one_of(
    st.none(),
    st.integers(),
    st.integers(min_value=-(10**500), max_value=10**500),
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=NOW - 100, max_value=NOW + 10**6),
    st.text(max_size=30),
    st.booleans(),
    st.lists(st.integers(), max_size=2),
)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(exp=TIME_VALUES, nbf=TIME_VALUES, iat=TIME_VALUES)
async def test_any_time_claims_signed_by_the_trusted_key_give_an_identity_or_a_401(
    issuer: LocalIssuer, exp: Any, nbf: Any, iat: Any
) -> None:
    status, challenge = await status_of(issuer, exp=exp, nbf=nbf, iat=iat)
    if status == 200:
        for value in (exp, nbf, iat):
            assert value is None or is_numeric_date(value)
        assert exp is not None
        assert exp > NOW - 60
    else:
        assert status == 401
        assert challenge is not None
        assert challenge.startswith("Bearer ")


@pytest.mark.parametrize(
    ("value", "usable"),
    [
        (0, True),
        (253_402_300_799, True),
        (1.5, True),
        (253_402_300_800, False),
        (10**400, False),
        (-1.5, False),
        (float("nan"), False),
        (float("inf"), False),
        (True, False),
        ("123", False),
        (None, False),
    ],
    ids=[
        "zero",
        "year-9999",
        "float",
        "year-10000",
        "huge-int",
        "negative",
        "nan",
        "inf",
        "bool",
        "string",
        "null",
    ],
)
def test_numeric_dates_are_finite_json_numbers(value: object, usable: bool) -> None:
    assert is_numeric_date(value) is usable


@pytest.mark.parametrize(
    ("exp", "expected"),
    [
        (10**400, 1000.0 + VERIFIED_CACHE_SECONDS),
        (1e308, 1000.0 + VERIFIED_CACHE_SECONDS),
        (1030, 1030.0),
        (1030.5, 1030.5),
    ],
    ids=["huge-int", "huge-float", "soon", "soon-float"],
)
def test_a_verified_token_is_remembered_until_its_expiry_or_the_cache_limit(
    exp: float, expected: float
) -> None:
    assert remembered_until(exp, now=1000.0) == expected


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**400), max_value=10**400)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=6,
)
CLAIM_NAMES = st.sampled_from(["iss", "aud", "sub", "exp", "nbf", "iat", "scope", "scp", "jti"])


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(changes=st.dictionaries(CLAIM_NAMES | st.text(max_size=8), JSON_VALUES, max_size=4))
async def test_any_claims_signed_by_the_trusted_key_give_an_identity_or_a_401(
    issuer: LocalIssuer, changes: dict[str, Any]
) -> None:
    status, challenge = await status_of(issuer, **changes)
    assert status in (200, 401)
    if status == 401:
        assert challenge is not None
        assert challenge.startswith("Bearer ")
