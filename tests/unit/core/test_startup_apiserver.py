"""Waiting for the apiserver at start: bounded by the window, and refused credentials are named."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from aiohttp import web
from aiohttp.test_utils import TestServer

from moorage_core.kube import KubeClient
from moorage_core.startup import EXIT_FAILED, StartupFailure, wait_for_apiserver


@pytest_asyncio.fixture
async def apiserver() -> AsyncIterator[tuple[TestServer, list[int]]]:
    """An apiserver whose `/version` answers with the statuses queued in the list (200 once it
    is empty)."""
    statuses: list[int] = []

    async def version(_: web.Request) -> web.Response:
        status = statuses.pop(0) if statuses else 200
        return web.json_response({"gitVersion": "v1.34.4", "message": "m"}, status=status)

    app = web.Application()
    app.router.add_get("/version", version)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield server, statuses
    finally:
        await server.close()


def _client(url: str) -> KubeClient:
    return KubeClient.for_token(host=url, token="t", ca_file=None)


async def _wait(kube: KubeClient, *, timeout: float) -> None:
    await wait_for_apiserver(
        kube,
        timeout=timeout,
        setting="STARTUP_TIMEOUT / --startup-timeout",
        credentials_setting="KUBECONFIG / --kubeconfig",
    )


async def test_returns_once_the_apiserver_answers(
    apiserver: tuple[TestServer, list[int]],
) -> None:
    server, statuses = apiserver
    statuses.extend([503, 503])
    kube = _client(str(server.make_url("")))
    try:
        await _wait(kube, timeout=10)
    finally:
        await kube.close()
    assert statuses == []


async def test_refused_credentials_name_the_kubeconfig(
    apiserver: tuple[TestServer, list[int]],
) -> None:
    server, statuses = apiserver
    statuses.extend([401, 401])
    kube = _client(str(server.make_url("")))
    try:
        with pytest.raises(StartupFailure) as caught:
            await _wait(kube, timeout=10)
    finally:
        await kube.close()
    assert caught.value.setting == "KUBECONFIG / --kubeconfig"
    assert "refused the credentials" in caught.value.problem


async def test_an_apiserver_that_never_answers_fails_after_the_window() -> None:
    kube = _client("http://127.0.0.1:9")  # the discard port: nothing listens there
    started = time.monotonic()
    try:
        with pytest.raises(StartupFailure) as caught:
            await _wait(kube, timeout=0.5)
    finally:
        await kube.close()
    assert time.monotonic() - started < 3
    assert caught.value.setting == "STARTUP_TIMEOUT / --startup-timeout"
    assert caught.value.problem.startswith(
        "the apiserver at http://127.0.0.1:9 did not answer within 0.5s"
    )
    assert caught.value.exit_code == EXIT_FAILED
