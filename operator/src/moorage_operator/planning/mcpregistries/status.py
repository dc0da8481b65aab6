"""An MCPRegistry's status from what a reconcile did and saw (spec §2.3).

Pure. `compute_status` folds the outcome of this reconcile's sync (if any) and the API's state
into the previous status:

- `syncStatus`: a success records `lastSyncTime`, `lastSyncHash`, `serverCount`, resets
  `attemptCount`; a failure keeps the last good values (the stored data stays too) and counts
  the attempt; `lastAttempt` is every attempt's time.
- `phase`: `Syncing` while the first (slow, git) sync of a spec runs; `Failed` after a failed attempt; `Pending` before the
  first success or while an enabled API has no ready replica; `Ready` otherwise.
- `observedGeneration`: the generation of the latest sync attempt, so a spec change is noticed
  (`scheduling`) until a sync for it has run.
- conditions `Synced`, `APIReady` (only with `apiService.enabled`) and `Ready`, with
  `lastTransitionTime` kept while a condition's status stays the same; so a reconcile with
  nothing new computes exactly the stored status and writes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

from moorage_api.constants import REGISTRY_API_PORT
from moorage_api.mcpregistry import (
    APIStatus,
    MCPRegistryConditionType,
    MCPRegistryPhase,
    MCPRegistryStatus,
    SyncStatus,
)
from moorage_api.naming import registry_api_name
from moorage_operator.planning.conditions import ConditionSpec, merge_conditions


@dataclass(frozen=True, slots=True)
class SyncSucceeded:
    """The source was fetched, validated, filtered and is stored."""

    hash: str
    server_count: int
    message: str


@dataclass(frozen=True, slots=True)
class SyncFailed:
    """The attempt failed; `message` says why in a sentence."""

    message: str


@dataclass(frozen=True, slots=True)
class SyncStarted:
    """A slow sync (git) is about to run; recorded so that `kubectl get` shows `Syncing`."""

    message: str = "Syncing the registry from its source"


SyncOutcome = SyncSucceeded | SyncFailed | SyncStarted


@dataclass(frozen=True, slots=True)
class ApiState:
    """The registry API as observed (only with `apiService.enabled`)."""

    endpoint: str
    ready: bool


def api_endpoint(registry: str, *, namespace: str) -> str:
    """`status.apiStatus.endpoint`: the API's URL inside the cluster."""
    return f"http://{registry_api_name(registry)}.{namespace}.svc.cluster.local:{REGISTRY_API_PORT}"


def _sync_status(previous: SyncStatus | None, outcome: SyncOutcome | None, now: str) -> SyncStatus:
    before = previous or SyncStatus()
    if isinstance(outcome, SyncSucceeded):
        return SyncStatus(
            last_sync_time=now,
            last_sync_hash=outcome.hash,
            server_count=outcome.server_count,
            last_attempt=now,
            attempt_count=0,
            message=outcome.message,
        )
    if isinstance(outcome, SyncFailed):
        return before.model_copy(
            update={
                "last_attempt": now,
                "attempt_count": (before.attempt_count or 0) + 1,
                "message": outcome.message,
            }
        )
    if isinstance(outcome, SyncStarted):
        return before.model_copy(update={"message": outcome.message})
    return before


def _phase(sync: SyncStatus, outcome: SyncOutcome | None, api: ApiState | None) -> MCPRegistryPhase:
    if isinstance(outcome, SyncStarted):
        return MCPRegistryPhase.SYNCING
    if sync.attempt_count:
        return MCPRegistryPhase.FAILED
    if sync.last_sync_hash is None:
        return MCPRegistryPhase.PENDING
    if api is not None and not api.ready:
        return MCPRegistryPhase.PENDING
    return MCPRegistryPhase.READY


def _synced_condition(sync: SyncStatus, phase: MCPRegistryPhase) -> ConditionSpec:
    kind = MCPRegistryConditionType.SYNCED
    message = sync.message or ""
    if phase == MCPRegistryPhase.SYNCING:
        return ConditionSpec(kind, "Unknown", "Syncing", message)
    if sync.attempt_count:
        return ConditionSpec(kind, "False", "SyncFailed", message)
    if sync.last_sync_hash is None:
        return ConditionSpec(kind, "Unknown", "NotSynced", "The registry has not been synced yet")
    return ConditionSpec(kind, "True", "Synced", message)


def _api_condition(api: ApiState) -> ConditionSpec:
    kind = MCPRegistryConditionType.API_READY
    if api.ready:
        return ConditionSpec(kind, "True", "Ready", f"The registry API is ready at {api.endpoint}")
    return ConditionSpec(
        kind, "False", "NotReady", "The registry API Deployment has no ready replica yet"
    )


def _ready_condition(
    phase: MCPRegistryPhase, sync: SyncStatus, api: ApiState | None
) -> ConditionSpec:
    kind = MCPRegistryConditionType.READY
    if phase == MCPRegistryPhase.READY:
        served = " and served by its API" if api is not None else ""
        return ConditionSpec(
            kind, "True", "Ready", f"The registry holds {sync.server_count or 0} servers{served}"
        )
    if phase == MCPRegistryPhase.FAILED:
        kept = " (the last good data is kept)" if sync.last_sync_hash else ""
        return ConditionSpec(kind, "False", "Failed", f"{sync.message}{kept}")
    if phase == MCPRegistryPhase.SYNCING:
        return ConditionSpec(kind, "False", "Syncing", "The registry is syncing")
    if sync.last_sync_hash is None:
        return ConditionSpec(kind, "False", "Pending", "The registry has not been synced yet")
    return ConditionSpec(kind, "False", "Pending", "Waiting for the registry API to be ready")


def compute_status(
    previous: MCPRegistryStatus,
    *,
    generation: int,
    now: str,
    outcome: SyncOutcome | None,
    api: ApiState | None,
) -> MCPRegistryStatus:
    """The status after this reconcile (see the module). `now` is an RFC 3339 time."""
    sync = _sync_status(previous.sync_status, outcome, now)
    phase = _phase(sync, outcome, api)
    specs = [_synced_condition(sync, phase)]
    if api is not None:
        specs.append(_api_condition(api))
    specs.append(_ready_condition(phase, sync, api))
    attempted = isinstance(outcome, SyncSucceeded | SyncFailed)
    observed = generation if attempted else previous.observed_generation
    conditions = merge_conditions(
        [c.model_dump(by_alias=True) for c in previous.conditions],
        specs,
        generation=generation,
        now=now,
    )
    return MCPRegistryStatus.model_validate(
        {
            "phase": phase,
            "syncStatus": sync,
            "apiStatus": APIStatus(endpoint=api.endpoint, ready=api.ready) if api else None,
            "observedGeneration": observed,
            "conditions": conditions,
        }
    )
