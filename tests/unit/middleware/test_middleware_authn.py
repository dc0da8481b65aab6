"""Bearer token checks: header parsing, algorithms, claims, scopes, service accounts, the JWKS
cache's refresh rules, and the authenticator over an in-memory issuer (no network)."""

from __future__ import annotations

import time
from typing import Any

import jwt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from testkit.issuer import LocalIssuer, new_key, unsigned_token

from moorage_proxyrunner.policy.authn import (
    Authenticator,
    AuthnError,
    OidcSettings,
    bearer_token,
    challenge,
    check_authorised_claims,
    service_account_of,
    token_header,
    token_scopes,
)
from moorage_proxyrunner.policy.jwks import JwksCache, KeysUnavailable, parse_keys

ISSUER = "https://issuer.test"


class FakeFetcher:
    """The issuer's JWKS from memory; `fail` makes fetches fail."""

    def __init__(self, issuer: LocalIssuer) -> None:
        self.issuer = issuer
        self.fail = False

    async def fetch_jwks(self) -> dict[str, Any]:
        if self.fail:
            raise KeysUnavailable("down")
        return {"keys": [k.public_jwk() for k in self.issuer.keys]}

    async def fetch_issuer(self) -> str:
        return self.issuer.url


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def issuer() -> LocalIssuer:
    return LocalIssuer(url=ISSUER)


def authenticator(
    issuer: LocalIssuer, clock: Clock | None = None, **changes: Any
) -> tuple[Authenticator, FakeFetcher, JwksCache]:
    fetcher = FakeFetcher(issuer)
    cache = JwksCache(fetcher, min_refresh_interval=10.0, clock=clock or Clock())
    oidc = OidcSettings(kind="oidc", audience=issuer.audience, issuer=ISSUER)
    for key, value in changes.items():
        oidc = OidcSettings(**{**{f: getattr(oidc, f) for f in oidc.__slots__}, key: value})  # type: ignore[attr-defined]
    return Authenticator(oidc, keys=cache), fetcher, cache


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        (None, "missing"),
        ("", "missing"),
        ("Basic dXNlcjpwYXNz", "malformed"),
        ("Bearer", "malformed"),
        ("Bearer a b", "malformed"),
        ("Bearer " + "a" * 20000, "malformed"),
        ("Bearer ünïcode", "malformed"),
    ],
    ids=["absent", "empty", "basic", "no-token", "two-words", "huge", "non-ascii"],
)
def test_headers_that_are_not_bearer_tokens_are_refused(header: str | None, reason: str) -> None:
    with pytest.raises(AuthnError) as caught:
        bearer_token(header)
    assert caught.value.reason == reason
    assert caught.value.status == 401


def test_a_missing_token_gets_no_error_code_in_the_challenge() -> None:
    with pytest.raises(AuthnError) as caught:
        bearer_token(None)
    value = challenge(caught.value, metadata_url="http://p/.well-known/x", scopes=())
    assert value == 'Bearer resource_metadata="http://p/.well-known/x"'


def test_a_bad_token_gets_invalid_token_and_the_scopes_in_the_challenge() -> None:
    error = AuthnError('the token has "expired"', reason="expired")
    value = challenge(error, metadata_url="http://p/m", scopes=("mcp:read", "mcp:write"))
    assert value == (
        'Bearer error="invalid_token", error_description="the token has expired", '
        'scope="mcp:read mcp:write", resource_metadata="http://p/m"'
    )


def test_the_scheme_is_case_insensitive() -> None:
    assert bearer_token("bearer abc.def.ghi") == "abc.def.ghi"


@pytest.mark.parametrize(
    "alg", ["none", "HS256", "HS512", "None", "EdDSA"], ids=lambda a: f"alg-{a}"
)
def test_algorithms_outside_the_allow_list_are_refused(issuer: LocalIssuer, alg: str) -> None:
    header = jwt.utils.base64url_encode(f'{{"alg":"{alg}","kid":"k"}}'.encode()).decode()
    with pytest.raises(AuthnError) as caught:
        token_header(f"{header}.e30.", algorithms=("RS256", "ES256"))
    assert caught.value.reason == "algorithm"


def test_scopes_come_from_scope_or_scp() -> None:
    assert token_scopes({"scope": "a b"}) == {"a", "b"}
    assert token_scopes({"scp": ["c", 1]}) == {"c"}
    assert token_scopes({"scp": "d e", "scope": "f"}) == {"d", "e", "f"}
    assert token_scopes({}) == set()


