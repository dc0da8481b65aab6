"""The ValidatingWebhookConfiguration that makes the apiserver call this webhook.

Pure: builds the object; applying it is the caller's business. The shipped manifest
(`deploy/base/webhook/validatingwebhookconfiguration.yaml`, pointing at the Service, CA injected by
cert-manager) and local runs (tests, the demo: a URL on loopback and a CA bundle) share these
settings: one webhook per kind, CREATE and UPDATE only, `failurePolicy: Fail` (an unreachable
webhook blocks writes of our kinds and nothing else), no side effects, 5 s timeout, equivalent
versions matched, AdmissionReview v1 only.
"""

from __future__ import annotations

import base64
from typing import Any, Final

from moorage_api.constants import GROUP, VERSION
from moorage_webhook.admission import ENDPOINTS

WEBHOOK_NAMES: Final = {
    "/validate/mcpserver": "mcpserver.moorage.dev",
    "/validate/mcptoolconfig": "mcptoolconfig.moorage.dev",
    "/validate/mcpregistry": "mcpregistry.moorage.dev",
    "/validate/mcpremoteproxy": "mcpremoteproxy.moorage.dev",
    "/validate/mcpexternalauthconfig": "mcpexternalauthconfig.moorage.dev",
    "/validate/mcpgroup": "mcpgroup.moorage.dev",
    "/validate/virtualmcpserver": "virtualmcpserver.moorage.dev",
}
PLURALS: Final = {
    "/validate/mcpserver": "mcpservers",
    "/validate/mcptoolconfig": "mcptoolconfigs",
    "/validate/mcpregistry": "mcpregistries",
    "/validate/mcpremoteproxy": "mcpremoteproxies",
    "/validate/mcpexternalauthconfig": "mcpexternalauthconfigs",
    "/validate/mcpgroup": "mcpgroups",
    "/validate/virtualmcpserver": "virtualmcpservers",
}
TIMEOUT_SECONDS: Final = 5


def desired_webhook(
    path: str, *, client_config: dict[str, Any], namespace_selector: dict[str, Any] | None = None
) -> dict[str, Any]:
    """One entry of `webhooks[]` for the endpoint at `path`."""
    webhook: dict[str, Any] = {
        "name": WEBHOOK_NAMES[path],
        "admissionReviewVersions": ["v1"],
        "sideEffects": "None",
        "failurePolicy": "Fail",
        "matchPolicy": "Equivalent",
        "timeoutSeconds": TIMEOUT_SECONDS,
        "rules": [
            {
                "apiGroups": [GROUP],
                "apiVersions": [VERSION],
                "operations": ["CREATE", "UPDATE"],
                "resources": [PLURALS[path]],
                "scope": "Namespaced",
            }
        ],
        "clientConfig": client_config,
    }
    if namespace_selector is not None:
        webhook["namespaceSelector"] = namespace_selector
    return webhook


def desired_local_configuration(
    name: str,
    *,
    base_url: str,
    ca_pem: bytes,
    namespace_selector: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A configuration calling the webhook at `base_url` (e.g. `https://127.0.0.1:9443`),
    trusting the CA in `ca_pem`; `namespace_selector` narrows it (tests use one namespace)."""
    bundle = base64.b64encode(ca_pem).decode()
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": name},
        "webhooks": [
            desired_webhook(
                endpoint.path,
                client_config={"url": f"{base_url}{endpoint.path}", "caBundle": bundle},
                namespace_selector=namespace_selector,
            )
            for endpoint in ENDPOINTS
        ],
    }
