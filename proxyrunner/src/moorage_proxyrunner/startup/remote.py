"""The cluster start-up of a proxy in front of a remote MCP server (an MCPRemoteProxy).

There is no workload: no StatefulSet, Service, NetworkPolicy or pod watches. The backend is
the remote URL, reached through an `OutgoingClient` built from the RunConfig and the secrets
in the proxy's environment; the remote's `initialize` check runs in the background and its
result is written to the MCPRemoteProxy's `status.remoteCheck` (JSON merge patch on the status
subresource, field manager `moorage-proxyrunner`) when it changes.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from typing import Final

import structlog
from prometheus_client import CollectorRegistry

from moorage_api.runconfig import RunConfig
from moorage_core.kube import KubeClient, ResourceKind
from moorage_core.supervising import TaskSupervisor
from moorage_proxyrunner.backends.remote.client import outgoing_client
from moorage_proxyrunner.backends.remote.healthcheck import (
    RemoteCheck,
    RemoteChecker,
    remote_check_patch,
)
from moorage_proxyrunner.config.settings import ProxyRunnerSettings
from moorage_proxyrunner.startup.assembly import Backend

log = structlog.get_logger(__name__)

MCPREMOTEPROXIES: Final = ResourceKind(
    "moorage.dev", "v1alpha1", "mcpremoteproxies", "MCPRemoteProxy"
)
FIELD_MANAGER: Final = "moorage-proxyrunner"


async def report_remote_check(kube: KubeClient, runconfig: RunConfig, check: RemoteCheck) -> None:
    """Writes `status.remoteCheck` of the MCPRemoteProxy that owns `runconfig` (nothing when
    another kind owns it, or none)."""
    owner = runconfig.owner
    if owner is None or owner.kind != MCPREMOTEPROXIES.kind:
        return
    await kube.patch(
        MCPREMOTEPROXIES,
        remote_check_patch(check, datetime.now(UTC)),
        name=owner.name,
        namespace=runconfig.namespace,
        subresource="status",
        field_manager=FIELD_MANAGER,
    )


def remote_backend(
    kube: KubeClient,
    runconfig: RunConfig,
    *,
    settings: ProxyRunnerSettings,
    registry: CollectorRegistry,
    supervisor: TaskSupervisor,
) -> Backend:
    """The remote as the backend, its checks started under `supervisor`; the caller closes
    `backend.client`."""
    remote = runconfig.remote
    assert remote is not None, "remote_backend is for a RunConfig with remote"
    client = outgoing_client(
        runconfig, os.environ, registry=registry, cache_size=settings.exchange_cache_size
    )
    assert client is not None, "a RunConfig with remote always has an outgoing client"

    async def report(check: RemoteCheck) -> None:
        await report_remote_check(kube, runconfig, check)

    checker = RemoteChecker(client, remote.url, transport=remote.transport, report=report)
    supervisor.spawn("remote-check", checker.run_forever(settings.remote_check_interval))
    log.info("remote_backend", url=remote.url, transport=remote.transport)
    return Backend(remote.transport, target_urls=(remote.url,), client=client)
