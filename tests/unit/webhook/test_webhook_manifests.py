"""deploy/base/webhook: the shipped manifests say what the spec and the code say."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from moorage_webhook.admission import ENDPOINTS
from moorage_webhook.registration import desired_webhook
from moorage_webhook.settings import WebhookSettings

REPO = Path(__file__).resolve().parents[3]
WEBHOOK_DIR = REPO / "deploy" / "base" / "webhook"
NAMESPACE = "moorage-system"
SELECTOR = {"app.kubernetes.io/name": "moorage", "app.kubernetes.io/component": "webhook"}


def _documents() -> dict[str, dict[str, Any]]:
    kustomization = yaml.safe_load((WEBHOOK_DIR / "kustomization.yaml").read_text())
    found: dict[str, dict[str, Any]] = {}
    for name in kustomization["resources"]:
        for document in yaml.safe_load_all((WEBHOOK_DIR / name).read_text()):
            found[document["kind"]] = document
    return found


DOCS = _documents()
CLUSTER_SCOPED = frozenset({"ValidatingWebhookConfiguration", "ClusterRole", "ClusterRoleBinding"})


def test_the_webhook_may_only_list_and_watch_mcptenants() -> None:
    documents = list(yaml.safe_load_all((WEBHOOK_DIR / "mcptenant-reader.yaml").read_text()))
    roles = {d["metadata"]["name"]: d for d in documents if d["kind"] == "ClusterRole"}
    assert roles["moorage-webhook"]["rules"] == [
        {"apiGroups": ["moorage.dev"], "resources": ["mcptenants"], "verbs": ["list", "watch"]}
    ]
    assert roles["moorage-proxyrunner-mcptenants"]["rules"] == [
        {"apiGroups": ["moorage.dev"], "resources": ["mcptenants"], "verbs": ["list"]}
    ]
    [binding] = [d for d in documents if d["kind"] == "ClusterRoleBinding"]
    assert binding["roleRef"]["name"] == "moorage-webhook"
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "moorage-webhook", "namespace": NAMESPACE}
    ]


def test_the_kustomization_lists_every_manifest_in_the_folder() -> None:
    kustomization = yaml.safe_load((WEBHOOK_DIR / "kustomization.yaml").read_text())
    on_disk = {p.name for p in WEBHOOK_DIR.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == on_disk
    (image,) = kustomization["images"]
    assert image["name"] == "moorage-webhook"
    assert image["newTag"]


def test_the_webhook_configuration_matches_the_code() -> None:
    config = DOCS["ValidatingWebhookConfiguration"]
    annotation = config["metadata"]["annotations"]["cert-manager.io/inject-ca-from"]
    certificate = DOCS["Certificate"]["metadata"]
    assert annotation == f"{certificate['namespace']}/{certificate['name']}"
    service = DOCS["Service"]["metadata"]
    assert len(config["webhooks"]) == len(ENDPOINTS)
    for webhook, endpoint in zip(config["webhooks"], ENDPOINTS, strict=True):
        expected = desired_webhook(
            endpoint.path,
            client_config={
                "service": {
                    "name": service["name"],
                    "namespace": service["namespace"],
                    "path": endpoint.path,
                    "port": 443,
                }
            },
        )
        assert webhook == expected


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("failurePolicy", "Fail"),
        ("sideEffects", "None"),
        ("timeoutSeconds", 5),
        ("matchPolicy", "Equivalent"),
        ("admissionReviewVersions", ["v1"]),
    ],
)
def test_every_webhook_has_the_policy_the_spec_requires(field: str, value: object) -> None:
    for webhook in DOCS["ValidatingWebhookConfiguration"]["webhooks"]:
        assert webhook[field] == value
        assert webhook["rules"][0]["operations"] == ["CREATE", "UPDATE"]
        assert webhook["rules"][0]["apiGroups"] == ["moorage.dev"]


def test_the_deployment_runs_two_spread_replicas_with_restricted_security() -> None:
    deployment = DOCS["Deployment"]
    spec = deployment["spec"]
    assert spec["replicas"] == 2
    assert spec["selector"]["matchLabels"] == SELECTOR
    pod = spec["template"]["spec"]
    assert {c["topologyKey"] for c in pod["topologySpreadConstraints"]} == {
        "kubernetes.io/hostname",
        "topology.kubernetes.io/zone",
    }
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 65534
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    # Its token is for listing and watching MCPTenants (the ClusterRole checked below).
    assert pod["automountServiceAccountToken"] is True
    (container,) = pod["containers"]
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert container["image"] == "moorage-webhook"


def test_the_deployment_serves_what_the_command_parses_and_probes_it_over_https() -> None:
    pod = DOCS["Deployment"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    flags = [a for a in container["args"] if a.startswith("--")]
    settings = WebhookSettings.from_env_and_args(
        [f for f in flags if not f.startswith("--cert-dir")], environ={}
    )
    assert settings.bind[1] == 9443
    assert settings.metrics_bind[1] == 8443
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"webhook": 9443, "metrics": 8443}
    assert container["readinessProbe"]["httpGet"] == {
        "path": "/readyz",
        "port": "webhook",
        "scheme": "HTTPS",
    }
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["livenessProbe"]["httpGet"]["scheme"] == "HTTPS"
    (cert_dir,) = [a.split("=", 1)[1] for a in container["args"] if a.startswith("--cert-dir=")]
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    secret = volumes[mounts[cert_dir]]["secret"]["secretName"]
    assert secret == DOCS["Certificate"]["spec"]["secretName"] == "moorage-webhook-tls"


def test_the_service_and_budget_select_the_webhook_pods() -> None:
    service = DOCS["Service"]["spec"]
    assert service["selector"] == SELECTOR
    ports = {p["name"]: (p["port"], p["targetPort"]) for p in service["ports"]}
    assert ports == {"webhook": (443, "webhook"), "metrics": (8443, "metrics")}
    budget = DOCS["PodDisruptionBudget"]["spec"]
    assert budget == {"minAvailable": 1, "selector": {"matchLabels": SELECTOR}}


def test_the_certificate_names_the_service_and_a_self_signed_issuer() -> None:
    certificate = DOCS["Certificate"]["spec"]
    assert "moorage-webhook.moorage-system.svc" in certificate["dnsNames"]
    issuer = DOCS["Issuer"]
    assert certificate["issuerRef"] == {"name": issuer["metadata"]["name"], "kind": "Issuer"}
    assert issuer["spec"] == {"selfSigned": {}}
    for document in DOCS.values():
        if document["kind"] not in CLUSTER_SCOPED:
            assert document["metadata"]["namespace"] == NAMESPACE
