"""An issuer's signing keys (JWKS): fetched, cached, refreshed on an unknown `kid`.

`JwksCache` holds the keys of one issuer. A lookup by `kid` is served from memory; a `kid` the
cache does not know triggers one refresh, at most once per `min_refresh_interval` (a stream of
tokens with made-up `kid`s must not turn into a stream of requests to the issuer). Keys older
than `max_age` are refreshed on the next lookup; if that refresh fails, the old keys are kept.
Concurrent lookups share one refresh.

Where the document comes from is a `JwksFetcher`: `HttpJwks` (an OIDC issuer: its `jwks_url`,
or the `jwks_uri` of its `/.well-known/openid-configuration`) or `KubeJwks` (the cluster's
service-account issuer, read from the apiserver with the pod's credentials). Every fetch is
bounded in time and size.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Final, Protocol

import aiohttp
import jwt
import structlog

from moorage_core.errors import KubeError

if TYPE_CHECKING:
    # Only the cluster's issuer needs a client; local mode never loads the Kubernetes code.
    from moorage_core.kube import KubeClient

log = structlog.get_logger(__name__)

FETCH_TIMEOUT: Final = 5.0
"""Seconds one fetch of a discovery document or JWKS may take."""
MAX_DOCUMENT_BYTES: Final = 1024 * 1024
"""Largest discovery document or JWKS accepted."""
DISCOVERY_PATH: Final = "/.well-known/openid-configuration"
KUBE_JWKS_PATH: Final = "/openid/v1/jwks"

Json = dict[str, Any]


class KeysUnavailable(Exception):
    """The issuer's keys (or its metadata) could not be fetched."""


class JwksFetcher(Protocol):
    async def fetch_jwks(self) -> Json:
        """The JWKS document (`{"keys": [...]}`); `KeysUnavailable` when it cannot be had."""
        ...

    async def fetch_issuer(self) -> str:
        """The issuer as its discovery document states it."""
        ...


async def fetch_json(session: aiohttp.ClientSession, url: str) -> Json:
    """GET a JSON object, bounded in time and size; `KeysUnavailable` otherwise."""
    try:
        async with session.get(
            url,
            timeout=aiohttp.ClientTimeout(total=FETCH_TIMEOUT),
            headers={"Accept": "application/json"},
            allow_redirects=False,
        ) as resp:
            if resp.status != 200:
                raise KeysUnavailable(f"GET {url}: HTTP {resp.status}")
            body = await resp.content.read(MAX_DOCUMENT_BYTES + 1)
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise KeysUnavailable(f"GET {url}: {type(exc).__name__}: {exc}") from None
    if len(body) > MAX_DOCUMENT_BYTES:
        raise KeysUnavailable(f"GET {url}: the document exceeds {MAX_DOCUMENT_BYTES} bytes")
    return _json_object(body, url)


def _json_object(body: bytes | Any, source: str) -> Json:
    try:
        data = json.loads(body) if isinstance(body, bytes | str) else body
    except ValueError:
        raise KeysUnavailable(f"{source}: not JSON") from None
    if not isinstance(data, dict):
        raise KeysUnavailable(f"{source}: not a JSON object")
    return data


class HttpJwks:
    """An OIDC issuer's keys over HTTP(S); the JWKS URL is discovered when not given."""

    def __init__(self, *, issuer: str, jwks_url: str | None = None) -> None:
        self.issuer = issuer
        self.jwks_url = jwks_url
        self._session: aiohttp.ClientSession | None = None
        self._discovery: Json | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession()
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def _discover(self) -> Json:
        if self._discovery is None:
            url = self.issuer.rstrip("/") + DISCOVERY_PATH
            document = await fetch_json(self.session, url)
            if document.get("issuer") != self.issuer:
                raise KeysUnavailable(
                    f"{url}: issuer is {document.get('issuer')!r}, expected {self.issuer!r}"
                )
            self._discovery = document
        return self._discovery

    async def fetch_issuer(self) -> str:
        return self.issuer

    async def fetch_jwks(self) -> Json:
        url = self.jwks_url
        if url is None:
            discovered = (await self._discover()).get("jwks_uri")
            if not isinstance(discovered, str) or not discovered:
                raise KeysUnavailable(f"{self.issuer}: the discovery document has no jwks_uri")
            url = discovered
        return await fetch_json(self.session, url)


