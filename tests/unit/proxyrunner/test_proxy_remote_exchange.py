"""Token exchange (RFC 8693): the request sent, the answer read, the cache and single flight."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry

from moorage_api.outgoing import GRANT_TYPE_TOKEN_EXCHANGE, TOKEN_TYPE_ACCESS_TOKEN
from moorage_proxyrunner.backends.remote.exchange import (
    EXPIRY_MARGIN,
    ExchangeConfig,
    ExchangeFailed,
    ExchangeMetrics,
    TokenExchanger,
    cache_key,
    exchange_request,
    parse_exchange_answer,
)


def config(**changes: Any) -> ExchangeConfig:
    fields: dict[str, Any] = {
        "token_url": "http://as.example/token",
        "client_id": "proxy id",
        "client_secret": "s3cr:t",
        "client_auth": "client_secret_basic",
        "audience": "https://upstream",
        "scopes": ("a", "b"),
        "subject_token_type": TOKEN_TYPE_ACCESS_TOKEN,
    }
    return ExchangeConfig(**(fields | changes))


def test_the_request_names_the_grant_subject_audience_and_scopes_with_basic_auth() -> None:
    form, headers = exchange_request(config(), "caller-token")
    assert form == {
        "grant_type": GRANT_TYPE_TOKEN_EXCHANGE,
        "subject_token": "caller-token",
        "subject_token_type": TOKEN_TYPE_ACCESS_TOKEN,
        "audience": "https://upstream",
        "scope": "a b",
    }
    # RFC 6749 §2.3.1: id and secret are form-encoded before base64.
    basic = base64.b64decode(headers["Authorization"].removeprefix("Basic ")).decode()
    assert basic == "proxy%20id:s3cr%3At"


def test_client_secret_post_puts_the_credentials_in_the_form() -> None:
    form, headers = exchange_request(config(client_auth="client_secret_post"), "t")
    assert "Authorization" not in headers
    assert (form["client_id"], form["client_secret"]) == ("proxy id", "s3cr:t")


def test_a_public_client_sends_only_its_id() -> None:
    form, headers = exchange_request(config(client_secret=None, audience=None, scopes=()), "t")
    assert "Authorization" not in headers
    assert form["client_id"] == "proxy id"
    assert not {"client_secret", "audience", "scope"} & form.keys()


def test_answers_are_read_or_refused_with_what_the_server_said() -> None:
    assert parse_exchange_answer(200, {"access_token": "x", "expires_in": 120}) == ("x", 120.0)
    assert parse_exchange_answer(200, {"access_token": "x"})[1] > 0
    with pytest.raises(ExchangeFailed) as refused:
        parse_exchange_answer(400, {"error": "invalid_target", "error_description": "no"})
    assert refused.value.status == 403
    assert "invalid_target: no" in str(refused.value)
    with pytest.raises(ExchangeFailed) as unauthorised:
        parse_exchange_answer(401, None)
    assert unauthorised.value.status == 403
    for status, body in [(500, {}), (200, []), (200, {"access_token": ""})]:
        with pytest.raises(ExchangeFailed) as broken:
            parse_exchange_answer(status, body)
        assert broken.value.status == 502


def test_the_cache_key_hides_the_token_and_names_audience_and_scopes() -> None:
    key = cache_key("caller-token", config())
    assert "caller-token" not in key
    assert key.endswith("|https://upstream|a b")
    assert key != cache_key("other-token", config())


class TokenEndpoint:
    def __init__(self) -> None:
        self.calls: list[dict[str, str]] = []
        self.status = 200
        self.expires_in = 300
        self.gate: asyncio.Event | None = None
        self.arrived = asyncio.Event()
        self.expected = 1

    async def handle(self, request: web.Request) -> web.Response:
        form: dict[str, str] = dict(await request.post())  # type: ignore[arg-type]
        self.calls.append(form)
        if len(self.calls) >= self.expected:
            self.arrived.set()
        if self.gate is not None:
            await self.gate.wait()
        if self.status != 200:
            return web.json_response({"error": "invalid_grant"}, status=self.status)
        subject = form["subject_token"]
        return web.json_response(
            {"access_token": f"up-{subject}-{len(self.calls)}", "expires_in": self.expires_in}
        )


@pytest.fixture
async def endpoint() -> AsyncIterator[tuple[TokenEndpoint, str]]:
    served = TokenEndpoint()
    app = web.Application()
    app.router.add_post("/token", served.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield served, f"http://127.0.0.1:{port}/token"
    await runner.cleanup()


def exchanger(url: str, clock: list[float], **options: Any) -> TokenExchanger:
    return TokenExchanger(
        config(token_url=url),
        metrics=ExchangeMetrics(CollectorRegistry()),
        clock=lambda: clock[0],
        **options,
    )


async def test_a_token_is_exchanged_once_and_reused_until_shortly_before_it_expires(
    endpoint: tuple[TokenEndpoint, str],
) -> None:
    served, url = endpoint
    clock = [1000.0]
    te = exchanger(url, clock)
    try:
        assert await te.token_for("alice") == "up-alice-1"
        assert await te.token_for("alice") == "up-alice-1"
        assert len(served.calls) == 1
        clock[0] += 300 - EXPIRY_MARGIN - 1
        assert await te.token_for("alice") == "up-alice-1"
        clock[0] += 2
        assert await te.token_for("alice") == "up-alice-2"
        assert te.metrics.cache_hits._value.get() == 2
    finally:
        await te.close()


async def test_concurrent_requests_with_one_token_share_one_exchange(
    endpoint: tuple[TokenEndpoint, str],
) -> None:
    served, url = endpoint
    served.gate = asyncio.Event()
    served.expected = 2
    te = exchanger(url, [0.0])
    try:
        waiting = [asyncio.create_task(te.token_for("alice")) for _ in range(5)]
        other = asyncio.create_task(te.token_for("bob"))
        await asyncio.wait_for(served.arrived.wait(), 5)
        served.gate.set()
        answers = [await task for task in waiting]
        assert len(set(answers)) == 1
        assert answers[0].startswith("up-alice-")
        assert (await other).startswith("up-bob-")
        assert len(served.calls) == 2
        assert sorted(call["subject_token"] for call in served.calls) == ["alice", "bob"]
    finally:
        await te.close()


async def test_failures_are_not_cached_and_the_cache_is_bounded(
    endpoint: tuple[TokenEndpoint, str],
) -> None:
    served, url = endpoint
    te = exchanger(url, [0.0], cache_size=2)
    try:
        served.status = 401
        with pytest.raises(ExchangeFailed) as refused:
            await te.token_for("alice")
        assert refused.value.status == 403
        served.status = 200
        assert (await te.token_for("alice")).startswith("up-alice-")
        await te.token_for("bob")
        await te.token_for("carol")
        calls = len(served.calls)
        await te.token_for("alice")  # dropped as least recently used
        assert len(served.calls) == calls + 1
        await te.token_for("carol")
        assert len(served.calls) == calls + 1
    finally:
        await te.close()


async def test_an_unreachable_token_endpoint_is_a_502() -> None:
    te = exchanger("http://127.0.0.1:9/token", [0.0])
    try:
        with pytest.raises(ExchangeFailed) as unreachable:
            await te.token_for("alice")
        assert unreachable.value.status == 502
    finally:
        await te.close()


async def test_a_short_lived_answer_is_not_cached(endpoint: tuple[TokenEndpoint, str]) -> None:
    served, url = endpoint
    served.expires_in = int(EXPIRY_MARGIN) - 1
    te = exchanger(url, [0.0])
    try:
        await te.token_for("alice")
        await te.token_for("alice")
        assert len(served.calls) == 2
    finally:
        await te.close()
