"""Every way KubeClient authenticates, against the real apiserver: client certificates (paths and
data), a TokenRequest token (inline, in a rotating file, from an exec plugin), tls-server-name,
and that none of it imports kubernetes_asyncio."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import stat
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import yaml
from testkit.waiting import eventually

from moorage_core import errors
from moorage_core.kube import (
    CONFIGMAPS,
    ROLEBINDINGS,
    ROLES,
    SERVICEACCOUNTS,
    KubeClient,
    load_configuration,
)
from moorage_core.kubeconfigs import ExecAuth
from moorage_dev.cluster import ControlPlane

pytestmark = pytest.mark.integration

SELF_SUBJECT_REVIEWS = "/apis/authentication.k8s.io/v1/selfsubjectreviews"


async def whoami(client: KubeClient) -> str:
    review = await client.request(
        "POST",
        SELF_SUBJECT_REVIEWS,
        verb="create",
        body={"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"},
    )
    return str(review["status"]["userInfo"]["username"])


def kubeconfig(
    path: Path, *, cluster: dict[str, Any], user: dict[str, Any], name: str = "test"
) -> Path:
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": name, "cluster": cluster}],
                "users": [{"name": name, "user": user}],
                "contexts": [{"name": name, "context": {"cluster": name, "user": name}}],
                "current-context": name,
            }
        )
    )
    path.chmod(0o600)
    return path


TokenFactory = Callable[[str], Awaitable[str]]


@pytest_asyncio.fixture
async def sa_token(kube: KubeClient, namespace: str) -> AsyncIterator[TokenFactory]:
    """`await sa_token(name)`: a TokenRequest token of a new ServiceAccount `name` in the test's
    namespace that may read its ConfigMaps."""

    async def make(name: str) -> str:
        await kube.create(
            SERVICEACCOUNTS,
            {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name}},
            namespace=namespace,
        )
        await kube.create(
            ROLES,
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "Role",
                "metadata": {"name": name},
                "rules": [
                    {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list"]}
                ],
            },
            namespace=namespace,
        )
        await kube.create(
            ROLEBINDINGS,
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "RoleBinding",
                "metadata": {"name": name},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "Role",
                    "name": name,
                },
                "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": namespace}],
            },
            namespace=namespace,
        )
        answer = await kube.request(
            "POST",
            SERVICEACCOUNTS.path(namespace=namespace, name=name, subresource="token"),
            verb="create",
            body={
                "apiVersion": "authentication.k8s.io/v1",
                "kind": "TokenRequest",
                "spec": {"expirationSeconds": 3600},
            },
        )
        return str(answer["status"]["token"])

    yield make


@contextlib.asynccontextmanager
async def connected(path: Path) -> AsyncIterator[KubeClient]:
    client = await KubeClient.connect(kubeconfig=str(path), user_agent="moorage-tests")
    try:
        yield client
    finally:
        await client.close()


def test_connecting_with_a_kubeconfig_never_imports_kubernetes_asyncio(
    control_plane: ControlPlane,
) -> None:
    script = textwrap.dedent(
        """
        import asyncio, sys
        from moorage_core.kube import KubeClient, NAMESPACES

        async def main():
            async with await KubeClient.connect(kubeconfig=sys.argv[1]) as client:
                await client.get(NAMESPACES, name="default")
            print("kubernetes_asyncio" in sys.modules)

        asyncio.run(main())
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script, str(control_plane.kubeconfig)],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    assert out.stdout.strip() == "False", out.stderr


async def test_the_admin_kubeconfig_authenticates_with_its_client_certificate(
    kube: KubeClient,
) -> None:
    assert await whoami(kube) == "moorage-admin"
    assert await kube.auth_headers() == {}


async def test_certificate_data_fields_work_like_their_paths(
    control_plane: ControlPlane, tmp_path: Path
) -> None:
    admin = yaml.safe_load(control_plane.kubeconfig.read_text())
    cluster = admin["clusters"][0]["cluster"]
    user = admin["users"][0]["user"]
    base = control_plane.kubeconfig.parent

    def data(path: str) -> str:
        return base64.b64encode((base / path).read_bytes()).decode()

    path = kubeconfig(
        tmp_path / "config",
        cluster={
            "server": cluster["server"],
            "certificate-authority-data": data(cluster["certificate-authority"]),
        },
        user={
            "client-certificate-data": data(user["client-certificate"]),
            "client-key-data": data(user["client-key"]),
        },
    )
    async with connected(path) as client, connected(control_plane.kubeconfig) as admin_client:
        assert await whoami(client) == await whoami(admin_client)


async def test_a_token_kubeconfig_authenticates_as_its_service_account(
    control_plane: ControlPlane, tmp_path: Path, namespace: str, sa_token: TokenFactory
) -> None:
    token = await sa_token("reader")
    path = kubeconfig(
        tmp_path / "config",
        cluster={
            "server": control_plane.server,
            "certificate-authority": str(control_plane.ca_file),
        },
        user={"token": token},
    )
    async with connected(path) as client:
        assert await whoami(client) == f"system:serviceaccount:{namespace}:reader"

        async def can_list() -> bool:
            # RBAC reads RoleBindings from an informer: the new binding may take a moment.
            try:
                await client.list(CONFIGMAPS, namespace=namespace)
            except errors.Forbidden:
                return False
            return True

        await eventually(can_list, timeout=30, message="the RoleBinding to take effect")
        with pytest.raises(errors.Forbidden):
            await client.list(CONFIGMAPS, namespace="kube-system")


