"""An MCPServer's status (spec §2.1, §3.2) from its plan and what runs in the cluster.

Phase:
- `Terminating` while the MCPServer is being deleted;
- `Failed` when the spec cannot be built (missing or invalid reference, malformed pod template,
  invalid object, a child the apiserver rejects as invalid), when a pod of the server is stuck
  (CrashLoopBackOff, image pull errors), when the apiserver refuses to create the MCP server's
  pods (Pod Security admission, a webhook, a quota: the StatefulSet controller's `FailedCreate`
  Event says why), or when the proxy Deployment exceeded its progress deadline;
- `Stopped` when `spec.replicas` is 0;
- `Running` when the proxy Deployment and the MCP server's StatefulSet `<name>` (created by the
  proxy runner) both have ready replicas;
- `Pending` otherwise, with a message saying what it waits for (or which write is retried).

Pure: no I/O. Times come in as strings so that tests can fix them; conditions keep their
`lastTransitionTime` while their status stays the same (`merge_conditions`), so a reconcile with
nothing new computes the stored status exactly and `status_patch` returns None.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

from moorage_api.constants import (
    COMPONENT_PROXY_RUNNER,
    DEFAULT_CLUSTER_DOMAIN,
    KIND_MCPSERVER,
    LABEL_COMPONENT,
)
from moorage_api.mcpserver import (
    MCPServer,
    MCPServerConditionType,
    MCPServerPhase,
    ReadyReason,
)
from moorage_api.naming import mcpserver_url
from moorage_operator.planning.conditions import ConditionSpec, merge_conditions
from moorage_operator.planning.mcpgroups import group_condition
from moorage_operator.planning.mcpservers.children import ServerPlan
from moorage_operator.planning.mcpservers.references import ClientSpec, Problem

JsonObject = dict[str, Any]

FAILING_WAIT_REASONS: Final = frozenset(
    {
        "CrashLoopBackOff",
        "ImagePullBackOff",
        "ErrImagePull",
        "InvalidImageName",
        "CreateContainerConfigError",
        "CreateContainerError",
        "RunContainerError",
    }
)
"""Container waiting reasons that do not resolve without a change: the server has failed."""

FAILED_CREATE: Final = "FailedCreate"
"""Reason of the Event the StatefulSet controller records when the apiserver refuses a pod."""

STATUS_FIELDS: Final = (
    "phase",
    "message",
    "url",
    "readyReplicas",
    "observedGeneration",
    "toolConfigHash",
    "conditions",
)
"""Every status field the operator writes (and so may remove)."""


@dataclass(frozen=True, slots=True)
class Observed:
    """What runs for one MCPServer, as the reconciler's caches show it."""

    deployment: Mapping[str, Any] | None = None
    """The proxy Deployment `<name>`."""
    statefulset: Mapping[str, Any] | None = None
    """The MCP server's StatefulSet `<name>`, created by the proxy runner."""
    pods: Sequence[Mapping[str, Any]] = field(default_factory=tuple)
    """Pods labelled `moorage.dev/mcpserver: <name>` (proxy and MCP server pods)."""
    refusals: Sequence[Mapping[str, Any]] = field(default_factory=tuple)
    """Core `FailedCreate` Events about StatefulSet `<name>`: the controller could not create a
    pod (any StatefulSet of that name, past ones included: `describe_refusal` picks)."""


@dataclass(frozen=True, slots=True)
class PhaseVerdict:
    phase: MCPServerPhase
    message: str
    reason: ReadyReason


def _status_of(obj: Mapping[str, Any] | None) -> Mapping[str, Any]:
    if obj is None:
        return {}
    status = obj.get("status")
    return status if isinstance(status, Mapping) else {}


def ready_replicas(obj: Mapping[str, Any] | None) -> int:
    """`status.readyReplicas` of a Deployment or StatefulSet (0 when absent)."""
    value = _status_of(obj).get("readyReplicas")
    return value if isinstance(value, int) else 0


