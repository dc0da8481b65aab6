"""Pod security through the real apiserver: the webhook (reading MCPTenants from it) refuses every
privileged or borrowing form of MCPServer at create and at update, an MCPTenant's allowance lets
it through in the namespaces it covers only, and a namespace user cannot write MCPTenants."""

from __future__ import annotations

import contextlib
import secrets
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from testkit.remotekinds import remoteproxy
from testkit.tenants import mcptenant
from testkit.waiting import eventually
from webhook_harness import (
    LocalWebhook,
    mcpserver_body,
    registration,
    serving_pair,
    wait_until_enforced,
)

from moorage_core import errors
from moorage_core.kube import (
    MCPREMOTEPROXIES,
    MCPSERVERS,
    MCPTENANTS,
    NAMESPACES,
    ROLEBINDINGS,
    SERVICEACCOUNTS,
    VALIDATING_WEBHOOKS,
    KubeClient,
)
from moorage_core.tls import build_ca, write_pair
from moorage_dev.cluster import ControlPlane
from moorage_webhook.registration import desired_local_configuration
from moorage_webhook.server import WebhookServer
from moorage_webhook.settings import WebhookSettings

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[3]
USER_ROLES = REPO / "deploy" / "base" / "user-roles.yaml"
POD = "spec.podTemplateSpec.spec"

# (id, spec fields, refused field path)
REFUSED = [
    (
        "privileged",
        {
            "podTemplateSpec": {
                "spec": {"containers": [{"name": "mcp", "securityContext": {"privileged": True}}]}
            }
        },
        f"{POD}.containers[0].securityContext.privileged",
    ),
    (
        "host-path-root",
        {"podTemplateSpec": {"spec": {"volumes": [{"name": "root", "hostPath": {"path": "/"}}]}}},
        f"{POD}.volumes[0].hostPath.path",
    ),
    ("host-network", {"podTemplateSpec": {"spec": {"hostNetwork": True}}}, f"{POD}.hostNetwork"),
    ("host-pid", {"podTemplateSpec": {"spec": {"hostPID": True}}}, f"{POD}.hostPID"),
    (
        "template-service-account",
        {"podTemplateSpec": {"spec": {"serviceAccountName": "admin-bot"}}},
        f"{POD}.serviceAccountName",
    ),
    ("service-account", {"serviceAccount": "admin-bot"}, "spec.serviceAccount"),
    (
        "foreign-secret-volume",
        {
            "podTemplateSpec": {
                "spec": {"volumes": [{"name": "s", "secret": {"secretName": "db-root"}}]}
            }
        },
        f"{POD}.volumes[0].secret.secretName",
    ),
]
ALLOWANCES = {
    "allow": ["Privileged", "HostNamespaces"],
    "hostPathPrefixes": ["/"],
    "serviceAccounts": ["admin-bot"],
    "secrets": ["db-root"],
}


async def _new_namespace(kube: KubeClient) -> str:
    name = f"t-{secrets.token_hex(4)}"
    await kube.create(
        NAMESPACES, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
    )
    return name


@pytest_asyncio.fixture
async def other_namespace(kube: KubeClient) -> AsyncIterator[str]:
    name = await _new_namespace(kube)
    try:
        yield name
    finally:
        with contextlib.suppress(errors.NotFound):
            await kube.delete(NAMESPACES, name=name, propagation_policy="Background")


@pytest_asyncio.fixture
async def tenant_webhook(
    kube: KubeClient,
    control_plane: ControlPlane,
    namespace: str,
    other_namespace: str,
    crds: list[str],
    tmp_path: Path,
) -> AsyncIterator[WebhookServer]:
    """The webhook, following MCPTenants, registered for `namespace` and `other_namespace`."""
    ca = build_ca(common_name="pod-security-ca")
    cert_dir = tmp_path / "certs"
    write_pair(serving_pair(ca), cert_dir)
    settings = WebhookSettings(
        cert_dir=cert_dir, bind=("127.0.0.1", 0), metrics_bind=("127.0.0.1", 0)
    )
    client = await KubeClient.connect(kubeconfig=str(control_plane.kubeconfig))
    server = WebhookServer(settings, kube=client)
    await server.start()
    local = LocalWebhook(server=server, cert_dir=cert_dir, ca=ca)
    name = f"moorage-webhook-test-{secrets.token_hex(4)}"
    config = desired_local_configuration(
        name,
        base_url=local.base_url,
        ca_pem=ca.cert_pem,
        namespace_selector={
            "matchExpressions": [
                {
                    "key": "kubernetes.io/metadata.name",
                    "operator": "In",
                    "values": [namespace, other_namespace],
                }
            ]
        },
    )
    await kube.create(VALIDATING_WEBHOOKS, config)
    try:
        tenants = server.tenants
        assert tenants is not None
        await eventually(
            lambda: tenants.lookup(namespace) is not None, timeout=30, message="MCPTenants listed"
        )
        for each in (namespace, other_namespace):
            await wait_until_enforced(kube, each)
        yield server
    finally:
        with contextlib.suppress(errors.NotFound):
            await kube.delete(VALIDATING_WEBHOOKS, name=name)
        await server.stop()
        await client.close()