class KubeJwks:
    """The cluster's service-account issuer, read from the apiserver (`/openid/v1/jwks`) with
    the pod's own credentials; the issuer comes from the apiserver's discovery document."""

    def __init__(self, kube: KubeClient) -> None:
        self.kube = kube

    async def _get(self, path: str) -> Json:
        try:
            data = await self.kube.request("GET", path, verb="get", timeout=FETCH_TIMEOUT)
        except KubeError as exc:
            raise KeysUnavailable(f"GET {path} from the apiserver: {exc}") from None
        return _json_object(data, path)

    async def fetch_issuer(self) -> str:
        issuer = (await self._get(DISCOVERY_PATH)).get("issuer")
        if not isinstance(issuer, str) or not issuer:
            raise KeysUnavailable("the apiserver's discovery document names no issuer")
        return issuer

    async def fetch_jwks(self) -> Json:
        return await self._get(KUBE_JWKS_PATH)


def parse_keys(document: Mapping[str, Any]) -> dict[str | None, jwt.PyJWK]:
    """Signing keys by `kid`; keys that cannot be used (encryption keys, unknown types, broken
    parameters) are skipped rather than failing the whole set."""
    raw = document.get("keys")
    if not isinstance(raw, list):
        raise KeysUnavailable("the JWKS has no keys array")
    keys: dict[str | None, jwt.PyJWK] = {}
    for entry in raw:
        if not isinstance(entry, dict) or entry.get("use", "sig") != "sig":
            continue
        if entry.get("kty") not in ("RSA", "EC"):
            continue  # symmetric or unknown: never a key a public JWKS should verify with
        try:
            key = jwt.PyJWK(entry)
        except (jwt.PyJWTError, ValueError, TypeError, KeyError) as exc:
            log.debug("jwks_key_skipped", kid=entry.get("kid"), error=str(exc))
            continue
        kid = entry.get("kid")
        keys[kid if isinstance(kid, str) else None] = key
    return keys


class JwksCache:
    """The keys of one issuer; see the module docstring for the refresh rules."""

    def __init__(
        self,
        fetcher: JwksFetcher,
        *,
        min_refresh_interval: float = 10.0,
        max_age: float = 3600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.fetcher = fetcher
        self.min_refresh_interval = min_refresh_interval
        self.max_age = max_age
        self._clock = clock
        self._keys: dict[str | None, jwt.PyJWK] | None = None
        self._fetched_at: float | None = None
        self._attempted_at: float | None = None
        self._lock = asyncio.Lock()
        self.fetches = 0
        """How many times the JWKS was requested (successfully or not)."""

    async def key(self, kid: str | None) -> jwt.PyJWK | None:
        """The key for `kid` (a token without `kid` gets the issuer's only key, if it has one);
        None when the issuer does not have it. `KeysUnavailable` when no keys were ever had."""
        keys = self._keys
        if keys is None or self._is_stale():
            keys = await self._refresh(reason="initial" if keys is None else "max_age")
        found = _pick(keys, kid)
        if found is None and self._may_refresh():
            keys = await self._refresh(reason="unknown_kid")
            found = _pick(keys, kid)
        return found

    def _is_stale(self) -> bool:
        return self._fetched_at is not None and self._clock() - self._fetched_at > self.max_age

    def _may_refresh(self) -> bool:
        return (
            self._attempted_at is None
            or self._clock() - self._attempted_at >= self.min_refresh_interval
        )

    async def _refresh(self, *, reason: str) -> dict[str | None, jwt.PyJWK]:
        attempted = self._attempted_at
        async with self._lock:
            if self._attempted_at != attempted and self._keys is not None:
                return self._keys  # another lookup refreshed while this one waited
            self._attempted_at = self._clock()
            self.fetches += 1
            try:
                keys = parse_keys(await self.fetcher.fetch_jwks())
            except KeysUnavailable as exc:
                log.warning("jwks_fetch_failed", reason=reason, error=str(exc))
                if self._keys is None:
                    raise
                return self._keys
            self._keys = keys
            self._fetched_at = self._clock()
            log.info("jwks_fetched", reason=reason, keys=len(keys))
            return keys


def _pick(keys: dict[str | None, jwt.PyJWK], kid: str | None) -> jwt.PyJWK | None:
    if kid is not None:
        return keys.get(kid)
    return next(iter(keys.values())) if len(keys) == 1 else None
