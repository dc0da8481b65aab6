"""Every converted fixture of the incumbent's manifests applies to the control plane (our CRDs'
schemas decide) and each MCPServer in it reconciles to Running, with the StatefulSet step the
proxy runner takes (as in the demo: the proxy runner's own code applies it; kwok runs the pods).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from operator_harness import (
    RunningOperator,
    apply_workload_as_the_proxy_runner,
    get_or_none,
    wait_for_phase,
)

from moorage_core.kube import MCPREGISTRIES, MCPTOOLCONFIGS, KubeClient
from moorage_dev.converting import convert_documents

pytestmark = pytest.mark.integration

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "toolhive"
KINDS = {"MCPToolConfig": MCPTOOLCONFIGS, "MCPRegistry": MCPREGISTRIES}


@pytest.mark.parametrize("fixture", sorted(p.name for p in FIXTURES.glob("*.yaml")))
async def test_a_converted_fixture_applies_and_its_servers_reach_running(
    operator: RunningOperator,
    kube: KubeClient,
    namespace: str,
    kubectl_apply: Any,
    fixture: str,
) -> None:
    conversion = convert_documents(yaml.safe_load_all((FIXTURES / fixture).read_text()))
    assert conversion.documents, "every fixture has something to convert"
    for doc in conversion.documents:
        kubectl_apply(doc)
    for doc in conversion.documents:
        name = doc["metadata"]["name"]
        if doc["kind"] == "MCPServer":
            await apply_workload_as_the_proxy_runner(kube, name=name, namespace=namespace)
            status = await wait_for_phase(kube, name=name, namespace=namespace, phase="Running")
            assert status["message"] == "MCP server is running"
        elif doc["kind"] in KINDS:
            stored = await get_or_none(kube, KINDS[doc["kind"]], name=name, namespace=namespace)
            assert stored is not None
            assert set(stored["spec"]) >= set(doc["spec"])
