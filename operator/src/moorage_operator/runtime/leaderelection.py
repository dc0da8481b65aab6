"""Leader election on a `coordination.k8s.io/v1` Lease, with client-go's rules.

A candidate reads the Lease and takes it when nobody holds it or the holder's record has not
changed for `leaseDurationSeconds` *as observed by our own clock* (clocks of different nodes are
never compared; only the time we first saw the current record counts). Taking and renewing are
`replace` calls carrying the resourceVersion we read, so two candidates can never both succeed:
the loser gets a Conflict and tries again later.

The leader renews every `retry_period`; if no renewal succeeds for `renew_deadline` seconds, or
the Lease turns out to be held by someone else, leadership is lost and `hold()` raises
`LeadershipLost` (the process must then exit: its controllers may no longer write). On shutdown
`release()` clears `holderIdentity` and sets `leaseDurationSeconds: 1`, so a standby takes over at
its next attempt instead of waiting for the lease to expire (client-go's ReleaseOnCancel).

The rules are pure functions (`can_acquire`, `next_lease_spec`); `LeaderElector` is the I/O.
"""

from __future__ import annotations

import asyncio
import datetime
import enum
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import structlog
from prometheus_client import Gauge

from moorage_core.errors import Conflict, KubeError, NotFound
from moorage_core.kube import LEASES, JsonObject, KubeClient

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class LeaderElectionConfig:
    """Who competes for which Lease, and the timing (client-go's defaults)."""

    namespace: str
    """Namespace of the Lease (the operator's own)."""
    identity: str
    """This candidate's `holderIdentity`: the pod name."""
    name: str = "moorage-operator"
    """Name of the Lease."""
    lease_duration: float = 15.0
    """Seconds a standby waits after the last observed change of the record before taking it."""
    renew_deadline: float = 10.0
    """Seconds the leader keeps trying to renew before it gives up leadership."""
    retry_period: float = 2.0
    """Seconds between attempts to acquire or renew."""

    def __post_init__(self) -> None:
        if not (0 < self.retry_period < self.renew_deadline < self.lease_duration):
            raise ValueError(
                "leader election needs 0 < retry_period < renew_deadline < lease_duration"
            )


class LeadershipLost(Exception):
    """This replica no longer holds the Lease; it must stop acting as leader (exit)."""


class Attempt(enum.Enum):
    """The outcome of one try to acquire or renew."""

    ACQUIRED = "acquired"
    HELD_BY_OTHER = "held_by_other"
    FAILED = "failed"
    """An error or a lost race (Conflict); try again later."""


def format_micro_time(moment: datetime.datetime) -> str:
    """A `metav1.MicroTime` string."""
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def can_acquire(
    spec: Mapping[str, Any],
    *,
    identity: str,
    observed_at: float,
    now: float,
    took_it: bool = True,
) -> bool:
    """Whether `identity` may take or renew a Lease whose spec is `spec`.

    `observed_at` is when (on our monotonic clock) we first saw this exact record. A record with
    no holder, or held by us, can be taken; one held by another is taken only once it has not
    changed for its `leaseDurationSeconds`. `took_it` says whether this process wrote the record
    it holds: a record in our name that it did not write is a previous incarnation's (a container
    restarted in the same pod after a crash), and waits out its duration like anyone else's, so
    that the warm standby, which saw the record first, takes over.
    """
    holder = spec.get("holderIdentity") or ""
    if not holder or (holder == identity and took_it):
        return True
    duration = float(spec.get("leaseDurationSeconds") or 0)
    return now >= observed_at + duration


def next_lease_spec(
    spec: Mapping[str, Any], *, identity: str, lease_duration: float, now: datetime.datetime
) -> JsonObject:
    """The spec to write to take or renew the Lease as `identity` at `now`."""
    stamp = format_micro_time(now)
    transitions = int(spec.get("leaseTransitions") or 0)
    renewing = spec.get("holderIdentity") == identity
    return {
        "holderIdentity": identity,
        "leaseDurationSeconds": max(1, round(lease_duration)),
        "acquireTime": (spec.get("acquireTime") or stamp) if renewing else stamp,
        "renewTime": stamp,
        "leaseTransitions": transitions if renewing else transitions + 1,
    }


def released_lease_spec(spec: Mapping[str, Any], *, now: datetime.datetime) -> JsonObject:
    """The spec that gives the Lease up (what client-go writes on ReleaseOnCancel)."""
    stamp = format_micro_time(now)
    return {
        "holderIdentity": "",
        "leaseDurationSeconds": 1,
        "acquireTime": stamp,
        "renewTime": stamp,
        "leaseTransitions": int(spec.get("leaseTransitions") or 0),
    }


def _record_of(spec: Mapping[str, Any]) -> tuple[Any, ...]:
    return tuple(
        spec.get(k) for k in ("holderIdentity", "renewTime", "acquireTime", "leaseDurationSeconds")
    )