def wanted_replicas(obj: Mapping[str, Any] | None) -> int:
    spec = obj.get("spec") if obj is not None else None
    value = spec.get("replicas") if isinstance(spec, Mapping) else None
    return value if isinstance(value, int) else 1


def pod_failure(pod: Mapping[str, Any]) -> str | None:
    """The waiting reason that makes `pod` failed (e.g. CrashLoopBackOff), or None."""
    if (pod.get("metadata") or {}).get("deletionTimestamp"):
        return None  # on its way out (a rollout): not the server's state
    status = _status_of(pod)
    for key in ("initContainerStatuses", "containerStatuses"):
        for container in status.get(key) or []:
            waiting = (container.get("state") or {}).get("waiting") or {}
            reason = waiting.get("reason")
            if reason in FAILING_WAIT_REASONS:
                return str(reason)
    return None


def _is_proxy_pod(pod: Mapping[str, Any]) -> bool:
    labels = (pod.get("metadata") or {}).get("labels") or {}
    return labels.get(LABEL_COMPONENT) == COMPONENT_PROXY_RUNNER


def describe_pod_failure(pods: Sequence[Mapping[str, Any]]) -> str | None:
    """A sentence about the first failed pod (MCP server pods first), or None."""
    failures = [(pod, reason) for pod in pods if (reason := pod_failure(pod)) is not None]
    failures.sort(key=lambda item: (_is_proxy_pod(item[0]), _pod_name(item[0])))
    if not failures:
        return None
    pod, reason = failures[0]
    which = "Proxy runner pod" if _is_proxy_pod(pod) else "MCP server pod"
    return f"{which} failed: {reason}"


def _pod_name(pod: Mapping[str, Any]) -> str:
    return str((pod.get("metadata") or {}).get("name") or "")


def _event_time(event: Mapping[str, Any]) -> str:
    return str(
        event.get("lastTimestamp")
        or event.get("eventTime")
        or (event.get("metadata") or {}).get("creationTimestamp")
        or ""
    )


def describe_refusal(observed: Observed) -> str | None:
    """The apiserver's latest reason for refusing the MCP server's pods, while none exists.

    Only Events about the current StatefulSet (its uid) count, and only while it wants pods and
    has none: once a pod is created the refusal is over, whatever Events remain.
    """
    statefulset = observed.statefulset
    if statefulset is None or wanted_replicas(statefulset) == 0:
        return None
    if any(not _is_proxy_pod(pod) for pod in observed.pods):
        return None
    uid = (statefulset.get("metadata") or {}).get("uid")
    refusals = [
        event
        for event in observed.refusals
        if event.get("reason") == FAILED_CREATE
        and (event.get("involvedObject") or {}).get("uid") == uid
    ]
    if not refusals:
        return None
    latest = max(refusals, key=_event_time)
    return f"MCP server pod was refused: {latest.get('message') or 'no reason given'}"


def _deadline_exceeded(deployment: Mapping[str, Any] | None) -> str | None:
    for condition in _status_of(deployment).get("conditions") or []:
        if (
            condition.get("type") == "Progressing"
            and condition.get("status") == "False"
            and condition.get("reason") == "ProgressDeadlineExceeded"
        ):
            return str(condition.get("message") or "progress deadline exceeded")
    return None


def settled_verdict(
    *,
    what: str,
    deleting: bool,
    problems: Sequence[Problem],
    retrying: str | None,
    stopped: bool,
    pods: Sequence[Mapping[str, Any]],
    deployment: Mapping[str, Any] | None,
    refusal: str | None = None,
) -> PhaseVerdict | None:
    """The phase of a proxy's owner when something other than readiness decides it: being
    deleted, unbuildable (`problems`), retrying, stopped, a failed pod (or a `refusal` to create
    one), a proxy Deployment past its progress deadline; None when readiness decides.
    `what` names the owner in messages ("MCP server")."""
    if deleting:
        return PhaseVerdict(
            MCPServerPhase.TERMINATING, f"{what} is being deleted", ReadyReason.NOT_READY
        )
    if problems:
        return PhaseVerdict(MCPServerPhase.FAILED, problems[0].message, ReadyReason.FAILED)
    if retrying:
        return PhaseVerdict(MCPServerPhase.PENDING, f"{retrying} (retrying)", ReadyReason.NOT_READY)
    if stopped:
        return PhaseVerdict(
            MCPServerPhase.STOPPED, f"{what} is stopped (replicas: 0)", ReadyReason.NOT_READY
        )
    failure = describe_pod_failure(pods) or refusal
    if failure:
        return PhaseVerdict(MCPServerPhase.FAILED, failure, ReadyReason.FAILED)
    deadline = _deadline_exceeded(deployment)
    if deadline:
        return PhaseVerdict(
            MCPServerPhase.FAILED,
            f"Proxy runner Deployment is not progressing: {deadline}",
            ReadyReason.FAILED,
        )
    return None


