"""Policies from `authzConfig.configMap` never pass the webhook: the operator bounds them itself.

A ConfigMap edited to hold a policy that would crash Cedar fails the MCPServer with
`AuthConfigValid` False (reason `AuthzConfigInvalid`, the entry and the bound in the message), and
the RunConfig keeps the last good policies, so the proxy never sees the bad one.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from operator_harness import RunningOperator, condition, server_status, simple_server
from testkit.cedarattacks import LONG_AND_CHAIN, NESTED_PARENTHESES
from testkit.waiting import eventually

from moorage_core.kube import CONFIGMAPS, MCPSERVERS, KubeClient

pytestmark = pytest.mark.integration

GOOD = "permit(principal, action, resource);"


def _configmap(policy: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "cedar"},
        "data": {"authz.json": json.dumps({"policies": [policy]})},
    }


async def _auth_condition(kube: KubeClient, namespace: str, reason: str) -> dict[str, Any]:
    async def reached() -> dict[str, Any]:
        found = condition(
            await server_status(kube, name="guarded", namespace=namespace), "AuthConfigValid"
        )
        assert found["reason"] == reason, found
        return found

    return await eventually(reached, timeout=30, message=f"AuthConfigValid {reason}")


async def _rendered_policies(kube: KubeClient, namespace: str) -> list[str]:
    runconfig = await kube.get(CONFIGMAPS, name="guarded-runconfig", namespace=namespace)
    policies: list[str] = json.loads(runconfig["data"]["runconfig.json"])["authz"]["policies"]
    return policies


@pytest.mark.parametrize(
    ("policy", "message"),
    [
        pytest.param(
            NESTED_PARENTHESES,
            'ConfigMap "cedar" holds an invalid authorization configuration: '
            "authz.json.policies[0]: nests brackets 701 deep (at line 1, column 743); at most 32 "
            "levels of (, [ and { are allowed",
            id="nested-parentheses",
        ),
        pytest.param(
            LONG_AND_CHAIN,
            'ConfigMap "cedar" holds an invalid authorization configuration: '
            "authz.json.policies[0]: String should have at most 16384 characters",
            id="long-and-chain",
        ),
    ],
)
async def test_a_configmap_policy_beyond_the_bounds_fails_the_server_and_is_not_passed_on(
    operator: RunningOperator, kube: KubeClient, namespace: str, policy: str, message: str
) -> None:
    # Created through the API, not kubectl apply: the long chain would not fit in the
    # last-applied annotation.
    await kube.create(CONFIGMAPS, _configmap(GOOD), namespace=namespace)
    await kube.create(
        MCPSERVERS,
        simple_server("guarded", authzConfig={"type": "configMap", "configMap": {"name": "cedar"}}),
        namespace=namespace,
    )
    valid = await _auth_condition(kube, namespace, "AuthConfigValid")
    assert valid["status"] == "True"
    assert await _rendered_policies(kube, namespace) == [GOOD]

    await kube.replace(CONFIGMAPS, _configmap(policy), name="cedar", namespace=namespace)
    invalid = await _auth_condition(kube, namespace, "AuthzConfigInvalid")
    assert invalid["status"] == "False"
    assert invalid["message"] == message
    status = await server_status(kube, name="guarded", namespace=namespace)
    assert status["phase"] == "Failed"
    assert await _rendered_policies(kube, namespace) == [GOOD], "the last good policies stay"
