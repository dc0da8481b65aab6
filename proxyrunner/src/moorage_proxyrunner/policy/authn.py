"""Authentication of MCP clients (spec §4.4): OIDC bearer JWTs, and Kubernetes service accounts.

Every request on an MCP path must carry `Authorization: Bearer <JWT>`. The token's header names
an algorithm from the allow-list (RSA, RSA-PSS and ECDSA; never `none`, never an HMAC secret)
and a `kid` looked up in the issuer's JWKS (`moorage_proxyrunner.policy.jwks`); the signature, `exp`,
`nbf`, `iss`, `aud` and `sub` are checked with PyJWT, then the required scopes (`scope` or `scp`)
and, for `kubernetes`, the allowed service accounts (`ns/name`, matched against
`sub = system:serviceaccount:ns:name` and the `kubernetes.io` claim).

A failure is 401 with `WWW-Authenticate: Bearer resource_metadata="<url>"` (plus
`error="invalid_token"` and a description when a token was sent), 403 with
`error="insufficient_scope"` for missing scopes or a service account not allowed in, and 503
while the issuer's keys cannot be had. The metadata URL serves RFC 9728 protected-resource
metadata. The caller's `Identity` is left on the aiohttp request for the endpoints
(`bridging.IDENTITY_KEY`); the token itself goes no further: the stdio bridge sends JSON-RPC
only, and the reverse proxy forwards an allow-list of headers that excludes `Authorization`.

The check runs as aiohttp middleware after the transport guard (Host/Origin), before a body is
parsed: an unauthenticated client costs the proxy no parsing.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

import jwt
import structlog
from aiohttp import web
from prometheus_client import CollectorRegistry, Counter

from moorage_api.runconfig import RunConfigOIDC
from moorage_proxyrunner.config.settings import ProxyRunnerSettings
from moorage_proxyrunner.front.app import MCP_PATHS
from moorage_proxyrunner.front.identity import IDENTITY_KEY
from moorage_proxyrunner.front.responding import json_body
from moorage_proxyrunner.policy.audit import AuditStep
from moorage_proxyrunner.policy.jwks import JwksCache, KeysUnavailable
from moorage_proxyrunner.protocol.jsonrpc import INVALID_REQUEST, error_response
from moorage_proxyrunner.protocol.pipeline import Identity

log = structlog.get_logger(__name__)

ALLOWED_ALGORITHMS: Final = (
    "RS256",
    "RS384",
    "RS512",
    "PS256",
    "PS384",
    "PS512",
    "ES256",
    "ES384",
    "ES512",
)
"""Asymmetric signatures only: `none` and HMAC (whose 'key' would be the public JWKS) never."""
MAX_TOKEN_BYTES: Final = 16 * 1024
LEEWAY_SECONDS: Final = 30.0
"""Clock skew tolerated on `exp`, `nbf` and `iat`."""
METADATA_PATH: Final = "/.well-known/oauth-protected-resource"
VERIFIED_CACHE_SIZE: Final = 1024
"""Tokens remembered as verified (clients send the same token on every request)."""
VERIFIED_CACHE_SECONDS: Final = 60.0
"""How long a verified token is remembered at most (never past its `exp`), so a key dropped
from the JWKS stops being honoured within this time."""
SERVICE_ACCOUNT_PREFIX: Final = "system:serviceaccount:"
NUMERIC_DATE_CLAIMS: Final = ("exp", "nbf", "iat")
"""Claims holding a time (RFC 7519 NumericDate): a JSON number when present."""
MAX_NUMERIC_DATE: Final = 253_402_300_799
"""9999-12-31T23:59:59Z, the latest time a token may name (as Python's `datetime` does)."""


@dataclass(frozen=True, slots=True)
class OidcSettings:
    """Whose tokens the proxy accepts (from the RunConfig's `oidc`; changing it restarts)."""

    kind: Literal["oidc", "kubernetes"]
    """`oidc`: tokens of `issuer`; `kubernetes`: service-account tokens of the cluster."""
    audience: str
    """The `aud` every token must carry."""
    issuer: str | None = None
    """Expected `iss`; None (kubernetes only) means the apiserver's discovery document says."""
    jwks_url: str | None = None
    """Where the keys are; None means the issuer's discovery document (or the apiserver) says."""
    client_id: str | None = None
    """OAuth client id, advertised in the protected-resource metadata."""
    required_scopes: tuple[str, ...] = ()
    """Scopes every token must have (in `scope` or `scp`)."""
    allowed_service_accounts: tuple[str, ...] = ()
    """`namespace/name` of the service accounts let in (kubernetes); empty: any."""
    algorithms: tuple[str, ...] = ALLOWED_ALGORITHMS
    """Signature algorithms accepted; always a subset of `ALLOWED_ALGORITHMS`."""

    @classmethod
    def from_runconfig(cls, oidc: RunConfigOIDC) -> OidcSettings:
        return cls(
            kind=oidc.type,
            audience=oidc.audience,
            issuer=oidc.issuer,
            jwks_url=oidc.jwks_url,
            client_id=oidc.client_id,
            required_scopes=tuple(oidc.required_scopes),
            allowed_service_accounts=tuple(oidc.allowed_service_accounts),
        )


class AuthnError(Exception):
    """Why a request is not let in: the HTTP status and the RFC 6750 error code."""

    def __init__(
        self,
        description: str,
        *,
        status: int = 401,
        error: str | None = "invalid_token",
        reason: str = "invalid_token",
        subject: str | None = None,
    ) -> None:
        super().__init__(description)
        self.description = description
        self.status = status
        self.error = error
        self.reason = reason
        """Short label for metrics and audit (`missing`, `expired`, `audience`, ...)."""
        self.subject = subject


# -- pure checks -------------------------------------------------------------------------------


def bearer_token(header: str | None) -> str:
    """The token of an `Authorization: Bearer <token>` header; `AuthnError` otherwise."""
    if header is None or not header.strip():
        raise AuthnError("no bearer token", error=None, reason="missing")
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise AuthnError("the Authorization header is not a bearer token", reason="malformed")
    if len(token) > MAX_TOKEN_BYTES or not token.isascii() or " " in token:
        raise AuthnError("the bearer token is malformed", reason="malformed")
    return token


def token_header(token: str, *, algorithms: Sequence[str]) -> tuple[str, str | None]:
    """(alg, kid) of a token's header, refusing algorithms not allowed."""
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise AuthnError("the bearer token is not a JWT", reason="malformed") from None
    alg = header.get("alg")
    if not isinstance(alg, str) or alg not in algorithms or alg not in ALLOWED_ALGORITHMS:
        raise AuthnError(f"the token's algorithm {alg!r} is not accepted", reason="algorithm")
    kid = header.get("kid")
    if kid is not None and not isinstance(kid, str):
        raise AuthnError("the token's kid is not a string", reason="malformed")
    return alg, kid


def key_fits(key: jwt.PyJWK, alg: str) -> bool:
    """Whether a JWKS key may verify `alg`: its type matches, and so does its `alg` if set."""
    declared = key._jwk_data.get("alg")
    if isinstance(declared, str) and declared != alg:
        return False
    family = "EC" if alg.startswith("ES") else "RSA"
    return bool(key.key_type == family)


_CLAIM_FAILURES: Final[tuple[tuple[type[jwt.PyJWTError], str, str], ...]] = (
    (jwt.ExpiredSignatureError, "expired", "the token has expired"),
    (jwt.ImmatureSignatureError, "not_yet_valid", "the token is not valid yet"),
    (jwt.InvalidAudienceError, "audience", "the token is not for this audience"),
    (jwt.InvalidIssuerError, "issuer", "the token is not from the expected issuer"),
    (jwt.InvalidSignatureError, "signature", "the token's signature does not verify"),
    (jwt.MissingRequiredClaimError, "claims", "the token lacks a required claim"),
)


def verify_token(
    token: str,
    *,
    key: jwt.PyJWK,
    alg: str,
    issuer: str,
    audience: str,
) -> dict[str, Any]:
    """The verified claims; `AuthnError` naming what failed."""
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            key=key.key,
            algorithms=[alg],
            audience=audience,
            issuer=issuer,
            leeway=LEEWAY_SECONDS,
            options={"require": ["exp", "iss", "aud", "sub"]},
        )
    except (TypeError, ValueError):
        # A key PyJWT cannot use for this algorithm (`key_fits` should have caught it).
        raise AuthnError("the token does not verify", reason="invalid") from None
    except jwt.PyJWTError as exc:
        for kind, reason, text in _CLAIM_FAILURES:
            if isinstance(exc, kind):
                raise AuthnError(text, reason=reason) from None
        raise AuthnError("the token does not verify", reason="invalid") from None
    subject = claims.get("sub")
    if not isinstance(subject, str) or not subject:
        raise AuthnError("the token has no subject", reason="claims")
    for name in NUMERIC_DATE_CLAIMS:
        if name in claims and not is_numeric_date(claims[name]):
            raise AuthnError(
                f"the token's {name} is not a time between 1970 and 9999", reason="claims"
            )
    return claims


