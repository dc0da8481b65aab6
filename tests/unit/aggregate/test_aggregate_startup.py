"""Each aggregated backend's upstream client: its outgoing headers from the environment, and
what the aggregator refuses to start with."""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from moorage_api.runconfig import RunConfig
from moorage_core.startup import StartupFailure
from moorage_proxyrunner.backends.remote.client import OutgoingClient
from moorage_proxyrunner.startup.aggregate import backend_client


def runconfig(outgoing_auth: dict[str, Any] | None) -> RunConfig:
    return RunConfig.model_validate(
        {
            "name": "hub",
            "namespace": "tools",
            "oidc": {"type": "oidc", "issuer": "https://idp.example.com", "audience": "hub"},
            "aggregate": {
                "backends": [
                    {
                        "name": "saas",
                        "url": "https://10.0.0.7/mcp",
                        "outgoing_auth": outgoing_auth,
                    }
                ]
            },
        }
    )


def client_for(outgoing_auth: dict[str, Any] | None, environ: dict[str, str]) -> OutgoingClient:
    rc = runconfig(outgoing_auth)
    assert rc.aggregate is not None
    client = backend_client(rc, rc.aggregate.backends[0], environ, registry=CollectorRegistry())
    assert isinstance(client, OutgoingClient)
    return client


async def test_a_bearer_token_comes_from_the_environment_and_private_addresses_are_allowed() -> (
    None
):
    bearer = {"type": "bearerToken", "config_name": "c", "bearer_token": {"env": "SAAS_TOKEN"}}
    client = client_for(bearer, {"SAAS_TOKEN": "s3cret"})
    assert await client.auth.headers(None) == {"Authorization": "Bearer s3cret"}
    assert client.allow_private
    assert client.target("https://10.0.0.7/mcp").tls


async def test_no_outgoing_auth_adds_nothing() -> None:
    assert await client_for(None, {}).auth.headers(None) == {}


def test_a_missing_secret_stops_the_start_up_naming_it() -> None:
    bearer = {"type": "bearerToken", "config_name": "c", "bearer_token": {"env": "SAAS_TOKEN"}}
    with pytest.raises(StartupFailure, match="SAAS_TOKEN is not set"):
        client_for(bearer, {})


def test_an_aggregated_backend_may_exchange_each_callers_token() -> None:
    exchange = {
        "type": "tokenExchange",
        "config_name": "c",
        "token_exchange": {"token_url": "https://idp.example.com/token", "client_id": "hub"},
    }
    client = client_for(exchange, {})
    assert client.auth.exchanger is not None
