"""`run --local`: the proxy on a laptop, with no cluster.

Fronts a local stdio MCP server (the command after `--`, started as a subprocess and restarted
if it dies) or an MCP server already listening on HTTP (`--target-url`), with the same
endpoints and middleware the cluster deployment uses. With `--config PATH` the middleware's
settings come from a RunConfig file, watched for changes like the cluster's ConfigMap.

Start-up, when run by the command (`check_launch`): bind the port, start the MCP server, and
wait for it to answer `initialize`. A command that is not found, cannot be started or exits
before answering ends the start-up with one line naming it (`LaunchWatch`), instead of being
restarted for ever behind a proxy that looks alive.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry

from moorage_core.running import Lifecycle
from moorage_core.startup import StartupFailure, connect_kube
from moorage_core.supervising import TaskSupervisor
from moorage_proxyrunner.backends.remote.healthcheck import RemoteChecker
from moorage_proxyrunner.backends.stdio.bridge import StdioBridge
from moorage_proxyrunner.backends.stdio.channels import ChannelFactory, StdioChannel
from moorage_proxyrunner.backends.stdio.endpoints import BridgeEndpoints
from moorage_proxyrunner.backends.stdio.processes import SubprocessChannel, subprocess_factory
from moorage_proxyrunner.config.settings import ProxyRunnerSettings
from moorage_proxyrunner.front.metrics import ProxyMetrics
from moorage_proxyrunner.policy.chain import Middleware
from moorage_proxyrunner.startup.aggregate import aggregate_backend
from moorage_proxyrunner.startup.assembly import (
    Backend,
    Reloading,
    build_endpoints,
    primary_path,
    serve_proxy,
    share_sessions,
    shared_buckets,
    with_outgoing,
)

if TYPE_CHECKING:
    from moorage_api.runconfig import RunConfig
    from moorage_core.kube import KubeClient


@dataclass(frozen=True, slots=True)
class LocalBackend:
    """What to front: a stdio `command`, HTTP `target_urls` speaking `transport`, or the
    backends of the `--config` RunConfig's `aggregate` (`aggregate`)."""

    transport: str = "stdio"
    command: tuple[str, ...] = ()
    target_urls: tuple[str, ...] = ()
    aggregate: bool = False

    def resolve(self, launch: LaunchWatch | None = None) -> Backend:
        """The `Backend` to assemble: the command as a subprocess (its first start watched by
        `launch` when given), or the target URLs."""
        if self.transport != "stdio":
            return Backend(self.transport, target_urls=self.target_urls)
        factory = subprocess_factory(self.command)
        if launch is not None:
            factory = launch.wrap(factory)
        return Backend(self.transport, channels=factory)


COMMAND_SETTING = "the MCP server command (after --)"
_LAUNCH_POLL = 0.05
"""Seconds between looks at the first launch's state while start-up waits for it."""


def find_command_problem(command: tuple[str, ...]) -> StartupFailure | None:
    """Why `command` cannot be run, when that can be told without running it."""
    if shutil.which(command[0]) is None:
        return StartupFailure(
            COMMAND_SETTING,
            f"{command[0]!r} was not found or is not executable",
            hint="install it, or give its full path",
        )
    return None


class LaunchWatch:
    """Wraps the bridge's channel factory to see how the first start of the command ends."""

    def __init__(self, command: tuple[str, ...]) -> None:
        self.command = command
        self.error: str | None = None
        """Why the first start failed (the process could not be created)."""
        self.process: asyncio.subprocess.Process | None = None
        """The first process started, once it is."""

    def wrap(self, factory: ChannelFactory) -> ChannelFactory:
        """`factory`, noting how its first call ends."""

        async def open_channel() -> StdioChannel:
            first = self.process is None and self.error is None
            try:
                channel = await factory()
            except OSError as exc:
                if first:
                    self.error = f"{self.command[0]!r} cannot be started: {exc.strerror or exc}"
                raise
            if first and isinstance(channel, SubprocessChannel):
                self.process = channel.process
            return channel

        return open_channel

    async def wait_connected(self, bridge: StdioBridge) -> None:
        """Return once the bridge has a connected backend; a `StartupFailure` naming the
        command when its first start failed or the process ended before answering."""
        while not bridge.connected:
            problem = self.error
            if problem is None and self.process is not None:
                code = self.process.returncode
                if code is not None:
                    problem = f"{self.command[0]!r} exited with code {code} before answering"
                elif bridge.last_error is not None:
                    problem = f"{self.command[0]!r} did not answer: {bridge.last_error}"
            if problem is not None:
                raise StartupFailure(
                    COMMAND_SETTING,
                    problem,
                    hint="run the command by hand to see why (it must speak MCP on stdio)",
                )
            await asyncio.sleep(_LAUNCH_POLL)


