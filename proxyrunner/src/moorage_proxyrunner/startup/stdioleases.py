"""A stdio server's proxy replica attached to the one backend pod whose Lease it holds (stdio
servers whose proxies share sessions through Redis: one backend pod per proxy replica).

`LeasedChannelFactory` is the stdio bridge's channel factory then: before attaching it claims an
ordinal (`workload.ordinallease.OrdinalLease`), attaches to pod `<statefulset>-<ordinal>` only,
and keeps the Lease renewed while the channel lives; losing the Lease ends the channel, and the
bridge's next call claims again (the same ordinal if it is free again, another otherwise). Its
`aclose()` releases the Lease, so a replacement replica takes the ordinal at once.

`follow_proxy_replicas` follows the RunConfig ConfigMap for `proxy_replicas` (a live field):
every proxy replica scales the StatefulSet to it and resizes its Lease range, so scaling the
proxies rolls none of them.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import structlog

from moorage_api.constants import RUNCONFIG_KEY
from moorage_api.naming import stdio_pod_name
from moorage_api.runconfig import RunConfigError, load_runconfig
from moorage_core.kube import CONFIGMAPS, JsonObject, KubeClient
from moorage_core.watching import WatchedSet
from moorage_proxyrunner.backends.stdio.attach import (
    AttachChannelFactory,
    PodChooser,
    PodRef,
    StreamChannel,
    choose_named_pod,
)
from moorage_proxyrunner.backends.stdio.channels import StdioChannel
from moorage_proxyrunner.workload.builders import leased_ordinals_of
from moorage_proxyrunner.workload.ordinallease import OrdinalLease

log = structlog.get_logger(__name__)


class LeasedChannelFactory:
    """Channels to the backend pod of the ordinal this replica holds the Lease of."""

    def __init__(
        self,
        lease: OrdinalLease,
        *,
        attach: Callable[[PodChooser], AttachChannelFactory],
    ) -> None:
        self.lease = lease
        # The attach factory asks `_choose` which pod to attach to: the held ordinal's.
        self._attach = attach(self._choose)
        self._keeper: asyncio.Task[None] | None = None

    def _choose(self, pods: Sequence[Mapping[str, Any]]) -> PodRef | None:
        ordinal = self.lease.ordinal
        if ordinal is None:
            return None
        return choose_named_pod(stdio_pod_name(self.lease.statefulset, ordinal))(pods)

    async def __call__(self) -> StdioChannel:
        if self.lease.ordinal is None:
            await self.lease.claim()
        channel = await self._attach()
        await self._stop_keeping()
        self._keeper = asyncio.create_task(self._keep(channel), name="stdio lease")
        return channel

    async def _keep(self, channel: StdioChannel) -> None:
        """Renew the Lease while `channel` lives; its loss ends the channel."""
        ordinal = self.lease.ordinal
        await self.lease.keep()
        reason = f"the Lease of backend ordinal {ordinal} was lost; attaching again"
        if isinstance(channel, StreamChannel):
            channel.abort(reason)
        else:
            log.info("stdio_channel_closing", reason=reason)
            await channel.close()

    async def _stop_keeping(self) -> None:
        if self._keeper is not None:
            self._keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._keeper
            self._keeper = None

    async def aclose(self) -> None:
        """Stop renewing, release the Lease, stop following the pods."""
        await self._stop_keeping()
        await self.lease.release()
        await self._attach.aclose()


async def follow_proxy_replicas(
    kube: KubeClient,
    *,
    namespace: str,
    configmap: str,
    on_ordinals: Callable[[int], None],
) -> None:
    """Call `on_ordinals` with the backend pods wanted whenever the RunConfig in ConfigMap
    `configmap` changes them (until cancelled); a RunConfig that does not parse is left to the
    reloader, which says why."""

    def on_change(event: str, obj: JsonObject) -> None:
        text = (obj.get("data") or {}).get(RUNCONFIG_KEY)
        if event == "DELETED" or not isinstance(text, str):
            return
        try:
            ordinals = leased_ordinals_of(load_runconfig(text))
        except RunConfigError:
            return
        if ordinals is not None:
            on_ordinals(ordinals)

    log.info("proxy_replicas_watch_started", configmap=configmap)
    await WatchedSet(
        kube,
        CONFIGMAPS,
        namespace=namespace,
        field_selector=f"metadata.name={configmap}",
        on_change=on_change,
    ).run()
