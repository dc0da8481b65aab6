"""Namespace mode end to end: with only the RBAC of `deploy/overlays/namespace`, the operator
works in the namespaces it lists and is never refused (no 403).

The overlay is rendered with the kubectl built for the local control plane, its namespaces chosen
the way the overlay documents: a copy of the folder whose two lists (`watch-namespaces.yaml`,
`rolebindings.yaml`) name two fresh namespaces instead of team-a and team-b. Only the RBAC objects
of the render are applied, for real. The real `moorage-operator` process then runs with the
settings of the rendered Deployment (WATCH_NAMESPACES, LEADER_ELECTION, ...) and a kubeconfig
holding nothing but a TokenRequest token of the overlay's ServiceAccount, so every request it
makes is authorised by those objects alone, its Lease in its own namespace included.

In each listed namespace the example MCPServer (with its MCPToolConfig) and the example
MCPRegistry (with its source ConfigMap) must be reconciled: children created, statuses written,
the registry's storage ConfigMap and API written, Events recorded. The same examples in a third
namespace, applied before the others, must be left alone. The operator's log must not mention a
refusal; a rule missing from the overlay shows up there (as `403 Forbidden: ... is forbidden`)
or as a reconcile that never completes.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from testkit.waiting import eventually

from moorage_api.naming import (
    registry_api_name,
    registry_storage_configmap_name,
)
from moorage_core.errors import NotFound
from moorage_core.kube import (
    CONFIGMAPS,
    DEPLOYMENTS,
    EVENTS,
    LEASES,
    MCPREGISTRIES,
    MCPSERVERS,
    MCPTOOLCONFIGS,
    NAMESPACES,
    SERVICES,
    KubeClient,
)
from moorage_dev.cluster import ControlPlane

# The runtime's namespace-scope test already makes fresh namespaces, TokenRequest tokens for the
# `moorage-operator` ServiceAccount and token kubeconfigs; the operator's harness reads objects
# and statuses. Reuse them rather than copy them.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "runtime"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "operator"))
from operator_harness import children_of, get_or_none, server_status
from relaying import write_token_kubeconfig
from test_namespace_scope import namespaces, request_token

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[3]
OVERLAY = REPO / "deploy" / "overlays" / "namespace"
EXAMPLES = REPO / "deploy" / "examples"
RBAC_KINDS = frozenset(
    {"ServiceAccount", "Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding"}
)
CLUSTER_SCOPED_RBAC = frozenset({"ClusterRole", "ClusterRoleBinding"})
FIELD_MANAGER = "moorage-namespace-mode-test"
POD_NAME = "moorage-operator-namespace-mode"
SERVER = "time"
"""The example MCPServer (deploy/examples/mcpserver-stdio.yaml)."""
TOOL_CONFIG = "time-tools"
REGISTRY = "example"
"""The example MCPRegistry (deploy/examples/mcpregistry-configmap.yaml)."""
REFUSAL = re.compile(r"forbidden|(?<![\w.])403(?![\w.])", re.IGNORECASE)
"""How a refusal reads in a log line: `403 Forbidden: configmaps is forbidden: User ...`."""

Obj = dict[str, Any]


# -- rendering the overlay -----------------------------------------------------------------------


def choose_namespaces(directory: Path, *, watched: tuple[str, ...]) -> None:
    """Turn `directory` into the overlay's folder listing `watched`, as its kustomization says:
    a copy whose WATCH_NAMESPACES and RoleBindings name the new namespaces (one binding each)."""
    shutil.copytree(OVERLAY, directory)
    kustomization_file = directory / "kustomization.yaml"
    kustomization = yaml.safe_load(kustomization_file.read_text())
    # Folders the overlay builds on stay where they are; the copy names them from its new place.
    kustomization["resources"] = [
        os.path.relpath((OVERLAY / entry).resolve(), directory)
        if (OVERLAY / entry).is_dir()
        else entry
        for entry in kustomization["resources"]
    ]
    kustomization_file.write_text(yaml.safe_dump(kustomization, sort_keys=False))

    bindings_file = directory / "rolebindings.yaml"
    listed = [d for d in yaml.safe_load_all(bindings_file.read_text()) if d]
    assert {d["kind"] for d in listed} == {"RoleBinding"}, listed
    bindings = []
    for namespace in watched:
        binding = copy.deepcopy(listed[0])
        binding["metadata"]["namespace"] = namespace
        bindings.append(binding)
    bindings_file.write_text(yaml.safe_dump_all(bindings, sort_keys=False))

    patch_file = directory / "watch-namespaces.yaml"
    patch = yaml.safe_load(patch_file.read_text())
    entries = [
        e
        for c in patch["spec"]["template"]["spec"]["containers"]
        for e in c.get("env", [])
        if e["name"] == "WATCH_NAMESPACES"
    ]
    assert len(entries) == 1, patch
    # The example lists must agree before we change them (the overlay's own rule).
    assert entries[0]["value"].split(",") == [d["metadata"]["namespace"] for d in listed]
    entries[0]["value"] = ",".join(watched)
    patch_file.write_text(yaml.safe_dump(patch, sort_keys=False))

    readers_file = directory / "proxyrunner-mcptenants.yaml"
    readers = yaml.safe_load(readers_file.read_text())
    assert [s["name"] for s in readers["subjects"]] == [
        f"system:serviceaccounts:{d['metadata']['namespace']}" for d in listed
    ]
    readers["subjects"] = [
        {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "Group",
            "name": f"system:serviceaccounts:{n}",
        }
        for n in watched
    ]
    readers_file.write_text(yaml.safe_dump(readers, sort_keys=False))


def render_overlay(plane: ControlPlane, directory: Path) -> list[Obj]:
    out = plane.kubectl("kustomize", str(directory))
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def operator_deployment(objects: list[Obj]) -> Obj:
    (deployment,) = [
        o
        for o in objects
        if o["kind"] == "Deployment" and o["metadata"]["name"] == "moorage-operator"
    ]
    return deployment


def operator_environment(deployment: Obj) -> dict[str, str]:
    """The operator container's environment as the Deployment sets it (the downward API's
    POD_NAMESPACE resolved to the Deployment's namespace)."""
    (container,) = [
        c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == "operator"
    ]
    env: dict[str, str] = {}
    for entry in container.get("env", []):
        if "value" in entry:
            env[entry["name"]] = str(entry["value"])
        elif entry.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == (
            "metadata.namespace"
        ):
            env[entry["name"]] = deployment["metadata"]["namespace"]
    return env


