"""deploy/base/webhook as the apiserver sees it: built with kustomize, accepted by a server-side
dry run, and clean under the `restricted` Pod Security Standard."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
import yaml

from moorage_core.kube import NAMESPACES, KubeClient
from moorage_dev.cluster import ControlPlane

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[3]
CERT_MANAGER_KINDS = {"Issuer", "Certificate"}
"""cert-manager's CRDs are not installed on the test control plane."""


async def test_the_webhook_manifests_are_accepted_and_meet_restricted_pod_security(
    control_plane: ControlPlane, kube: KubeClient, namespace: str
) -> None:
    await kube.patch(
        NAMESPACES,
        {
            "metadata": {
                "labels": {
                    "pod-security.kubernetes.io/enforce": "restricted",
                    "pod-security.kubernetes.io/warn": "restricted",
                }
            }
        },
        name=namespace,
    )
    built = await asyncio.to_thread(
        control_plane.kubectl, "kustomize", str(REPO / "deploy" / "base" / "webhook")
    )
    documents = [d for d in yaml.safe_load_all(built.stdout) if d]
    kinds = {d["kind"] for d in documents}
    assert kinds == {
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Deployment",
        "Service",
        "PodDisruptionBudget",
        "Issuer",
        "Certificate",
        "ValidatingWebhookConfiguration",
    }
    (deployment,) = [d for d in documents if d["kind"] == "Deployment"]
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == (
        "ghcr.io/moorage/moorage-webhook:0.1.0"
    )
    for document in documents:
        if document["kind"] in CERT_MANAGER_KINDS:
            continue
        if "namespace" in document["metadata"]:
            document["metadata"]["namespace"] = namespace
        result = await asyncio.to_thread(
            control_plane.kubectl,
            "create",
            "--dry-run=server",
            "-f",
            "-",
            input=json.dumps(document),
            check=False,
        )
        assert result.returncode == 0, (document["kind"], result.stderr)
        assert "Warning" not in result.stderr, (document["kind"], result.stderr)