@dataclass(frozen=True, slots=True)
class LocalConfig:
    """A RunConfig file (`--config`) whose middleware settings are in force and followed."""

    path: Path
    runconfig: RunConfig


@contextlib.asynccontextmanager
async def kube_for(settings: ProxyRunnerSettings) -> AsyncIterator[KubeClient | None]:
    """A Kubernetes client when authentication takes the cluster's service-account tokens
    (the apiserver has their keys); None otherwise, and no Kubernetes code is loaded."""
    if settings.oidc is None or settings.oidc.type != "kubernetes":
        yield None
        return
    kube = await connect_kube(
        kubeconfig=None,
        setting="KUBECONFIG (for oidc type kubernetes in --config)",
        user_agent="moorage-proxyrunner",
    )
    try:
        yield kube
    finally:
        await kube.close()


async def run_local(
    backend: LocalBackend,
    settings: ProxyRunnerSettings,
    *,
    stop: asyncio.Event | None = None,
    registry: CollectorRegistry | None = None,
    on_listening: Callable[[int], None] | None = None,
    handle_signals: bool = True,
    config: LocalConfig | None = None,
    lifecycle: Lifecycle | None = None,
    check_launch: bool = False,
) -> None:
    """Serve until SIGTERM/SIGINT or `stop`; `on_listening` hears the bound port (default:
    print the endpoint URL for the user); `config`: the RunConfig file to follow.

    With `lifecycle` (the command), its stop event and signal handling are used and it is told
    when start-up is over. `check_launch` makes a stdio command that cannot start, or exits
    before answering, a `StartupFailure`. A background task that dies ends the serving and is
    re-raised."""
    if lifecycle is not None:
        stop, handle_signals = lifecycle.stop, False
    stop = stop or asyncio.Event()
    launch: LaunchWatch | None = None
    if check_launch and backend.transport == "stdio" and not backend.aggregate:
        problem = find_command_problem(backend.command)
        if problem is not None:
            raise problem
        launch = LaunchWatch(backend.command)
    registry = registry or CollectorRegistry()
    metrics = ProxyMetrics(registry)
    path = primary_path(backend.transport)

    def announce(port: int) -> None:
        host = f"[{settings.host}]" if ":" in settings.host else settings.host
        print(f"MCP endpoint: http://{host}:{port}{path}", flush=True)

    def listening(port: int) -> None:
        (on_listening or announce)(port)
        if lifecycle is not None:
            lifecycle.serving()

    async with contextlib.AsyncExitStack() as stack:
        kube = await stack.enter_async_context(kube_for(settings))
        supervisor = TaskSupervisor(on_failure=stop.set)
        stack.push_async_callback(supervisor.aclose)
        sharing = share_sessions(settings, supervisor=supervisor, stack=stack, metrics=metrics)
        middleware = Middleware(
            settings, registry=registry, kube=kube, buckets=shared_buckets(sharing)
        )
        if backend.aggregate and config is not None:
            resolved = aggregate_backend(
                config.runconfig,
                registry=registry,
                supervisor=supervisor,
                stack=stack,
                kube=kube,
                sharing=sharing,
            )
        else:
            resolved = backend.resolve(launch)
        if config is not None:
            resolved = with_outgoing(
                resolved, config.runconfig, settings=settings, registry=registry
            )
        client = resolved.client
        if client is not None:
            stack.push_async_callback(client.close)
        endpoints = build_endpoints(
            resolved,
            settings=settings,
            metrics=metrics,
            pipeline=middleware.pipeline,
            sharing=sharing,
        )
        reloading: Reloading | None = None
        if config is not None:
            watched = config.path
            reloading = Reloading(
                config.runconfig, watch=lambda reloader: reloader.watch_file(watched), local=True
            )

        remote = config.runconfig.remote if config is not None else None
        if remote is not None and client is not None:
            checker = RemoteChecker(client, remote.url, transport=remote.transport)
            supervisor.spawn("remote-check", checker.run_forever(settings.remote_check_interval))

        async def startup() -> None:
            if launch is not None and isinstance(endpoints, BridgeEndpoints):
                await launch.wait_connected(endpoints.bridge)

        await serve_proxy(
            settings,
            endpoints,
            middleware,
            transport=backend.transport,
            registry=registry,
            supervisor=supervisor,
            stop=stop,
            on_listening=listening,
            handle_signals=handle_signals,
            reloading=reloading,
            startup=startup,
            handover=sharing.hand_over,
        )