# -- cluster-side setup and teardown --------------------------------------------------------------


@contextlib.asynccontextmanager
async def operator_namespace(kube: KubeClient, namespace: Obj) -> AsyncIterator[str]:
    """The overlay's own namespace, created unless it exists; deleted afterwards (and waited
    for, so that a later test may create it again) if created here."""
    name = str(namespace["metadata"]["name"])
    created = False
    try:
        await kube.get(NAMESPACES, name=name)
    except NotFound:
        body = {k: namespace[k] for k in ("apiVersion", "kind", "metadata")}
        await kube.create(NAMESPACES, body)
        created = True
    try:
        yield name
    finally:
        if created:
            with contextlib.suppress(NotFound):
                await kube.delete(NAMESPACES, name=name, propagation_policy="Background")

            async def gone() -> bool:
                try:
                    await kube.get(NAMESPACES, name=name)
                except NotFound:
                    return True
                return False

            await eventually(gone, timeout=120, message=f"namespace {name} deleted")


@contextlib.contextmanager
def applied_rbac(plane: ControlPlane, objects: list[Obj]) -> Iterator[list[Obj]]:
    """The RBAC objects among `objects`, applied for real; the cluster-scoped ones are deleted
    afterwards whatever happened (namespaced ones go with their namespaces)."""
    rbac = [o for o in objects if o["kind"] in RBAC_KINDS]
    cluster_scoped = [o for o in rbac if o["kind"] in CLUSTER_SCOPED_RBAC]
    try:
        plane.kubectl(
            "apply",
            "--server-side",
            f"--field-manager={FIELD_MANAGER}",
            "-f",
            "-",
            input=yaml.safe_dump_all(rbac, sort_keys=False),
        )
        yield rbac
    finally:
        for obj in cluster_scoped:
            plane.kubectl(
                "delete",
                obj["kind"].lower(),
                obj["metadata"]["name"],
                "--ignore-not-found",
                check=False,
            )