@pytest.mark.parametrize(
    ("fields", "path"), [(f, p) for _, f, p in REFUSED], ids=[i for i, *_ in REFUSED]
)
async def test_each_form_is_refused_at_create_and_at_update(
    kube: KubeClient,
    namespace: str,
    tenant_webhook: WebhookServer,
    fields: dict[str, Any],
    path: str,
) -> None:
    with pytest.raises(errors.Invalid) as created:
        await kube.create(MCPSERVERS, mcpserver_body("risky", **fields), namespace=namespace)
    assert f"{path}: " in created.value.message
    assert f"an MCPTenant covering namespace '{namespace}' must allow it" in created.value.message
    await kube.create(MCPSERVERS, mcpserver_body("plain"), namespace=namespace)
    with pytest.raises(errors.Invalid) as updated:
        await kube.patch(MCPSERVERS, {"spec": fields}, name="plain", namespace=namespace)
    assert f"{path}: " in updated.value.message


async def test_an_mcptenant_allows_them_in_its_namespaces_only(
    kube: KubeClient, namespace: str, other_namespace: str, tenant_webhook: WebhookServer
) -> None:
    everything: dict[str, Any] = {}
    for _, fields, _ in REFUSED:
        for key, value in fields.items():
            if key == "podTemplateSpec":
                spec = everything.setdefault("podTemplateSpec", {"spec": {}})["spec"]
                for pod_key, pod_value in value["spec"].items():
                    if isinstance(pod_value, list):
                        spec.setdefault(pod_key, []).extend(pod_value)
                    else:
                        spec[pod_key] = pod_value
            else:
                everything[key] = value
    body = mcpserver_body("allowed", **everything)
    async with mcptenant(kube, [namespace], ALLOWANCES):

        async def admitted() -> bool:
            try:
                await kube.create(MCPSERVERS, body, namespace=namespace)
            except errors.Invalid:
                return False
            return True

        await eventually(admitted, timeout=30, message="the webhook honours the new MCPTenant")
        with pytest.raises(errors.Invalid) as refused:
            await kube.create(MCPSERVERS, body, namespace=other_namespace)
        assert "spec.serviceAccount: " in refused.value.message
    # Withdrawn: the next change of the spec is refused again. Each try changes the spec anew: a
    # try that the webhook admitted before it saw the deletion would make an unchanged retry pass.
    attempts = iter(range(1_000_000))

    async def refused_again() -> bool:
        try:
            await kube.patch(
                MCPSERVERS,
                {"spec": {"args": [f"--try={next(attempts)}"]}},
                name="allowed",
                namespace=namespace,
            )
        except errors.Invalid:
            return True
        return False

    await eventually(refused_again, timeout=30, message="the withdrawn MCPTenant no longer allows")


async def test_a_remote_proxys_pod_is_held_to_the_same_rules(
    kube: KubeClient, namespace: str, tenant_webhook: WebhookServer
) -> None:
    # The operator creates an MCPRemoteProxy's pod itself, for whoever may write the proxy.
    body = remoteproxy(
        "risky",
        podTemplateSpec={
            "spec": {
                "containers": [{"name": "proxyrunner", "securityContext": {"privileged": True}}],
                "serviceAccountName": "risky-remote-proxy",
            }
        },
    )
    with pytest.raises(errors.Invalid) as refused:
        await kube.create(MCPREMOTEPROXIES, body, namespace=namespace)
    message = refused.value.message
    assert f"{POD}.containers[0].securityContext.privileged: " in message
    assert f"an MCPTenant covering namespace '{namespace}' must allow it" in message
    assert "serviceAccountName" not in message, "its own ServiceAccount is not refused"
    async with mcptenant(kube, [namespace], ALLOWANCES):

        async def admitted() -> bool:
            try:
                await kube.create(MCPREMOTEPROXIES, body, namespace=namespace)
            except errors.Invalid:
                return False
            return True

        await eventually(admitted, timeout=30, message="the webhook honours the new MCPTenant")


@pytest_asyncio.fixture
async def user_roles(control_plane: ControlPlane) -> AsyncIterator[None]:
    """deploy/base/user-roles.yaml (Moorage's kinds aggregated into admin/edit/view)."""
    present = control_plane.kubectl(
        "get", "clusterrole", "moorage-edit", "--ignore-not-found", "-o", "name"
    )
    control_plane.kubectl("apply", "--server-side", "-f", str(USER_ROLES))
    try:
        yield
    finally:
        if not present.stdout.strip():
            control_plane.kubectl(
                "delete", "-f", str(USER_ROLES), "--ignore-not-found", check=False
            )


