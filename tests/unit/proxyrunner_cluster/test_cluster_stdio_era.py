"""A RunConfig's `stdio_era` chooses the era the cluster proxy runs a stdio server in.

The RunConfig becomes the proxy's settings (`build_proxy_settings`) and the settings the stdio
bridge (`build_endpoints`), as at start-up; a scripted dual-era server then shows which era
the bridge chose for its process.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from testkit.stdiochannels import ScriptedServer

from moorage_api.runconfig import RunConfig
from moorage_proxyrunner.backends.stdio.endpoints import BridgeEndpoints
from moorage_proxyrunner.front.metrics import ProxyMetrics
from moorage_proxyrunner.protocol.pipeline import Pipeline
from moorage_proxyrunner.startup.assembly import Backend, build_endpoints
from moorage_proxyrunner.startup.cluster import ClusterOptions, build_proxy_settings


@pytest.mark.parametrize(
    ("runconfig", "era", "modern"),
    [
        pytest.param(
            RunConfig(name="time", namespace="ns", image="i", stdio_era="auto"),
            "auto",
            True,
            id="auto-runs-modern",
        ),
        pytest.param(
            RunConfig(name="time", namespace="ns", image="i", stdio_era="handshake"),
            "handshake",
            False,
            id="handshake-initialises",
        ),
        pytest.param(
            RunConfig(name="time", namespace="ns", image="i"),
            "handshake",
            False,
            id="default-initialises",
        ),
    ],
)
async def test_the_runconfig_era_decides_how_a_dual_era_server_runs(
    runconfig: RunConfig, era: str, modern: bool
) -> None:
    settings = build_proxy_settings(runconfig, ClusterOptions(config=Path("x")))
    assert settings.stdio_era == era
    server = ScriptedServer(modern=True)
    endpoints = build_endpoints(
        Backend("stdio", channels=server.factory),
        settings=settings,
        metrics=ProxyMetrics(CollectorRegistry()),
        pipeline=Pipeline(),
    )
    assert isinstance(endpoints, BridgeEndpoints)
    await endpoints.bridge.start()
    try:
        assert await endpoints.bridge.wait_connected(10)
        assert endpoints.bridge.modern_backend is modern
    finally:
        await endpoints.bridge.stop()
