"""The MCP server's StatefulSet, as the proxy runner applies it, in a namespace that enforces Pod
Security "restricted": admitted with no podTemplateSpec; an opt-out to root is refused by the
apiserver's PodSecurity admission, and the MCPServer's status and an Event say why.

The operator runs in-process; the proxy runner's part is its own code (`WorkloadManager`) fed
with the RunConfig the operator wrote, since the proxy runner pod itself only runs on kwok here.
kwok makes every admitted pod Ready.
"""

from __future__ import annotations

from typing import Any

import pytest
from operator_harness import (
    RunningOperator,
    apply_workload_as_the_proxy_runner,
    simple_server,
    wait_for_phase,
)
from testkit.waiting import eventually

from moorage_core.kube import EVENTS, MERGE_PATCH, NAMESPACES, PODS, KubeClient

pytestmark = pytest.mark.integration


async def enforce_restricted(kube: KubeClient, namespace: str) -> None:
    await kube.patch(
        NAMESPACES,
        {"metadata": {"labels": {"pod-security.kubernetes.io/enforce": "restricted"}}},
        name=namespace,
        content_type=MERGE_PATCH,
    )


async def test_the_mcp_pod_is_admitted_under_restricted_with_no_pod_template(
    operator: RunningOperator, kube: KubeClient, namespace: str, kubectl_apply: Any
) -> None:
    await enforce_restricted(kube, namespace)
    kubectl_apply(simple_server("time"))
    await apply_workload_as_the_proxy_runner(kube, name="time", namespace=namespace)

    status = await wait_for_phase(kube, name="time", namespace=namespace, phase="Running")
    assert status["message"] == "MCP server is running"
    pod = await kube.get(PODS, name="time-0", namespace=namespace)
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    assert pod["spec"]["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    [mcp] = pod["spec"]["containers"]
    assert mcp["securityContext"]["allowPrivilegeEscalation"] is False
    assert mcp["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert {"name": "tmp", "mountPath": "/tmp"} in mcp["volumeMounts"]
    assert {"name": "tmp", "emptyDir": {}} in pod["spec"]["volumes"]


async def test_a_root_opt_out_is_refused_and_the_status_says_why(
    operator: RunningOperator, kube: KubeClient, namespace: str, kubectl_apply: Any
) -> None:
    await enforce_restricted(kube, namespace)
    opt_out = {"spec": {"securityContext": {"runAsNonRoot": False, "runAsUser": 0}}}
    kubectl_apply(simple_server("root", podTemplateSpec=opt_out))
    await apply_workload_as_the_proxy_runner(kube, name="root", namespace=namespace)

    status = await wait_for_phase(kube, name="root", namespace=namespace, phase="Failed")
    message = status["message"]
    assert message.startswith("MCP server pod was refused: create Pod root-0 in StatefulSet root")
    assert 'violates PodSecurity "restricted:latest"' in message
    assert "runAsNonRoot" in message
    assert "runAsUser=0" in message

    async def event_recorded() -> dict[str, Any]:
        listed = await kube.list(EVENTS, namespace=namespace)
        [event] = [
            e
            for e in listed.items
            if (e.get("regarding") or {}).get("name") == "root" and e.get("reason") == "Failed"
        ]
        return event

    event = await eventually(event_recorded, timeout=30, message="Failed Event on the MCPServer")
    assert (event["type"], event["note"]) == ("Warning", message)
    assert (event["regarding"]["kind"], event["regarding"]["name"]) == ("MCPServer", "root")