def compute_phase(
    server: MCPServer,
    *,
    problems: Sequence[Problem],
    observed: Observed,
    retrying: str | None = None,
) -> PhaseVerdict:
    """The phase, its message and the `Ready` reason (see the module docstring for the rules).

    `retrying` says why the reconcile could not finish and will be retried (a child the
    apiserver did not take for a reason that may pass); the server is then `Pending`.
    """
    settled = settled_verdict(
        what="MCP server",
        deleting=bool(server.metadata.deletion_timestamp),
        problems=problems,
        retrying=retrying,
        stopped=server.spec.replicas == 0,
        pods=observed.pods,
        deployment=observed.deployment,
        refusal=describe_refusal(observed),
    )
    if settled is not None:
        return settled
    proxy_ready = ready_replicas(observed.deployment)
    backend_ready = ready_replicas(observed.statefulset)
    if proxy_ready > 0 and backend_ready > 0:
        return PhaseVerdict(MCPServerPhase.RUNNING, "MCP server is running", ReadyReason.RUNNING)
    return PhaseVerdict(MCPServerPhase.PENDING, _pending_message(observed), ReadyReason.NOT_READY)


def proxy_pending_message(deployment: Mapping[str, Any] | None) -> str | None:
    """What a proxy runner's owner waits for while its Deployment is missing or not ready;
    None once it has ready replicas."""
    if deployment is None:
        return "Waiting for the proxy runner Deployment to be created"
    if ready_replicas(deployment) == 0:
        wanted = wanted_replicas(deployment)
        return f"Waiting for the proxy runner to become ready (0/{wanted} replicas ready)"
    return None


def deployment_verdict(
    *,
    what: str,
    deleting: bool,
    problems: Sequence[Problem],
    retrying: str | None,
    stopped: bool,
    observed: Observed,
    idle: str | None = None,
) -> PhaseVerdict:
    """The phase of an owner whose proxy Deployment alone decides readiness (an MCPRemoteProxy,
    a VirtualMCPServer): settled as `settled_verdict` says, else `Pending` with `idle` when it has
    nothing to run, `Running` with ready replicas, `Pending` otherwise."""
    settled = settled_verdict(
        what=what,
        deleting=deleting,
        problems=problems,
        retrying=retrying,
        stopped=stopped,
        pods=observed.pods,
        deployment=observed.deployment,
    )
    if settled is not None:
        return settled
    if idle is not None:
        return PhaseVerdict(MCPServerPhase.PENDING, idle, ReadyReason.NOT_READY)
    if ready_replicas(observed.deployment) > 0:
        return PhaseVerdict(MCPServerPhase.RUNNING, f"{what} is running", ReadyReason.RUNNING)
    message = proxy_pending_message(observed.deployment) or "Waiting for the proxy runner"
    return PhaseVerdict(MCPServerPhase.PENDING, message, ReadyReason.NOT_READY)


def _pending_message(observed: Observed) -> str:
    waiting = proxy_pending_message(observed.deployment)
    if waiting is not None:
        return waiting
    if observed.statefulset is None:
        return "Waiting for the proxy runner to create the MCP server's StatefulSet"
    wanted = wanted_replicas(observed.statefulset)
    return f"Waiting for the MCP server to become ready (0/{wanted} replicas ready)"