@pytest.mark.parametrize(
    ("claims", "expected"),
    [
        ({"sub": "system:serviceaccount:ns:bot"}, "ns/bot"),
        (
            {
                "sub": "system:serviceaccount:ns:bot",
                "kubernetes.io": {"namespace": "ns", "serviceaccount": {"name": "bot"}},
            },
            "ns/bot",
        ),
        (
            {
                "sub": "system:serviceaccount:ns:bot",
                "kubernetes.io": {"namespace": "other", "serviceaccount": {"name": "bot"}},
            },
            None,
        ),
        ({"sub": "system:serviceaccount:ns"}, None),
        ({"sub": "system:serviceaccount:ns:a:b"}, None),
        ({"sub": "alice"}, None),
    ],
    ids=["sub", "sub-and-claim", "claim-disagrees", "short", "long", "not-an-sa"],
)
def test_service_accounts_are_read_from_sub_and_the_kubernetes_claim(
    claims: dict[str, Any], expected: str | None
) -> None:
    assert service_account_of(claims) == expected


def test_allowed_service_accounts_and_required_scopes_are_enforced() -> None:
    k8s = OidcSettings(kind="kubernetes", audience="moorage", allowed_service_accounts=("ns/bot",))
    check_authorised_claims({"sub": "system:serviceaccount:ns:bot"}, k8s)
    with pytest.raises(AuthnError) as caught:
        check_authorised_claims({"sub": "system:serviceaccount:ns:other"}, k8s)
    assert (caught.value.status, caught.value.error) == (403, "insufficient_scope")
    with pytest.raises(AuthnError) as caught:
        check_authorised_claims({"sub": "alice"}, k8s)
    assert caught.value.status == 401
    scoped = OidcSettings(kind="oidc", audience="a", issuer=ISSUER, required_scopes=("mcp",))
    check_authorised_claims({"sub": "alice", "scope": "mcp other"}, scoped)
    with pytest.raises(AuthnError) as caught:
        check_authorised_claims({"sub": "alice", "scope": "other"}, scoped)
    assert (caught.value.status, caught.value.reason) == (403, "scope")


def test_unusable_keys_in_a_jwks_are_skipped() -> None:
    good = new_key("ES256", kid="good").public_jwk()
    keys = parse_keys(
        {
            "keys": [
                good,
                {"kty": "RSA", "kid": "broken", "n": "x"},
                {**new_key("ES256", kid="enc").public_jwk(), "use": "enc"},
                {"kty": "oct", "kid": "secret", "k": "c2VjcmV0"},
                "junk",
            ]
        }
    )
    assert set(keys) == {"good"}
    with pytest.raises(KeysUnavailable):
        parse_keys({"nokeys": []})


async def test_a_valid_token_is_accepted(issuer: LocalIssuer) -> None:
    auth, _, _ = authenticator(issuer)
    identity = await auth.authenticate("Bearer " + issuer.token(groups=["eng"], scope="mcp"))
    assert identity.subject == "alice"
    assert identity.claims["groups"] == ["eng"]


async def test_the_verified_token_stays_on_the_identity_but_out_of_its_repr(
    issuer: LocalIssuer,
) -> None:
    auth, _, _ = authenticator(issuer)
    token = issuer.token()
    identity = await auth.authenticate("Bearer " + token)
    assert identity.token == token
    assert token not in repr(identity)
    assert (await auth.authenticate("Bearer " + token)).token == token  # remembered


@pytest.mark.parametrize(
    ("spoil", "reason"),
    [
        ({"exp": int(time.time()) - 3600}, "expired"),
        ({"nbf": int(time.time()) + 3600}, "not_yet_valid"),
        ({"aud": "someone-else"}, "audience"),
        ({"iss": "https://evil.test"}, "issuer"),
        ({"sub": None}, "claims"),
        ({"exp": None}, "claims"),
        ({"sub": ""}, "claims"),
    ],
    ids=["expired", "not-yet-valid", "audience", "issuer", "no-sub", "no-exp", "empty-sub"],
)
async def test_tokens_with_bad_claims_are_refused(
    issuer: LocalIssuer, spoil: dict[str, Any], reason: str
) -> None:
    auth, _, _ = authenticator(issuer)
    with pytest.raises(AuthnError) as caught:
        await auth.authenticate("Bearer " + issuer.token(**spoil))
    assert (caught.value.status, caught.value.reason) == (401, reason)


async def test_a_token_signed_by_another_key_under_a_known_kid_is_refused(
    issuer: LocalIssuer,
) -> None:
    auth, _, _ = authenticator(issuer)
    forged = new_key()
    token = issuer.token(key=forged, kid=issuer.keys[0].kid)
    with pytest.raises(AuthnError) as caught:
        await auth.authenticate(f"Bearer {token}")
    assert caught.value.reason == "signature"


async def test_alg_none_is_refused_even_with_a_known_kid(issuer: LocalIssuer) -> None:
    auth, _, cache = authenticator(issuer)
    token = unsigned_token(issuer.claims(), kid=issuer.keys[0].kid)
    with pytest.raises(AuthnError) as caught:
        await auth.authenticate(f"Bearer {token}")
    assert caught.value.reason == "algorithm"
    assert cache.fetches == 0, "refused before any key is looked up"