async def test_a_namespace_admin_cannot_write_mcptenants_nor_borrow_the_proxy_runner(
    kube: KubeClient,
    control_plane: ControlPlane,
    namespace: str,
    tenant_webhook: WebhookServer,
    user_roles: None,
) -> None:
    await kube.create(
        SERVICEACCOUNTS,
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "dev"}},
        namespace=namespace,
    )
    await kube.create(
        ROLEBINDINGS,
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": "dev-admin"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "admin",
            },
            "subjects": [{"kind": "ServiceAccount", "name": "dev", "namespace": namespace}],
        },
        namespace=namespace,
    )
    answer = await kube.request(
        "POST",
        SERVICEACCOUNTS.path(namespace=namespace, name="dev", subresource="token"),
        verb="create",
        body={"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {}},
    )
    dev = KubeClient.for_token(
        host=control_plane.server,
        token=answer["status"]["token"],
        ca_file=str(control_plane.ca_file),
    )
    try:
        # The aggregated roles reach the admin role a moment after they are applied.
        await eventually(
            lambda: _can_create(dev, namespace), timeout=30, message="dev may create MCPServers"
        )
        body = {
            "apiVersion": "moorage.dev/v1alpha1",
            "kind": "MCPTenant",
            "metadata": {"name": f"self-granted-{namespace}"},
            "spec": {"namespaces": [namespace], "podTemplate": {"allow": ["Privileged"]}},
        }
        with pytest.raises(errors.Forbidden):
            await dev.create(MCPTENANTS, body)
        with pytest.raises(errors.Forbidden):
            await dev.list(MCPTENANTS)
        privileged = REFUSED[0][1]
        with pytest.raises(errors.Invalid):
            await dev.create(
                MCPSERVERS, mcpserver_body("deputy", **privileged), namespace=namespace
            )
    finally:
        await dev.close()


async def _can_create(client: KubeClient, namespace: str) -> bool:
    try:
        await client.request(
            "POST",
            MCPSERVERS.path(namespace=namespace),
            verb="create",
            query={"dryRun": "All"},
            body=mcpserver_body("probe"),
        )
    except errors.Forbidden:
        return False
    return True


async def test_until_mcptenants_are_listed_it_is_not_ready_and_refuses_what_needs_them(
    kube: KubeClient,
    control_plane: ControlPlane,
    namespace: str,
    crds: list[str],
    tmp_path: Path,
) -> None:
    # A ServiceAccount without the webhook's ClusterRole: its MCPTenant list is refused for good.
    await kube.create(
        SERVICEACCOUNTS,
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "no-rbac"}},
        namespace=namespace,
    )
    answer = await kube.request(
        "POST",
        SERVICEACCOUNTS.path(namespace=namespace, name="no-rbac", subresource="token"),
        verb="create",
        body={"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {}},
    )
    client = KubeClient.for_token(
        host=control_plane.server,
        token=answer["status"]["token"],
        ca_file=str(control_plane.ca_file),
    )
    ca = build_ca(common_name="unsynced-ca")
    write_pair(serving_pair(ca), tmp_path / "certs")
    settings = WebhookSettings(
        cert_dir=tmp_path / "certs", bind=("127.0.0.1", 0), metrics_bind=("127.0.0.1", 0)
    )
    server = WebhookServer(settings, kube=client)
    await server.start()
    try:
        base_url = f"https://127.0.0.1:{server.port}"
        async with registration(kube, namespace, base_url=base_url, ca_pem=ca.cert_pem):
            await wait_until_enforced(kube, namespace)
            context = ssl.create_default_context(cadata=ca.cert_pem.decode())
            async with (
                aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context)) as http,
                http.get(f"{base_url}/readyz") as resp,
            ):
                assert resp.status == 503
                assert "mcptenants" in await resp.text()
            await kube.create(MCPSERVERS, mcpserver_body("plain"), namespace=namespace)
            with pytest.raises(errors.Invalid) as refused:
                await kube.create(
                    MCPSERVERS, mcpserver_body("risky", **REFUSED[0][1]), namespace=namespace
                )
            assert "has not loaded the MCPTenants yet" in refused.value.message
    finally:
        await server.stop()
        await client.close()


@pytest.mark.parametrize("prefix", ["/var/../etc", "var/log", "/var/log/"])
async def test_the_apiserver_refuses_an_mcptenant_host_path_prefix_that_is_not_normal(
    kube: KubeClient, crds: list[str], prefix: str
) -> None:
    with pytest.raises(errors.Invalid) as refused:
        async with mcptenant(kube, ["team-a"], {"hostPathPrefixes": [prefix]}):
            pass
    assert "spec.podTemplate.hostPathPrefixes[0]" in refused.value.message