class PlanOutcome(Protocol):
    """What the conditions read of a proxy owner's plan."""

    @property
    def tool_config_hash(self) -> str | None: ...

    @property
    def condition_problems(self) -> Mapping[str, Problem]: ...


def _problem_condition(
    type_: MCPServerConditionType, problem: Problem | None, ok: ConditionSpec
) -> ConditionSpec:
    if problem is None:
        return ok
    return ConditionSpec(type_, "False", problem.reason, problem.message)


def tool_config_condition(spec: ClientSpec, plan: PlanOutcome) -> ConditionSpec:
    type_ = MCPServerConditionType.TOOL_CONFIG_RESOLVED
    ref = spec.tool_config_ref
    if ref is None:
        ok = ConditionSpec(
            type_, "True", "NoToolConfig", "No MCPToolConfig is referenced; every tool is exposed"
        )
    elif plan.tool_config_hash is None:
        # Another problem stopped planning before the tool config was used.
        ok = ConditionSpec(
            type_, "Unknown", "NotEvaluated", f'MCPToolConfig "{ref.name}" was not applied'
        )
    else:
        ok = ConditionSpec(
            type_,
            "True",
            "ToolConfigResolved",
            f'MCPToolConfig "{ref.name}" is in effect (hash {plan.tool_config_hash})',
        )
    return _problem_condition(type_, plan.condition_problems.get(type_), ok)


def auth_condition(spec: ClientSpec, plan: PlanOutcome) -> ConditionSpec:
    type_ = MCPServerConditionType.AUTH_CONFIG_VALID
    parts: list[str] = []
    if spec.oidc_config is not None:
        parts.append(f"clients are authenticated ({spec.oidc_config.type})")
    else:
        parts.append("clients are not authenticated")
    if spec.authz_config is not None:
        parts.append(f"requests are authorised by Cedar policies ({spec.authz_config.type})")
    message = " and ".join(parts)
    ok = ConditionSpec(type_, "True", "AuthConfigValid", message[0].upper() + message[1:])
    return _problem_condition(type_, plan.condition_problems.get(type_), ok)


def pod_template_condition(plan: PlanOutcome) -> ConditionSpec:
    type_ = MCPServerConditionType.POD_TEMPLATE_VALID
    ok = ConditionSpec(type_, "True", "PodTemplateValid", "The pod template is valid")
    return _problem_condition(type_, plan.condition_problems.get(type_), ok)


def _replica_condition(server: MCPServer, plan: ServerPlan) -> ConditionSpec:
    type_ = MCPServerConditionType.STDIO_REPLICA_CAPPED
    if plan.replicas_capped:
        return ConditionSpec(
            type_,
            "True",
            "ReplicasCapped",
            f"A stdio MCP server has one proxy replica: replicas {server.spec.replicas} "
            "is capped at 1",
        )
    return ConditionSpec(type_, "False", "NotCapped", "Proxy replicas are not capped")


def ready_condition(verdict: PhaseVerdict) -> ConditionSpec:
    """`Ready`: True exactly while `Running`."""
    return ConditionSpec(
        MCPServerConditionType.READY,
        "True" if verdict.phase is MCPServerPhase.RUNNING else "False",
        verdict.reason,
        verdict.message,
    )


def compute_conditions(
    server: MCPServer, *, plan: ServerPlan, verdict: PhaseVerdict
) -> list[ConditionSpec]:
    """Every MCPServer condition, `Ready` first; `GroupResolved` only with a `groupRef`."""
    conditions = [
        ready_condition(verdict),
        pod_template_condition(plan),
        tool_config_condition(server.spec, plan),
        auth_condition(server.spec, plan),
        _replica_condition(server, plan),
    ]
    group = group_condition(server.spec.group_ref, found=plan.group_found)
    return conditions if group is None else [*conditions, group]