async def test_an_ec_key_cannot_verify_a_token_claiming_rsa(issuer: LocalIssuer) -> None:
    issuer.keys = [new_key("ES256", kid="ec")]
    auth, _, _ = authenticator(issuer)
    header = {"alg": "RS256", "kid": "ec", "typ": "JWT"}
    body = issuer.claims()
    token = (
        ".".join(
            jwt.utils.base64url_encode(jwt.api_jws.json.dumps(p).encode()).decode()
            for p in (header, body)
        )
        + ".c2ln"
    )
    with pytest.raises(AuthnError) as caught:
        await auth.authenticate(f"Bearer {token}")
    assert caught.value.status == 401


async def test_an_unknown_kid_refreshes_once_then_is_refused_until_the_interval_passes(
    issuer: LocalIssuer,
) -> None:
    clock = Clock()
    auth, _, cache = authenticator(issuer, clock)
    await auth.authenticate("Bearer " + issuer.token())
    assert cache.fetches == 1
    clock.now += 11
    stranger = new_key()
    for _ in range(3):
        with pytest.raises(AuthnError) as caught:
            await auth.authenticate("Bearer " + issuer.token(key=stranger))
        assert caught.value.reason == "unknown_key"
    assert cache.fetches == 2, "one refresh for a burst of unknown kids"
    rotated = issuer.rotate(keep_old=False)
    with pytest.raises(AuthnError):
        await auth.authenticate("Bearer " + issuer.token(key=rotated))
    assert cache.fetches == 2, "rate-limited: no refresh within the interval"
    clock.now += 11
    identity = await auth.authenticate("Bearer " + issuer.token(key=rotated))
    assert identity.subject == "alice"
    assert cache.fetches == 3


async def test_keys_survive_a_failed_refresh_and_a_first_failure_is_503(
    issuer: LocalIssuer,
) -> None:
    clock = Clock()
    auth, fetcher, _ = authenticator(issuer, clock)
    fetcher.fail = True
    with pytest.raises(AuthnError) as caught:
        await auth.authenticate("Bearer " + issuer.token())
    assert (caught.value.status, caught.value.reason) == (503, "keys_unavailable")
    fetcher.fail = False
    clock.now += 11
    await auth.authenticate("Bearer " + issuer.token())
    fetcher.fail = True
    clock.now += 4000  # past max_age: a refresh is tried, fails, the old keys stay
    await auth.authenticate("Bearer " + issuer.token())


async def test_a_token_without_kid_uses_the_only_key(issuer: LocalIssuer) -> None:
    auth, _, _ = authenticator(issuer)
    key = issuer.keys[0]
    token = jwt.encode(issuer.claims(), key.private, algorithm="RS256")  # type: ignore[arg-type]
    assert (await auth.authenticate(f"Bearer {token}")).subject == "alice"


JWT_LIKE = st.builds(
    lambda h, p, s: f"{h}.{p}.{s}",
    st.text(
        alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_=", max_size=60
    ),
    st.text(max_size=60).map(lambda t: jwt.utils.base64url_encode(t.encode()).decode()),
    st.text(alphabet="abc-_", max_size=10),
)
HEADERS = st.one_of(
    st.none(),
    st.text(max_size=200),
    st.text(max_size=200).map(lambda t: f"Bearer {t}"),
    JWT_LIKE.map(lambda t: f"Bearer {t}"),
    st.dictionaries(st.text(max_size=5), st.text(max_size=10), max_size=4).map(
        lambda d: (
            "Bearer "
            + jwt.utils.base64url_encode(jwt.api_jws.json.dumps(d).encode()).decode()
            + ".e30.sig"
        )
    ),
)


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(header=HEADERS)
async def test_any_authorization_header_is_either_accepted_or_refused_cleanly(
    issuer: LocalIssuer, header: str | None
) -> None:
    auth, _, _ = authenticator(issuer)
    outcome: object
    try:
        outcome = await auth.authenticate(header)
    except AuthnError as exc:
        outcome = exc.status
    assert outcome in (401, 403) or getattr(outcome, "subject", None) == "alice"


async def test_a_verified_token_is_remembered_until_its_expiry_at_most_a_minute(
    issuer: LocalIssuer,
) -> None:
    auth, fetcher, _ = authenticator(issuer)
    now = [time.time()]
    auth._clock = lambda: now[0]
    token = issuer.token(exp=int(now[0]) + 30, iat=None)
    first = await auth.authenticate(f"Bearer {token}")
    issuer.keys = [new_key()]
    auth.keys = JwksCache(fetcher)  # the signing key is no longer published
    assert await auth.authenticate(f"Bearer {token}") is first, "served from memory"
    now[0] += 31
    with pytest.raises(AuthnError):
        await auth.authenticate(f"Bearer {token}")
