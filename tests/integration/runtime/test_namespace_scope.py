"""WATCH_NAMESPACES=a,b: the operator lists and watches only in a and b, so RBAC limited to those
namespaces (plus its Lease) is enough — no 403 — and it becomes ready."""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from relaying import write_token_kubeconfig
from spawning import Processes
from testkit.waiting import eventually

from moorage_core.errors import NotFound
from moorage_core.kube import (
    CONFIGMAPS,
    NAMESPACES,
    ROLEBINDINGS,
    ROLES,
    SERVICEACCOUNTS,
    JsonObject,
    KubeClient,
)
from moorage_dev.cluster import ControlPlane, free_port

pytestmark = pytest.mark.integration

SCRIPT = Path(__file__).with_name("configmap_operator.py")
SA = "moorage-operator"


@contextlib.asynccontextmanager
async def namespaces(kube: KubeClient, count: int) -> AsyncIterator[list[str]]:
    names = [f"t-{secrets.token_hex(4)}" for _ in range(count)]
    try:
        for name in names:
            await kube.create(
                NAMESPACES, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
            )
        yield names
    finally:
        for name in names:
            with contextlib.suppress(NotFound):
                await kube.delete(NAMESPACES, name=name, propagation_policy="Background")


async def grant(
    kube: KubeClient, *, namespace: str, sa_namespace: str, rules: list[JsonObject]
) -> None:
    """A Role with `rules` in `namespace`, bound to our ServiceAccount."""
    await kube.create(
        ROLES,
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": SA},
            "rules": rules,
        },
        namespace=namespace,
    )
    await kube.create(
        ROLEBINDINGS,
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": SA},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": SA},
            "subjects": [{"kind": "ServiceAccount", "name": SA, "namespace": sa_namespace}],
        },
        namespace=namespace,
    )


async def request_token(kube: KubeClient, *, namespace: str) -> str:
    """A token for our ServiceAccount from the TokenRequest API."""
    answer = await kube.request(
        "POST",
        SERVICEACCOUNTS.path(namespace=namespace, name=SA, subresource="token"),
        verb="create",
        body={
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {"expirationSeconds": 3600},
        },
    )
    return str(answer["status"]["token"])


def configmap(name: str) -> JsonObject:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}}


async def test_a_namespace_restricted_operator_needs_rbac_only_in_its_namespaces(
    kube: KubeClient,
    namespace: str,
    control_plane: ControlPlane,
    processes: Processes,
    tmp_path: Path,
) -> None:
    async with namespaces(kube, 3) as (a, b, outside):
        await kube.create(
            SERVICEACCOUNTS,
            {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": SA}},
            namespace=namespace,
        )
        watch_rules: list[JsonObject] = [
            {
                "apiGroups": [""],
                "resources": ["configmaps", "serviceaccounts"],
                "verbs": ["get", "list", "watch"],
            }
        ]
        for ns in (a, b):
            await grant(kube, namespace=ns, sa_namespace=namespace, rules=watch_rules)
        lease_rules: list[JsonObject] = [
            {
                "apiGroups": ["coordination.k8s.io"],
                "resources": ["leases"],
                "verbs": ["get", "create", "update"],
            }
        ]
        await grant(kube, namespace=namespace, sa_namespace=namespace, rules=lease_rules)
        for ns, name in ((a, "in-a"), (b, "in-b"), (outside, "outside")):
            await kube.create(CONFIGMAPS, configmap(name), namespace=ns)
        kubeconfig = write_token_kubeconfig(
            tmp_path / "kubeconfig",
            server=control_plane.server,
            ca_file=control_plane.ca_file,
            token=await request_token(kube, namespace=namespace),
        )
        port = free_port()
        log = tmp_path / "operator.log"
        env = {
            **os.environ,
            "KUBECONFIG": str(kubeconfig),
            "WATCH_NAMESPACES": f"{a},{b}",
            "POD_NAMESPACE": namespace,
            "POD_NAME": "scoped",
            "LEADER_ELECTION": "true",
            "METRICS_BIND": f"127.0.0.1:{port}",
            "LOG_FORMAT": "json",
        }
        proc = processes.start([sys.executable, str(SCRIPT)], env=env, log=log)

        async def ready() -> bool:
            assert proc.poll() is None, log.read_text()[-3000:]
            try:
                async with (
                    aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=False)) as session,
                    session.get(f"https://127.0.0.1:{port}/readyz") as resp,
                ):
                    return resp.status == 200
            except aiohttp.ClientConnectionError:
                return False  # not listening yet

        def reconciled(request: str) -> bool:
            return f'"request": "{request}"' in log.read_text()

        await eventually(ready, timeout=60, message="readyz")
        await eventually(lambda: reconciled(f"{a}/in-a") and reconciled(f"{b}/in-b"), timeout=60)
        await kube.create(CONFIGMAPS, configmap("later"), namespace=b)
        await eventually(lambda: reconciled(f"{b}/later"), timeout=30)
        text = log.read_text()
        assert not reconciled(f"{outside}/outside")
        # A status code stands alone; timestamps, ports and ids may contain the digits.
        assert not re.search(r"(?<![\w.])403(?![\w.])", text)
        assert "Forbidden" not in text
        assert "forbidden" not in text
