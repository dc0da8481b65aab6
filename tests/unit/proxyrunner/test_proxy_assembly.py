"""The one start-up assembly: which endpoints a `Backend` gets, and the path clients use first."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry
from testkit.stdiochannels import ScriptedServer

from moorage_api.runconfig import RunConfig
from moorage_core.startup import StartupFailure
from moorage_proxyrunner.backends.remote.client import OutgoingClient
from moorage_proxyrunner.backends.reverse.endpoints import HttpEndpoints
from moorage_proxyrunner.backends.stdio.endpoints import BridgeEndpoints
from moorage_proxyrunner.config.settings import ProxyRunnerSettings
from moorage_proxyrunner.front.metrics import ProxyMetrics
from moorage_proxyrunner.protocol.pipeline import Pipeline
from moorage_proxyrunner.startup.assembly import (
    Backend,
    build_endpoints,
    primary_path,
    uses_outgoing,
    with_outgoing,
)
from moorage_proxyrunner.startup.local import LocalBackend


def built(backend: Backend) -> object:
    return build_endpoints(
        backend,
        settings=ProxyRunnerSettings(port=0),
        metrics=ProxyMetrics(CollectorRegistry()),
        pipeline=Pipeline(),
    )


async def test_a_stdio_backend_gets_the_bridge_over_its_channels() -> None:
    endpoints = built(Backend("stdio", channels=ScriptedServer().factory))
    assert isinstance(endpoints, BridgeEndpoints)
    assert endpoints.announcer() is not None
    assert endpoints.rechecker() is not None


@pytest.mark.parametrize("transport", ["streamable-http", "sse"])
async def test_an_http_backend_gets_the_reverse_proxy_to_its_urls(transport: str) -> None:
    urls = ("http://127.0.0.1:1/mcp", "http://127.0.0.1:2/mcp")
    endpoints = built(Backend(transport, target_urls=urls))
    assert isinstance(endpoints, HttpEndpoints)
    assert endpoints.targets == list(urls)
    assert endpoints.transport == transport


def test_a_local_command_resolves_to_channels_and_a_url_to_targets() -> None:
    command = LocalBackend(command=("server", "--stdio")).resolve()
    assert command.transport == "stdio"
    assert command.channels is not None
    assert command.target_urls == ()
    remote = LocalBackend(transport="sse", target_urls=("http://h/sse",)).resolve()
    assert remote == Backend("sse", target_urls=("http://h/sse",))


@pytest.mark.parametrize(
    ("transport", "path"), [("stdio", "/mcp"), ("streamable-http", "/mcp"), ("sse", "/sse")]
)
def test_clients_start_at_sse_only_for_http_and_sse_servers(transport: str, path: str) -> None:
    assert primary_path(transport) == path


async def test_an_http_server_with_outgoing_auth_is_reached_through_the_outgoing_client() -> None:
    runconfig = RunConfig.model_validate(
        {
            "name": "s",
            "namespace": "n",
            "image": "x",
            "transport": "streamable-http",
            "outgoing_auth": {
                "type": "bearerToken",
                "config_name": "c",
                "bearer_token": {"env": "TOKEN"},
            },
        }
    )
    settings = ProxyRunnerSettings(port=0)
    plain = Backend("streamable-http", target_urls=("http://10.0.0.1:8080/mcp",))
    backend = with_outgoing(
        plain, runconfig, settings=settings, registry=CollectorRegistry(), environ={"TOKEN": "t"}
    )
    assert isinstance(backend.client, OutgoingClient)
    assert backend.client.allow_private  # the server's own pods
    endpoints = built(backend)
    assert isinstance(endpoints, HttpEndpoints)
    assert endpoints.client is backend.client
    assert uses_outgoing(endpoints)
    assert not uses_outgoing(built(plain))
    stdio = Backend("stdio", channels=ScriptedServer().factory)
    assert with_outgoing(stdio, runconfig, settings=settings, registry=CollectorRegistry()) is stdio
    with pytest.raises(StartupFailure, match="TOKEN"):
        with_outgoing(plain, runconfig, settings=settings, registry=CollectorRegistry(), environ={})