def is_numeric_date(value: object) -> bool:
    """Whether a claim is a JSON number usable as a time (RFC 7519 NumericDate) between the
    epoch and the end of year 9999.

    PyJWT also takes numeric strings and compares arbitrarily large integers exactly, so a token
    with `exp = 10**400` would never expire; such a time, a string, a bool, NaN or an infinity
    is refused here, and nothing later has to convert them.
    """
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    # Exact for ints of any size; False for NaN and the infinities.
    return 0 <= value <= MAX_NUMERIC_DATE


def remembered_until(exp: float, *, now: float) -> float:
    """Until when a verified token with this `exp` is remembered: its expiry, at most
    `VERIFIED_CACHE_SECONDS` from `now`.

    Comparing an int with a float is exact in Python, so only an `exp` already below the limit
    is converted (whatever `is_numeric_date` lets through, this never overflows).
    """
    limit = now + VERIFIED_CACHE_SECONDS
    return limit if exp >= limit else float(exp)


def token_scopes(claims: Mapping[str, Any]) -> set[str]:
    """Scopes from `scope` (space-separated) or `scp` (a list or a string)."""
    found: set[str] = set()
    for claim in ("scope", "scp"):
        value = claims.get(claim)
        if isinstance(value, str):
            found.update(value.split())
        elif isinstance(value, list):
            found.update(v for v in value if isinstance(v, str))
    return found