class LeaderElector:
    """Acquire, hold and release the Lease described by `config`."""

    def __init__(
        self,
        kube: KubeClient,
        config: LeaderElectionConfig,
        *,
        gauge: Gauge | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.kube = kube
        self.config = config
        self._gauge = gauge
        self._monotonic = monotonic
        self._observed: tuple[Any, ...] | None = None
        self._observed_at = 0.0
        self._observed_duration = 0.0
        self._lease: JsonObject | None = None
        """The Lease as we last wrote it (its resourceVersion lets release skip a read)."""
        self._last_renewed = 0.0
        self._random = random.Random()  # noqa: S311 - jitter, not security
        self.is_leader = False
        self._log = log.bind(lease=f"{config.namespace}/{config.name}", identity=config.identity)

    # -- one attempt ------------------------------------------------------------------------

    def _observe(self, spec: Mapping[str, Any]) -> None:
        record = _record_of(spec)
        if record != self._observed:
            self._observed = record
            self._observed_at = self._monotonic()
            self._observed_duration = float(spec.get("leaseDurationSeconds") or 0)

    async def try_acquire_or_renew(self) -> Attempt:
        """One attempt to take or renew the Lease."""
        cfg = self.config
        now = datetime.datetime.now(datetime.UTC)
        try:
            lease = await self.kube.get(LEASES, name=cfg.name, namespace=cfg.namespace)
        except NotFound:
            body: JsonObject = {
                "apiVersion": LEASES.api_version,
                "kind": LEASES.kind,
                "metadata": {"name": cfg.name, "namespace": cfg.namespace},
                "spec": next_lease_spec(
                    {}, identity=cfg.identity, lease_duration=cfg.lease_duration, now=now
                ),
            }
            try:
                created = await self.kube.create(LEASES, body, namespace=cfg.namespace)
            except KubeError as exc:
                self._log.info("lease_create_failed", error=str(exc))
                return Attempt.FAILED
            return self._took(created)
        except KubeError as exc:
            self._log.warning("lease_read_failed", error=str(exc))
            return Attempt.FAILED
        spec = lease.get("spec") or {}
        self._observe(spec)
        if not can_acquire(
            spec,
            identity=cfg.identity,
            observed_at=self._observed_at,
            now=self._monotonic(),
            took_it=self._lease is not None,
        ):
            return Attempt.HELD_BY_OTHER
        lease["spec"] = next_lease_spec(
            spec, identity=cfg.identity, lease_duration=cfg.lease_duration, now=now
        )
        try:
            replaced = await self.kube.replace(
                LEASES, lease, name=cfg.name, namespace=cfg.namespace
            )
        except Conflict:
            # Someone wrote the Lease after we read it; look again next time.
            return Attempt.FAILED
        except KubeError as exc:
            self._log.warning("lease_update_failed", error=str(exc))
            return Attempt.FAILED
        return self._took(replaced)

    def _took(self, lease: JsonObject) -> Attempt:
        self._lease = lease
        self._observe(lease.get("spec") or {})
        self._last_renewed = self._monotonic()
        return Attempt.ACQUIRED

    # -- the loops --------------------------------------------------------------------------

    async def acquire(self) -> None:
        """Return once this replica holds the Lease (retrying every `retry_period`)."""
        cfg = self.config
        self._log.info("leader_election_started")
        while True:
            attempt = await self.try_acquire_or_renew()
            if attempt is Attempt.ACQUIRED:
                self._set_leader(True)
                self._log.info("leadership_acquired")
                return
            # Jitter only shortens the wait, so a released Lease is taken within one period.
            wait = cfg.retry_period * self._random.uniform(0.8, 1.0)
            if attempt is Attempt.HELD_BY_OTHER:
                # Try right when the holder's record would expire, rather than up to a whole
                # period later.
                expires_in = self._observed_at + self._observed_duration - self._monotonic()
                wait = min(wait, max(0.0, expires_in) + 0.05)
            await asyncio.sleep(wait)

    async def hold(self) -> None:
        """Renew the Lease every `retry_period` until cancelled; raise `LeadershipLost` when a
        renewal has not succeeded for `renew_deadline` or another holder took it."""
        cfg = self.config
        try:
            while True:
                await asyncio.sleep(cfg.retry_period)
                remaining = self._last_renewed + cfg.renew_deadline - self._monotonic()
                attempt = Attempt.FAILED
                if remaining > 0:
                    try:
                        async with asyncio.timeout(remaining):
                            attempt = await self.try_acquire_or_renew()
                    except TimeoutError:
                        attempt = Attempt.FAILED
                if attempt is Attempt.HELD_BY_OTHER:
                    holder = (self._observed or ("",))[0]
                    raise LeadershipLost(f"lease {cfg.name} is now held by {holder!r}")
                if (
                    attempt is Attempt.FAILED
                    and self._monotonic() >= self._last_renewed + cfg.renew_deadline
                ):
                    raise LeadershipLost(
                        f"lease {cfg.name} not renewed within {cfg.renew_deadline:g}s"
                    )
        except LeadershipLost as exc:
            self._set_leader(False)
            self._log.error("leadership_lost", reason=str(exc))
            raise

    async def release(self) -> bool:
        """Give the Lease up if we hold it; True when it was released. Never raises for API
        errors: the Lease then simply expires."""
        if not self.is_leader or self._lease is None:
            return False
        cfg = self.config
        self._set_leader(False)
        lease = self._lease
        for _ in range(2):
            spec = lease.get("spec") or {}
            if spec.get("holderIdentity") != cfg.identity:
                return False
            lease["spec"] = released_lease_spec(spec, now=datetime.datetime.now(datetime.UTC))
            try:
                async with asyncio.timeout(cfg.retry_period):
                    self._lease = await self.kube.replace(
                        LEASES, lease, name=cfg.name, namespace=cfg.namespace
                    )
            except Conflict:
                try:
                    lease = await self.kube.get(LEASES, name=cfg.name, namespace=cfg.namespace)
                except KubeError as exc:
                    self._log.warning("lease_release_failed", error=str(exc))
                    return False
                continue
            except (KubeError, TimeoutError) as exc:
                self._log.warning("lease_release_failed", error=str(exc))
                return False
            self._log.info("lease_released")
            return True
        return False

    def _set_leader(self, leading: bool) -> None:
        self.is_leader = leading
        if self._gauge is not None:
            self._gauge.set(1 if leading else 0)