@contextlib.contextmanager
def operator_process(env: dict[str, str], *, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """`moorage-operator` with exactly `env` for its settings, its output in `log`. The test
    stops it with SIGTERM itself (that stop is under test); one still running afterwards, after a
    failure, is killed."""
    command = [str(Path(sys.executable).with_name("moorage-operator"))]
    with log.open("wb") as handle:
        proc = subprocess.Popen(command, env=env, stdout=handle, stderr=subprocess.STDOUT)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        print(log.read_text(errors="replace")[-6000:])


def apply_examples(plane: ControlPlane, namespace: str) -> None:
    """deploy/examples' stdio MCPServer, its MCPToolConfig, and the ConfigMap-sourced
    MCPRegistry with its ConfigMap, applied by an admin as a user would."""
    for name in ("mcptoolconfig.yaml", "mcpserver-stdio.yaml", "mcpregistry-configmap.yaml"):
        plane.kubectl("apply", "-n", namespace, "-f", str(EXAMPLES / name))


def refusals(log: str) -> list[str]:
    return [line for line in log.splitlines() if REFUSAL.search(line)]


def is_owned_by(obj: Obj, owner: Obj) -> bool:
    return any(
        ref.get("controller") and ref.get("uid") == owner["metadata"]["uid"]
        for ref in obj["metadata"].get("ownerReferences") or []
    )


# -- the checks ------------------------------------------------------------------------------------


async def assert_server_reconciled(kube: KubeClient, namespace: str) -> None:
    server = await kube.get(MCPSERVERS, name=SERVER, namespace=namespace)
    for kind, name in children_of(SERVER):
        child = await get_or_none(kube, kind, name=name, namespace=namespace)
        assert child is not None, f"{kind.kind} {namespace}/{name} missing"
        assert is_owned_by(child, server), f"{kind.kind} {namespace}/{name} not owned"
    status = await server_status(kube, name=SERVER, namespace=namespace)
    assert status.get("observedGeneration") == server["metadata"]["generation"], status
    assert status.get("phase"), status
    assert status.get("url") == (
        f"http://mcp-{SERVER}-proxy.{namespace}.svc.cluster.local:8080/mcp"
    ), status
    assert status.get("toolConfigHash"), status
    tool_config = await kube.get(MCPTOOLCONFIGS, name=TOOL_CONFIG, namespace=namespace)
    assert tool_config["metadata"].get("finalizers"), tool_config["metadata"]
    assert (tool_config.get("status") or {}).get("configHash") == status["toolConfigHash"]


async def assert_registry_reconciled(kube: KubeClient, namespace: str) -> None:
    registry = await kube.get(MCPREGISTRIES, name=REGISTRY, namespace=namespace)
    status = registry.get("status") or {}
    # Not phase Ready: that also needs the API's pod Ready, which is kwok's business, not RBAC's.
    assert status.get("observedGeneration") == registry["metadata"]["generation"], status
    sync = status.get("syncStatus") or {}
    assert sync.get("serverCount") == 1, status
    assert sync.get("attemptCount") == 0, status
    synced = [c for c in status.get("conditions") or [] if c["type"] == "Synced"]
    assert [c["status"] for c in synced] == ["True"], status
    assert (status.get("apiStatus") or {}).get("endpoint"), status
    storage = await get_or_none(
        kube, CONFIGMAPS, name=registry_storage_configmap_name(REGISTRY), namespace=namespace
    )
    assert storage is not None, "no storage ConfigMap"
    assert is_owned_by(storage, registry)
    stored = json.loads(storage["data"]["registry.json"])
    assert [s["name"] for s in stored["servers"]] == ["time"], stored
    metadata = json.loads(storage["data"]["sync_metadata.json"])
    assert metadata["hash"] == sync.get("lastSyncHash"), (metadata, sync)
    for kind in (DEPLOYMENTS, SERVICES):
        api = await get_or_none(kube, kind, name=registry_api_name(REGISTRY), namespace=namespace)
        assert api is not None, f"no registry API {kind.kind}"
        assert is_owned_by(api, registry)
    events = await kube.list(EVENTS, namespace=namespace)
    assert any(
        e.get("reportingInstance") == POD_NAME
        and e.get("reason") == "Synced"
        and (e.get("regarding") or {}).get("name") == REGISTRY
        for e in events.items
    ), [e.get("reason") for e in events.items]


async def assert_untouched(kube: KubeClient, namespace: str) -> None:
    for kind, name in children_of(SERVER):
        assert await get_or_none(kube, kind, name=name, namespace=namespace) is None, (
            f"{kind.kind} {namespace}/{name} was created in an unwatched namespace"
        )
    assert await server_status(kube, name=SERVER, namespace=namespace) == {}
    tool_config = await kube.get(MCPTOOLCONFIGS, name=TOOL_CONFIG, namespace=namespace)
    assert not tool_config["metadata"].get("finalizers")
    assert not tool_config.get("status")
    registry = await kube.get(MCPREGISTRIES, name=REGISTRY, namespace=namespace)
    assert not registry.get("status")
    for kind, name in (
        (CONFIGMAPS, registry_storage_configmap_name(REGISTRY)),
        (DEPLOYMENTS, registry_api_name(REGISTRY)),
    ):
        assert await get_or_none(kube, kind, name=name, namespace=namespace) is None


# -- the test -----------------------------------------------------------------------------------


@pytest.mark.usefixtures("crds")
async def test_the_namespace_overlay_rbac_is_all_the_operator_needs_in_its_namespaces(
    control_plane: ControlPlane, kube: KubeClient, namespace: str, tmp_path: Path
) -> None:
    unwatched = namespace
    async with namespaces(kube, 2) as watched_list:
        watched = tuple(watched_list)
        choose_namespaces(tmp_path / "overlay", watched=watched)
        objects = render_overlay(control_plane, tmp_path / "overlay")

        # Namespace mode grants the operator nothing cluster-wide: one RoleBinding per listed
        # namespace. Cluster-wide bindings only let the webhook and the listed namespaces' proxy
        # runners read MCPTenants.
        cluster_bindings = {
            o["metadata"]["name"]: o for o in objects if o["kind"] == "ClusterRoleBinding"
        }
        assert set(cluster_bindings) == {"moorage-webhook", "moorage-proxyrunner-mcptenants"}
        assert [
            s["name"] for s in cluster_bindings["moorage-proxyrunner-mcptenants"]["subjects"]
        ] == [f"system:serviceaccounts:{n}" for n in watched]
        bound = sorted(
            o["metadata"]["namespace"]
            for o in objects
            if o["kind"] == "RoleBinding" and o["roleRef"]["kind"] == "ClusterRole"
        )
        assert bound == sorted(watched)
        deployment = operator_deployment(objects)
        settings = operator_environment(deployment)
        assert settings["WATCH_NAMESPACES"] == ",".join(watched)
        assert settings["LEADER_ELECTION"] == "true"
        home = settings["POD_NAMESPACE"]
        (namespace_object,) = [
            o for o in objects if o["kind"] == "Namespace" and o["metadata"]["name"] == home
        ]
        service_account = deployment["spec"]["template"]["spec"]["serviceAccountName"]
        assert service_account == "moorage-operator"  # the account request_token asks for

        async with operator_namespace(kube, namespace_object):
            with applied_rbac(control_plane, objects):
                kubeconfig = write_token_kubeconfig(
                    tmp_path / "kubeconfig",
                    server=control_plane.server,
                    ca_file=control_plane.ca_file,
                    token=await request_token(kube, namespace=home),
                )
                env = {
                    **os.environ,
                    **settings,
                    "KUBECONFIG": str(kubeconfig),
                    "POD_NAME": POD_NAME,
                    "METRICS_BIND": "127.0.0.1:0",
                    "LOG_FORMAT": "json",
                }
                # First where nothing may happen, so that by the time the watched namespaces
                # have converged the operator has had every chance to act on these too.
                apply_examples(control_plane, unwatched)
                log = tmp_path / "operator.log"
                with operator_process(env, log=log) as proc:
                    for ns in watched:
                        apply_examples(control_plane, ns)

                    async def converged() -> bool:
                        # Neither heals by waiting: fail at once rather than at the timeout.
                        if proc.poll() is not None:
                            pytest.fail(f"the operator exited with {proc.returncode}")
                        refused = refusals(log.read_text())
                        if refused:
                            pytest.fail("the operator was refused:\n" + "\n".join(refused[:5]))
                        for ns in watched:
                            await assert_server_reconciled(kube, ns)
                            await assert_registry_reconciled(kube, ns)
                        return True

                    await eventually(converged, timeout=90, message="watched namespaces")
                    lease = await kube.get(LEASES, name="moorage-operator", namespace=home)
                    assert lease["spec"]["holderIdentity"] == POD_NAME
                    await assert_untouched(kube, unwatched)

                    proc.send_signal(signal.SIGTERM)
                    assert proc.wait(timeout=30) == 0
                text = log.read_text()
                assert '"leadership_acquired"' in text
                assert '"lease_released"' in text
                assert '"reconcile_finished"' in text
                assert refusals(text) == []
                # Not even a first attempt that a retry later mends (e.g. a RoleBinding applied
                # before the Role it names, which the RBAC escalation check refuses).
                assert '"reconcile_failed"' not in text
                lease = await kube.get(LEASES, name="moorage-operator", namespace=home)
                assert not lease["spec"].get("holderIdentity")