def service_account_of(claims: Mapping[str, Any]) -> str | None:
    """`namespace/name` of a service-account token (`sub` and `kubernetes.io` must agree)."""
    subject = claims.get("sub")
    if not isinstance(subject, str) or not subject.startswith(SERVICE_ACCOUNT_PREFIX):
        return None
    parts = subject[len(SERVICE_ACCOUNT_PREFIX) :].split(":")
    if len(parts) != 2 or not all(parts):
        return None
    namespace, name = parts
    detail = claims.get("kubernetes.io")
    if detail is not None:
        if not isinstance(detail, dict):
            return None
        account = detail.get("serviceaccount")
        if detail.get("namespace") != namespace or (
            not isinstance(account, dict) or account.get("name") != name
        ):
            return None
    return f"{namespace}/{name}"


def check_authorised_claims(claims: Mapping[str, Any], settings: OidcSettings) -> None:
    """Required scopes and allowed service accounts; `AuthnError` (403) when not met."""
    subject = claims.get("sub")
    missing = [s for s in settings.required_scopes if s not in token_scopes(claims)]
    if missing:
        raise AuthnError(
            f"the token lacks the scopes {' '.join(missing)}",
            status=403,
            error="insufficient_scope",
            reason="scope",
            subject=subject if isinstance(subject, str) else None,
        )
    if settings.kind != "kubernetes":
        return
    account = service_account_of(claims)
    if account is None:
        raise AuthnError("the token is not a service-account token", reason="claims")
    if settings.allowed_service_accounts and account not in settings.allowed_service_accounts:
        raise AuthnError(
            f"the service account {account} is not allowed in",
            status=403,
            error="insufficient_scope",
            reason="service_account",
            subject=subject if isinstance(subject, str) else None,
        )


