"""Holds the Lease of one backend ordinal for this proxy replica (a stdio server whose proxies
share sessions through Redis; the rule is in `workload.ordinals`).

`OrdinalLease.claim()` reads the Leases `<statefulset>-stdio-<k>` for k in 0..N-1 (by name: the
proxy's Role names them), picks an ordinal (`choose_ordinal`) and takes it: a POST when the Lease
does not exist, an update carrying the read resourceVersion when it was released or expired, so
that of two replicas racing for one ordinal exactly one wins (the other gets 409 and reads
again). With every ordinal held it waits a renewal period and tries again. `keep()` renews the
held Lease every `RENEW_EVERY` seconds and returns when it is lost (taken by another holder,
gone, or not renewed within its duration); `release()` gives it up at shutdown (holder cleared)
so that the next replica need not wait for it to expire. `resize()` changes N (a live RunConfig
change).

I/O shell: one writer per Lease at a time is the apiserver's optimistic concurrency; the clock
is injectable for tests.
"""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import Callable

import structlog

from moorage_api.naming import stdio_lease_name
from moorage_core.errors import Conflict, KubeError, NotFound
from moorage_core.kube import LEASES, JsonObject, KubeClient
from moorage_proxyrunner.workload.ordinals import (
    RENEW_EVERY,
    LeaseView,
    choose_ordinal,
    is_held,
    lease_spec,
    lease_view,
)

log = structlog.get_logger(__name__)

Clock = Callable[[], datetime.datetime]


def utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


class OrdinalLease:
    """The Lease of the backend ordinal this proxy replica attaches to."""

    def __init__(
        self,
        kube: KubeClient,
        *,
        namespace: str,
        statefulset: str,
        holder: str,
        ordinals: int,
        clock: Clock = utc_now,
        renew_every: float = RENEW_EVERY,
    ) -> None:
        self._kube = kube
        self.namespace = namespace
        self.statefulset = statefulset
        self.holder = holder
        """This replica's pod name (`POD_NAME`): the Leases' `holderIdentity`."""
        self.ordinals = max(ordinals, 1)
        self._clock = clock
        self._renew_every = renew_every
        self.ordinal: int | None = None
        """The ordinal held now; None between a loss and the next claim."""
        self._lease: JsonObject | None = None
        self._resized = asyncio.Event()

    def name(self, ordinal: int) -> str:
        return stdio_lease_name(self.statefulset, ordinal)

    def resize(self, ordinals: int) -> None:
        """The proxies are now `ordinals`: an ordinal at or above it is given up at the next
        renewal (its pod is scaled away)."""
        self.ordinals = max(ordinals, 1)
        self._resized.set()

    async def _read(self, ordinal: int) -> JsonObject | None:
        try:
            return await self._kube.get(LEASES, name=self.name(ordinal), namespace=self.namespace)
        except NotFound:
            return None

    async def try_claim(self) -> int | None:
        """One attempt: the ordinal now held, or None when every one is held by another (or
        another replica won the race for the one chosen)."""
        found = {k: await self._read(k) for k in range(self.ordinals)}
        views: dict[int, LeaseView | None] = {
            k: None if obj is None else lease_view(obj) for k, obj in found.items()
        }
        now = self._clock()
        ordinal = choose_ordinal(views, holder=self.holder, ordinals=self.ordinals, now=now)
        if ordinal is None:
            return None
        live = found[ordinal]
        view = views[ordinal]
        acquired = view is None or view.holder != self.holder or not is_held(view, now=now)
        spec = lease_spec(holder=self.holder, now=now, acquired=acquired)
        try:
            if live is None:
                lease = await self._kube.create(
                    LEASES,
                    {
                        "apiVersion": "coordination.k8s.io/v1",
                        "kind": "Lease",
                        "metadata": {"name": self.name(ordinal), "namespace": self.namespace},
                        "spec": spec,
                    },
                    namespace=self.namespace,
                )
            else:
                lease = await self._replace(live, spec)
        except Conflict:
            log.info("stdio_lease_race_lost", ordinal=ordinal)
            return None
        self.ordinal, self._lease = ordinal, lease
        log.info("stdio_lease_claimed", ordinal=ordinal, lease=self.name(ordinal))
        return ordinal

    async def _replace(
        self, live: JsonObject, spec: JsonObject, *, merge: bool = True
    ) -> JsonObject:
        """Update `live` with `spec` (merged into its own, or instead of it), its resourceVersion
        kept: a concurrent writer makes this 409."""
        meta = live["metadata"]
        body = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {
                "name": meta["name"],
                "namespace": self.namespace,
                "resourceVersion": meta["resourceVersion"],
            },
            "spec": {**(live.get("spec") or {}), **spec} if merge else spec,
        }
        return await self._kube.replace(
            LEASES, body, name=str(meta["name"]), namespace=self.namespace
        )

    async def claim(self) -> int:
        """Wait until an ordinal is held; it."""
        while True:
            try:
                ordinal = await self.try_claim()
            except KubeError as exc:
                log.warning("stdio_lease_claim_failed", error=str(exc))
                ordinal = None
            if ordinal is not None:
                return ordinal
            log.info("stdio_lease_waiting", ordinals=self.ordinals, retry_in_s=self._renew_every)
            await asyncio.sleep(self._renew_every)

    async def renew(self) -> bool:
        """Renew the held Lease once; False when it is lost (taken, gone, expired unrenewed,
        or its ordinal is no longer wanted)."""
        ordinal, lease = self.ordinal, self._lease
        if ordinal is None or lease is None:
            return False
        if ordinal >= self.ordinals:
            log.info("stdio_lease_resized_away", ordinal=ordinal, ordinals=self.ordinals)
            await self.release()
            return False
        now = self._clock()
        try:
            live = await self._read(ordinal)
            if live is None or lease_view(live).holder != self.holder:
                return self._lost("taken or deleted")
            self._lease = await self._replace(
                live, lease_spec(holder=self.holder, now=now, acquired=False)
            )
        except Conflict:
            return self._lost("changed while renewing")
        except KubeError as exc:
            # The apiserver did not answer: still ours until the Lease would expire.
            if not is_held(lease_view(lease), now=now):
                return self._lost(f"not renewed in time: {exc}")
            log.warning("stdio_lease_renew_failed", ordinal=ordinal, error=str(exc))
        return True

    def _lost(self, why: str) -> bool:
        log.warning("stdio_lease_lost", ordinal=self.ordinal, reason=why)
        self.ordinal, self._lease = None, None
        return False

    async def keep(self) -> None:
        """Renew the held Lease until it is lost; return then."""
        while True:
            self._resized.clear()
            try:
                async with asyncio.timeout(self._renew_every):
                    await self._resized.wait()
            except TimeoutError:
                pass
            if not await self.renew():
                return

    async def release(self) -> None:
        """Give the held Lease up (holder cleared), if still ours; never raises a KubeError."""
        ordinal = self.ordinal
        self.ordinal, self._lease = None, None
        if ordinal is None:
            return
        try:
            live = await self._read(ordinal)
            if live is None or lease_view(live).holder != self.holder:
                return
            spec = {k: v for k, v in (live.get("spec") or {}).items() if k != "holderIdentity"}
            await self._replace(live, spec, merge=False)
            log.info("stdio_lease_released", ordinal=ordinal)
        except KubeError as exc:
            log.warning("stdio_lease_release_failed", ordinal=ordinal, error=str(exc))
