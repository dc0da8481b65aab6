"""The start-up of the aggregator mode: a RunConfig with `aggregate` (a VirtualMCPServer).

There is no workload. Each backend gets its own upstream client (the reverse backend's, with
its outgoing authentication from the proxy's environment, as a remote proxy's); the
`Aggregator` is served to the front end as the "process" of a stdio bridge, so clients get
everything an MCPServer's proxy offers, and is bound to that bridge (`Backend.bind`) to follow
its client sessions. Its health checks run in the background; in a cluster
each changed report is written to the VirtualMCPServer's status (`status.backendHealth` and
`status.unresolvedConflicts`, JSON merge patch on the status subresource, field manager
`moorage-proxyrunner`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from contextlib import AsyncExitStack
from typing import Final

import structlog
from prometheus_client import CollectorRegistry

from moorage_api.runconfig import RunConfig, RunConfigAggregateBackend, RunConfigRemote
from moorage_core.kube import VIRTUALMCPSERVERS, KubeClient
from moorage_core.supervising import TaskSupervisor
from moorage_proxyrunner.backends.aggregate.report import Report, status_patch
from moorage_proxyrunner.backends.aggregate.server import Aggregator
from moorage_proxyrunner.backends.remote.client import outgoing_client
from moorage_proxyrunner.backends.reverse.upstream import Client
from moorage_proxyrunner.startup.assembly import Backend, SessionSharing

log = structlog.get_logger(__name__)

FIELD_MANAGER: Final = "moorage-proxyrunner"


def backend_client(
    runconfig: RunConfig,
    backend: RunConfigAggregateBackend,
    environ: Mapping[str, str],
    *,
    registry: CollectorRegistry,
) -> Client:
    """The upstream client of one backend: its URL reached like a remote's (TLS for https,
    private addresses allowed: members are in-cluster Services), with its outgoing auth (a token
    exchange is made for the caller each backend session acts for)."""
    auth = backend.outgoing_auth
    as_remote = runconfig.model_copy(
        update={
            "remote": RunConfigRemote(
                url=backend.url, transport=backend.transport, allow_private_endpoint=True
            ),
            "outgoing_auth": auth,
            "aggregate": None,
        }
    )
    client = outgoing_client(as_remote, environ, registry=registry)
    assert client is not None, "a remote always has an outgoing client"
    return client


def aggregate_backend(
    runconfig: RunConfig,
    *,
    registry: CollectorRegistry,
    supervisor: TaskSupervisor,
    stack: AsyncExitStack,
    kube: KubeClient | None = None,
    environ: Mapping[str, str] = os.environ,
    sharing: SessionSharing | None = None,
) -> Backend:
    """The aggregator as the backend, its health checks started under `supervisor` and its
    clients and sessions closed by `stack`; with `kube`, reports go to the status. Its client
    sessions are kept through `sharing` (default: in its own memory)."""
    aggregate = runconfig.aggregate
    assert aggregate is not None, "aggregate_backend is for a RunConfig with aggregate"
    clients: dict[str, Client] = {}
    for backend in aggregate.backends:
        client = backend_client(runconfig, backend, environ, registry=registry)
        stack.push_async_callback(client.close)
        clients[backend.name] = client

    async def report(result: Report) -> None:
        owner = runconfig.owner
        if kube is None or owner is None or owner.kind != VIRTUALMCPSERVERS.kind:
            return
        await kube.patch(
            VIRTUALMCPSERVERS,
            status_patch(result),
            name=owner.name,
            namespace=runconfig.namespace,
            subresource="status",
            field_manager=FIELD_MANAGER,
        )

    aggregator = Aggregator(
        aggregate,
        clients,
        server_name=runconfig.name,
        report=report,
        store=sharing.store if sharing is not None else None,
        address=sharing.address if sharing is not None else None,
        forwarder=sharing.forwarder if sharing is not None else None,
    )
    stack.push_async_callback(aggregator.close)
    supervisor.spawn("aggregate-health", aggregator.run_forever())
    log.info(
        "aggregate_backend",
        backends=[b.name for b in aggregate.backends],
        strategy=aggregate.conflict_resolution.strategy,
    )
    return Backend("stdio", channels=aggregator.open_channel, bind=aggregator.bind)