# -- the authenticator -------------------------------------------------------------------------


class AuthnMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.failures = Counter(
            "moorage_proxy_authn_failures_total",
            "Requests refused by authentication, by reason.",
            ["reason"],
            registry=registry,
        )


class Authenticator:
    """Verifies bearer tokens of one issuer against its cached JWKS."""

    def __init__(
        self,
        settings: OidcSettings,
        *,
        keys: JwksCache,
        issuer: Callable[[], Awaitable[str]] | None = None,
    ) -> None:
        self.settings = settings
        self.keys = keys
        self._issuer_source = issuer
        self._issuer = settings.issuer
        self._verified: OrderedDict[str, tuple[Identity, float]] = OrderedDict()
        self._clock = time.time

    async def issuer(self) -> str:
        """The expected `iss`: configured, or discovered once (kubernetes)."""
        if self._issuer is None:
            source = self._issuer_source or self.keys.fetcher.fetch_issuer
            self._issuer = await source()
            log.info("oidc_issuer_discovered", issuer=self._issuer)
        return self._issuer

    def known_issuer(self) -> str | None:
        return self._issuer

    async def authenticate(self, header: str | None) -> Identity:
        """The caller's identity; `AuthnError` when the request must not go on."""
        token = bearer_token(header)
        remembered = self._verified.get(token)
        if remembered is not None:
            if self._clock() < remembered[1]:
                return remembered[0]
            del self._verified[token]
        alg, kid = token_header(token, algorithms=self.settings.algorithms)
        try:
            issuer = await self.issuer()
            key = await self.keys.key(kid)
        except KeysUnavailable as exc:
            raise AuthnError(
                f"the issuer's keys are unavailable: {exc}",
                status=503,
                error=None,
                reason="keys_unavailable",
            ) from None
        if key is None:
            raise AuthnError("the token's signing key is unknown", reason="unknown_key")
        if not key_fits(key, alg):
            raise AuthnError(
                f"the token's algorithm {alg} does not fit its key", reason="algorithm"
            )
        claims = verify_token(
            token, key=key, alg=alg, issuer=issuer, audience=self.settings.audience
        )
        check_authorised_claims(claims, self.settings)
        identity = Identity(subject=claims["sub"], claims=claims, token=token)
        self._remember(token, identity, remembered_until(claims["exp"], now=self._clock()))
        return identity

    def _remember(self, token: str, identity: Identity, expires: float) -> None:
        self._verified[token] = (identity, expires)
        if len(self._verified) > VERIFIED_CACHE_SIZE:
            self._verified.popitem(last=False)


# -- HTTP --------------------------------------------------------------------------------------


def public_base(request: web.Request, settings: ProxyRunnerSettings) -> str:
    """The proxy's origin and path prefix as its clients see it."""
    scheme = request.scheme
    host = request.host
    prefix = settings.endpoint_prefix.rstrip("/")
    if settings.trust_proxy_headers:
        scheme = request.headers.get("X-Forwarded-Proto", scheme).split(",")[0].strip()
        host = request.headers.get("X-Forwarded-Host", host).split(",")[0].strip()
        prefix = request.headers.get("X-Forwarded-Prefix", "").rstrip("/") or prefix
    return f"{scheme}://{host}{prefix}"


def resource_path(path: str) -> str:
    """The MCP endpoint a request path belongs to (`/messages` is part of `/sse`)."""
    return "/mcp" if path == "/mcp" else "/sse"