def owner_status(
    *,
    verdict: PhaseVerdict,
    conditions: Sequence[ConditionSpec] | None,
    previous: Mapping[str, Any],
    generation: int | None,
    now: str,
    url: str,
    observed: Observed,
    tool_config_hash: str | None,
) -> JsonObject:
    """The status of a proxy runner's owner (wire form, camelCase); absent fields are not set.

    `conditions` None: the owner is being deleted and nothing was planned; `Ready` reports the
    phase and every other condition (and `toolConfigHash`) keeps its last word.
    """
    previous_conditions = previous.get("conditions") or []
    if conditions is None:
        ready = ConditionSpec(
            MCPServerConditionType.READY, "False", verdict.reason, verdict.message
        )
        merged = merge_conditions(previous_conditions, [ready], generation=generation, now=now)
        merged += [c for c in previous_conditions if c.get("type") != ready.type]
        tool_config_hash = previous.get("toolConfigHash")
    else:
        merged = merge_conditions(previous_conditions, conditions, generation=generation, now=now)
    status: JsonObject = {
        "phase": verdict.phase.value,
        "message": verdict.message,
        "url": url,
        "readyReplicas": ready_replicas(observed.deployment),
        "conditions": merged,
    }
    if generation is not None:
        status["observedGeneration"] = generation
    if tool_config_hash:
        status["toolConfigHash"] = tool_config_hash
    return status


def compute_status(
    server: MCPServer,
    *,
    plan: ServerPlan,
    observed: Observed,
    previous: Mapping[str, Any],
    now: str,
    retrying: str | None = None,
    cluster_domain: str = DEFAULT_CLUSTER_DOMAIN,
) -> JsonObject:
    """The whole status to store (wire form, camelCase); absent fields are not set.
    `retrying`: see `compute_phase`; `cluster_domain` completes `url`'s host name."""
    verdict = compute_phase(server, problems=plan.problems, observed=observed, retrying=retrying)
    terminating = verdict.phase is MCPServerPhase.TERMINATING
    spec = server.spec
    return owner_status(
        verdict=verdict,
        conditions=None if terminating else compute_conditions(server, plan=plan, verdict=verdict),
        previous=previous,
        generation=server.metadata.generation,
        now=now,
        url=mcpserver_url(
            server.metadata.name or "",
            namespace=server.metadata.namespace or "",
            port=spec.port,
            proxy_mode=spec.effective_proxy_mode,
            cluster_domain=cluster_domain,
        ),
        observed=observed,
        tool_config_hash=plan.tool_config_hash,
    )


def compute_invalid_status(
    obj: Mapping[str, Any],
    *,
    message: str,
    previous: Mapping[str, Any],
    now: str,
    kind: str = KIND_MCPSERVER,
) -> JsonObject:
    """The status of an MCPServer (or another proxy owner of `kind`) that does not even parse
    (no webhook stopped it)."""
    meta = obj.get("metadata") or {}
    generation = meta.get("generation")
    ready = ConditionSpec(
        MCPServerConditionType.READY, "False", ReadyReason.FAILED, f"Invalid {kind}: {message}"
    )
    status: JsonObject = {
        "phase": MCPServerPhase.FAILED.value,
        "message": ready.message,
        "conditions": merge_conditions(
            previous.get("conditions") or [],
            [ready],
            generation=generation if isinstance(generation, int) else None,
            now=now,
        ),
    }
    if isinstance(generation, int):
        status["observedGeneration"] = generation
    return status


@dataclass(frozen=True, slots=True)
class EventSpec:
    """An Event to record about the MCPServer."""

    type: str
    """`Normal` or `Warning`."""
    reason: str
    note: str
    action: str


def phase_event(previous: Mapping[str, Any], status: Mapping[str, Any]) -> EventSpec | None:
    """The Event for a phase change, or for a new reason of failure; none for the first
    `Pending` of a new server (nothing has happened yet worth telling)."""
    phase = status.get("phase")
    message = str(status.get("message") or phase)
    previous_phase = previous.get("phase")
    failed = phase == MCPServerPhase.FAILED
    if phase == previous_phase and not (failed and previous.get("message") != message):
        return None
    if previous_phase is None and phase == MCPServerPhase.PENDING:
        return None
    return EventSpec(
        type="Warning" if failed else "Normal",
        reason=str(phase),
        note=message,
        action="Reconcile",
    )
