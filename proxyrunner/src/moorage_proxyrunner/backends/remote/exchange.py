"""OAuth 2.0 Token Exchange (RFC 8693): the caller's token traded for one meant for the upstream.

The caller's validated bearer token is the `subject_token`; the answer's `access_token` goes
upstream instead, so the caller's own token never leaves the proxy. Answers are cached per
(hash of the caller's token, audience, scopes) until shortly before they expire, in a bounded
LRU; concurrent requests with the same token share one exchange; failures are not cached.
Tokens are never logged: events name the token endpoint, the audience and a status.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import quote

import aiohttp
import structlog
from prometheus_client import CollectorRegistry, Counter

from moorage_api.outgoing import GRANT_TYPE_TOKEN_EXCHANGE, ClientAuthMethod

log = structlog.get_logger(__name__)

EXPIRY_MARGIN: Final = 30.0
"""Seconds before its expiry an exchanged token stops being reused."""
DEFAULT_LIFETIME: Final = 60.0
"""How long an answer without `expires_in` is reused (RFC 6749 leaves it to the server)."""
REQUEST_TIMEOUT: Final = 10.0
"""Seconds an exchange may take before the caller is told the server is unreachable."""


class ExchangeFailed(Exception):
    """The exchange did not give a token. `status`: what the client is answered (403 when the
    authorization server refused, 502 when it could not be asked or answered nonsense)."""

    def __init__(self, message: str, *, status: int) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class ExchangeConfig:
    """What the proxy asks the token endpoint for, with the client secret already read."""

    token_url: str
    client_id: str
    client_secret: str | None
    client_auth: ClientAuthMethod
    audience: str | None
    scopes: tuple[str, ...]
    subject_token_type: str


def exchange_request(
    config: ExchangeConfig, subject_token: str
) -> tuple[dict[str, str], dict[str, str]]:
    """The form and headers of one exchange request (RFC 8693 §2.1, client auth RFC 6749 §2.3.1)."""
    form = {
        "grant_type": GRANT_TYPE_TOKEN_EXCHANGE,
        "subject_token": subject_token,
        "subject_token_type": config.subject_token_type,
    }
    if config.audience:
        form["audience"] = config.audience
    if config.scopes:
        form["scope"] = " ".join(config.scopes)
    headers = {"Accept": "application/json"}
    if config.client_auth == "client_secret_basic" and config.client_secret is not None:
        pair = f"{quote(config.client_id, safe='')}:{quote(config.client_secret, safe='')}"
        headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
    else:
        form["client_id"] = config.client_id
        if config.client_secret is not None:
            form["client_secret"] = config.client_secret
    return form, headers


def parse_exchange_answer(status: int, body: Any) -> tuple[str, float]:
    """(access token, lifetime in seconds) from the token endpoint's answer; `ExchangeFailed`
    naming the server's `error` when it refused."""
    if status >= 400:
        error = body.get("error") if isinstance(body, Mapping) else None
        description = body.get("error_description") if isinstance(body, Mapping) else None
        named = f"{error}: {description}" if error and description else error or f"HTTP {status}"
        # A refusal (4xx) is about this caller's token; a 5xx is the server's own trouble.
        raise ExchangeFailed(
            f"the token exchange was refused ({named})", status=403 if status < 500 else 502
        )
    if not isinstance(body, Mapping):
        raise ExchangeFailed("the token endpoint's answer is not a JSON object", status=502)
    token = body.get("access_token")
    if not isinstance(token, str) or not token:
        raise ExchangeFailed("the token endpoint's answer has no access_token", status=502)
    expires_in = body.get("expires_in")
    if isinstance(expires_in, bool) or not isinstance(expires_in, int | float):
        return token, DEFAULT_LIFETIME
    return token, float(expires_in)


def cache_key(subject_token: str, config: ExchangeConfig) -> str:
    digest = hashlib.sha256(subject_token.encode()).hexdigest()
    return f"{digest}|{config.audience or ''}|{' '.join(config.scopes)}"


class ExchangeMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.exchanges = Counter(
            "moorage_proxy_token_exchanges",
            "Token exchanges asked of the authorization server, by result.",
            ["result"],
            registry=registry,
        )
        self.cache_hits = Counter(
            "moorage_proxy_token_exchange_cache_hits",
            "Requests that reused a cached exchanged token.",
            registry=registry,
        )


class TokenExchanger:
    """Exchanges callers' tokens at one token endpoint, caching the answers."""

    def __init__(
        self,
        config: ExchangeConfig,
        *,
        metrics: ExchangeMetrics,
        cache_size: int = 1024,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.metrics = metrics
        self.cache_size = cache_size
        self._clock = clock
        self._cache: OrderedDict[str, tuple[str, float]] = OrderedDict()
        self._inflight: dict[str, asyncio.Future[tuple[str, float]]] = {}
        self._session: aiohttp.ClientSession | None = None

    async def token_for(self, subject_token: str) -> str:
        """The upstream token for a caller's token; `ExchangeFailed` when there is none."""
        key = cache_key(subject_token, self.config)
        cached = self._cache.get(key)
        now = self._clock()
        if cached is not None:
            if now < cached[1]:
                self._cache.move_to_end(key)
                self.metrics.cache_hits.inc()
                return cached[0]
            del self._cache[key]
        pending = self._inflight.get(key)
        if pending is None:
            pending = asyncio.ensure_future(self._exchange(subject_token))
            self._inflight[key] = pending
            pending.add_done_callback(lambda _: self._inflight.pop(key, None))
        token, lifetime = await asyncio.shield(pending)
        if lifetime > EXPIRY_MARGIN:
            self._cache[key] = (token, now + lifetime - EXPIRY_MARGIN)
            self._cache.move_to_end(key)
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return token

    async def _exchange(self, subject_token: str) -> tuple[str, float]:
        form, headers = exchange_request(self.config, subject_token)
        if self._session is None:
            self._session = aiohttp.ClientSession()
        try:
            async with self._session.post(
                self.config.token_url,
                data=form,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT),
                allow_redirects=False,
            ) as response:
                try:
                    body: Any = await response.json(content_type=None)
                except ValueError:
                    body = None
                status = response.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            self.metrics.exchanges.labels("unreachable").inc()
            log.warning(
                "token_exchange_unreachable", token_url=self.config.token_url, error=str(exc)
            )
            raise ExchangeFailed(
                f"the token endpoint {self.config.token_url} cannot be reached", status=502
            ) from None
        try:
            answer = parse_exchange_answer(status, body)
        except ExchangeFailed as exc:
            self.metrics.exchanges.labels("refused" if exc.status == 403 else "error").inc()
            log.warning(
                "token_exchange_failed",
                token_url=self.config.token_url,
                audience=self.config.audience,
                status=status,
                error=str(exc),
            )
            raise
        self.metrics.exchanges.labels("ok").inc()
        log.info(
            "token_exchanged",
            token_url=self.config.token_url,
            audience=self.config.audience,
            expires_in=answer[1],
        )
        return answer

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