def challenge(error: AuthnError, *, metadata_url: str, scopes: Sequence[str]) -> str:
    """The `WWW-Authenticate` value for a refusal."""
    parts = []
    if error.error is not None:
        parts.append(f'error="{error.error}"')
        parts.append(f'error_description="{_quoted(error.description)}"')
    if scopes:
        parts.append(f'scope="{_quoted(" ".join(scopes))}"')
    parts.append(f'resource_metadata="{_quoted(metadata_url)}"')
    return "Bearer " + ", ".join(parts)


def _quoted(text: str) -> str:
    """Safe inside an HTTP quoted-string: printable ASCII, no quote or backslash."""
    return "".join(c for c in text if c.isascii() and c.isprintable() and c not in '"\\')


class AuthnLayer:
    """The aiohttp side: middleware for the MCP paths and the metadata endpoints."""

    def __init__(
        self,
        authenticator: Authenticator,
        *,
        settings: ProxyRunnerSettings,
        primary_path: str = "/mcp",
        audit: AuditStep | None = None,
        metrics: AuthnMetrics | None = None,
    ) -> None:
        self.authenticator = authenticator
        self.settings = settings
        self.primary_path = primary_path
        self.audit = audit
        self.metrics = metrics

    def install(self, app: web.Application) -> None:
        """Add the middleware (after the transport guard) and the metadata routes; before the
        application starts (aiohttp freezes its middleware list then)."""
        app.middlewares.append(self.middleware)
        app.router.add_get(METADATA_PATH, self.metadata)
        app.router.add_get(METADATA_PATH + "/{resource:.+}", self.metadata)

    def metadata_url(self, request: web.Request) -> str:
        return f"{public_base(request, self.settings)}{METADATA_PATH}{resource_path(request.path)}"

    @web.middleware
    async def middleware(
        self,
        request: web.Request,
        handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
    ) -> web.StreamResponse:
        if request.path not in MCP_PATHS:
            return await handler(request)
        started = time.perf_counter()
        try:
            identity = await self.authenticator.authenticate(request.headers.get("Authorization"))
        except AuthnError as exc:
            return self._refuse(request, exc, started)
        request[IDENTITY_KEY] = identity
        return await handler(request)

    def _refuse(self, request: web.Request, error: AuthnError, started: float) -> web.Response:
        if self.metrics is not None:
            self.metrics.failures.labels(error.reason).inc()
        if self.audit is not None:
            self.audit.record_refusal(
                path=request.path,
                status=error.status,
                reason=error.reason,
                subject=error.subject,
                seconds=time.perf_counter() - started,
            )
        log.info("authn_refused", path=request.path, reason=error.reason, status=error.status)
        headers = {}
        if error.status in (401, 403):
            headers["WWW-Authenticate"] = challenge(
                error,
                metadata_url=self.metadata_url(request),
                scopes=self.authenticator.settings.required_scopes,
            )
        title = {401: "Unauthorized", 403: "Forbidden"}.get(error.status, "Unavailable")
        body = error_response(None, INVALID_REQUEST, f"{title}: {error.description}")
        return json_body(body, status=error.status, headers=headers)

    async def metadata(self, request: web.Request) -> web.Response:
        """RFC 9728 protected-resource metadata for `/mcp` or `/sse` (the root: the main one)."""
        suffix = request.match_info.get("resource")
        if suffix is None:
            path = self.primary_path
        elif f"/{suffix}" in ("/mcp", "/sse"):
            path = f"/{suffix}"
        else:
            raise web.HTTPNotFound()
        settings = self.authenticator.settings
        document: dict[str, Any] = {
            "resource": f"{public_base(request, self.settings)}{path}",
            "bearer_methods_supported": ["header"],
        }
        issuer = self.authenticator.known_issuer()
        if issuer is None:
            try:
                issuer = await self.authenticator.issuer()
            except KeysUnavailable:
                issuer = None
        if issuer is not None:
            document["authorization_servers"] = [issuer]
        if settings.required_scopes:
            document["scopes_supported"] = list(settings.required_scopes)
        if settings.client_id:
            document["client_id"] = settings.client_id
        return web.json_response(document, headers={"Cache-Control": "max-age=300"})