async def test_a_rotated_token_file_is_picked_up(
    control_plane: ControlPlane, tmp_path: Path, namespace: str, sa_token: TokenFactory
) -> None:
    first, second = await sa_token("first"), await sa_token("second")
    token_file = tmp_path / "token"
    token_file.write_text(first)
    path = kubeconfig(
        tmp_path / "config",
        cluster={
            "server": control_plane.server,
            "certificate-authority": str(control_plane.ca_file),
        },
        user={"tokenFile": "token"},
    )
    async with connected(path) as client:
        assert await whoami(client) == f"system:serviceaccount:{namespace}:first"
        token_file.write_text(second)
        os.utime(token_file, ns=(0, token_file.stat().st_mtime_ns + 1_000_000_000))
        assert await whoami(client) == f"system:serviceaccount:{namespace}:second"


def _exec_plugin(tmp_path: Path, *, tokens: list[str]) -> Path:
    """A plugin answering `tokens[i]` on its i-th run (the last one thereafter)."""
    (tmp_path / "tokens.json").write_text(json.dumps(tokens))
    script = tmp_path / "plugin.py"
    script.write_text(
        f"#!{sys.executable}\n"
        + textwrap.dedent(
            """
            import json, os, pathlib
            here = pathlib.Path(__file__).parent
            runs = here / "runs"
            n = int(runs.read_text()) if runs.exists() else 0
            runs.write_text(str(n + 1))
            tokens = json.loads((here / "tokens.json").read_text())
            info = json.loads(os.environ["KUBERNETES_EXEC_INFO"])
            print(json.dumps({
                "apiVersion": info["apiVersion"],
                "kind": "ExecCredential",
                "status": {
                    "token": tokens[min(n, len(tokens) - 1)],
                    "expirationTimestamp": "2999-01-01T00:00:00Z",
                },
            }))
            """
        )
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script


@pytest.mark.parametrize("api_version", ["v1", "v1beta1"])
async def test_an_exec_plugin_kubeconfig_authenticates_and_reruns_after_a_401(
    control_plane: ControlPlane,
    tmp_path: Path,
    namespace: str,
    sa_token: TokenFactory,
    api_version: str,
) -> None:
    token = await sa_token("plugin")
    # The first answer is a token the apiserver rejects: the 401 must re-run the plugin.
    script = _exec_plugin(tmp_path, tokens=["not-a-valid-token", token])
    path = kubeconfig(
        tmp_path / "config",
        cluster={
            "server": control_plane.server,
            "certificate-authority": str(control_plane.ca_file),
        },
        user={
            "exec": {
                "apiVersion": f"client.authentication.k8s.io/{api_version}",
                "command": str(script),
                "provideClusterInfo": True,
            }
        },
    )
    async with connected(path) as client:
        assert await whoami(client) == f"system:serviceaccount:{namespace}:plugin"
        assert await whoami(client) == f"system:serviceaccount:{namespace}:plugin"
        auth = (await load_configuration(kubeconfig=str(path))).auth
        assert isinstance(auth, ExecAuth)
    assert (tmp_path / "runs").read_text() == "3"  # two for the client, one for load_configuration


async def test_a_failing_exec_plugin_fails_connect_with_its_message(
    control_plane: ControlPlane, tmp_path: Path
) -> None:
    script = tmp_path / "plugin.sh"
    script.write_text("#!/bin/sh\necho 'login required' >&2\nexit 1\n")
    script.chmod(0o700)
    path = kubeconfig(
        tmp_path / "config",
        cluster={
            "server": control_plane.server,
            "certificate-authority": str(control_plane.ca_file),
        },
        user={"exec": {"apiVersion": "client.authentication.k8s.io/v1", "command": str(script)}},
    )
    with pytest.raises(errors.KubeError, match="exited with status 1: login required"):
        await KubeClient.connect(kubeconfig=str(path))


async def test_tls_server_name_is_the_name_the_certificate_is_checked_against(
    control_plane: ControlPlane, tmp_path: Path
) -> None:
    admin = yaml.safe_load(control_plane.kubeconfig.read_text())
    user = admin["users"][0]["user"]
    base = control_plane.kubeconfig.parent
    user = {k: str((base / v).resolve()) for k, v in user.items()}

    def with_name(name: str) -> Path:
        return kubeconfig(
            tmp_path / f"{name}.yaml",
            cluster={
                "server": control_plane.server,
                "certificate-authority": str(control_plane.ca_file),
                "tls-server-name": name,
            },
            user=user,
        )

    async with connected(with_name("kubernetes")) as client:
        assert await whoami(client)
    async with connected(with_name("not-the-apiserver.example")) as client:
        with pytest.raises(errors.ServerError, match="certificate"):
            await whoami(client)
