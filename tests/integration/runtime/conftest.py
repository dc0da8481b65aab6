"""Fixtures for the runtime's integration tests: a relay to break the network with, admin
clients that go through it, and subprocesses that are always cleaned up."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
import pytest_asyncio
from relaying import TcpRelay
from spawning import Processes

from moorage_core.kube import KubeClient, RequestObserver, load_configuration
from moorage_dev.cluster import ControlPlane


@pytest_asyncio.fixture
async def relay(control_plane: ControlPlane) -> AsyncIterator[TcpRelay]:
    parts = urlsplit(control_plane.server)
    relay = TcpRelay(parts.hostname or "127.0.0.1", int(parts.port or 443))
    await relay.start()
    try:
        yield relay
    finally:
        await relay.close()


ClientFactory = Callable[..., Any]


@pytest_asyncio.fixture
async def admin_client_via(control_plane: ControlPlane) -> AsyncIterator[ClientFactory]:
    """`await admin_client_via(relay, observer=...)`: an admin `KubeClient` whose requests go
    through `relay` (closed after the test)."""
    clients: list[KubeClient] = []

    async def make(relay: TcpRelay, *, observer: RequestObserver | None = None) -> KubeClient:
        cfg = await load_configuration(kubeconfig=str(control_plane.kubeconfig))
        cfg.host = relay.url
        client = KubeClient(cfg, user_agent="moorage-tests", observer=observer)
        clients.append(client)
        return client

    try:
        yield make
    finally:
        for client in clients:
            await client.close()


@pytest.fixture
def processes() -> Iterator[Processes]:
    procs = Processes()
    try:
        yield procs
    finally:
        for proc in procs.started:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
