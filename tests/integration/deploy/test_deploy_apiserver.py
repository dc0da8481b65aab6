"""The deploy manifests against the real apiserver of the local control plane.

Every overlay/component combination is applied with a server-side dry run: the apiserver runs its
full validation and admission (RBAC escalation checks included) and stores nothing, so the
fail-closed ValidatingWebhookConfiguration is never registered. The namespaces the manifests
write into, and the third-party CRDs they need (reduced copies in tests/fixtures/crds), must exist
for real; the fixtures create only what is missing and delete exactly that afterwards.

Pod security is checked where it is enforced: pods. Each workload's pod template is dry-run as a
Pod in a fresh namespace that enforces the `restricted` profile, and the largest install's
Deployments are applied there for real so that the ReplicaSet controller has to get their pods
admitted.
"""

from __future__ import annotations

import functools
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from testkit.kustomize import INSTALLS, Install, Obj, of_kind, pod_templates, render
from testkit.waiting import eventually, eventually_sync

from moorage_core.kube import PODS, KubeClient
from moorage_dev.cluster import ControlPlane

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[3]
FIXTURE_CRDS = REPO / "tests" / "fixtures" / "crds"
FIELD_MANAGER = "moorage-deploy-tests"
RESTRICTED = {
    "pod-security.kubernetes.io/enforce": "restricted",
    "pod-security.kubernetes.io/warn": "restricted",
    "pod-security.kubernetes.io/audit": "restricted",
}


def dump(objects: list[Obj]) -> str:
    return yaml.safe_dump_all(objects, sort_keys=False)


def exists(plane: ControlPlane, *args: str) -> bool:
    return plane.kubectl("get", *args, "-o", "name", check=False).returncode == 0


def gone(plane: ControlPlane, *args: str) -> bool:
    out = plane.kubectl("get", *args, "-o", "name", check=False)
    return out.returncode != 0 and "NotFound" in out.stderr


@pytest.fixture(scope="module")
def third_party_crds(control_plane: ControlPlane) -> Iterator[list[str]]:
    """The ServiceMonitor, PodMonitor, PrometheusRule, Issuer and Certificate kinds."""
    created: list[str] = []
    try:
        for path in sorted(FIXTURE_CRDS.glob("*.yaml")):
            name = yaml.safe_load(path.read_text())["metadata"]["name"]
            if exists(control_plane, "crd", name):
                continue
            control_plane.kubectl("apply", "--server-side", "-f", str(path))
            created.append(name)
        if created:
            control_plane.kubectl(
                "wait",
                "--for=condition=Established",
                "--timeout=60s",
                *[f"crd/{n}" for n in created],
            )
        yield created
    finally:
        for name in created:
            control_plane.kubectl("delete", "crd", name, "--ignore-not-found", check=False)


@pytest.fixture(scope="module")
def install_namespaces(control_plane: ControlPlane) -> Iterator[list[str]]:
    """moorage-system (as the manifests declare it) and the namespaces overlays/namespace
    watches; created when missing, deleted (and waited for) afterwards if created here."""
    namespace_object = next(o for o in render(Install("cluster")) if o["kind"] == "Namespace")
    wanted: list[Obj] = [
        namespace_object,
        *(
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": n}}
            for n in ("team-a", "team-b")
        ),
    ]
    created: list[str] = []
    try:
        for namespace in wanted:
            name = namespace["metadata"]["name"]
            if exists(control_plane, "namespace", name):
                continue
            control_plane.kubectl("create", "-f", "-", input=json.dumps(namespace))
            created.append(name)
        yield [n["metadata"]["name"] for n in wanted]
    finally:
        for name in created:
            control_plane.kubectl("delete", "namespace", name, "--wait=false", check=False)
        for name in created:
            # Later tests may create the same namespace: do not leave it Terminating.
            eventually_sync(
                functools.partial(gone, control_plane, "namespace", name),
                timeout=120,
                message=f"namespace {name} deleted",
            )


def dry_run(plane: ControlPlane, objects: list[Obj]) -> subprocess.CompletedProcess[str]:
    return plane.kubectl(
        "apply",
        "--server-side",
        "--dry-run=server",
        f"--field-manager={FIELD_MANAGER}",
        "-f",
        "-",
        input=dump(objects),
        check=False,
    )


@pytest.mark.parametrize("install", INSTALLS, ids=[i.id for i in INSTALLS])
def test_install_is_accepted_by_the_apiserver(
    control_plane: ControlPlane,
    third_party_crds: list[str],
    install_namespaces: list[str],
    install: Install,
) -> None:
    objects = render(install)
    result = dry_run(control_plane, objects)
    assert result.returncode == 0, result.stderr
    # Warnings (deprecated fields, pod security "warn" on the Deployments) count as failures.
    assert "Warning" not in result.stderr, result.stderr
    applied = [line for line in result.stdout.splitlines() if "(server dry run)" in line]
    assert len(applied) == len(objects), result.stdout


def test_a_broken_object_is_refused_by_the_dry_run(
    control_plane: ControlPlane, third_party_crds: list[str], install_namespaces: list[str]
) -> None:
    # The check above can fail: the apiserver really validates what it is sent.
    objects = render(Install("cluster"))
    operator = next(
        o
        for o in objects
        if o["metadata"]["name"] == "moorage-operator" and o["kind"] == "Deployment"
    )
    operator["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = 70000
    result = dry_run(control_plane, objects)
    assert result.returncode != 0
    assert "containerPort" in result.stderr


@pytest.fixture
def restricted(control_plane: ControlPlane, namespace: str) -> str:
    """The test's fresh namespace, enforcing (and warning about) the restricted profile, with the
    ServiceAccounts the workloads run as."""
    control_plane.kubectl(
        "label", "namespace", namespace, *(f"{k}={v}" for k, v in RESTRICTED.items())
    )
    accounts = {
        o["metadata"]["name"]
        for install in INSTALLS
        for o in of_kind(render(install), "ServiceAccount")
    }
    for name in sorted(accounts):
        control_plane.kubectl("create", "serviceaccount", name, "-n", namespace)
    return namespace


def as_pod(name: str, template: Obj, *, namespace: str) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name.lower().replace("/", "-"),
            "namespace": namespace,
            "labels": template["metadata"].get("labels", {}),
        },
        "spec": template["spec"],
    }


def create_dry_run(plane: ControlPlane, obj: Obj) -> subprocess.CompletedProcess[str]:
    return plane.kubectl(
        "create", "--dry-run=server", "-f", "-", input=json.dumps(obj), check=False
    )


@pytest.mark.parametrize("install", INSTALLS, ids=[i.id for i in INSTALLS])
async def test_every_pod_is_admitted_under_restricted_pod_security(
    control_plane: ControlPlane, restricted: str, install: Install
) -> None:
    templates = pod_templates(render(install))
    assert templates
    for name, template in templates:
        result = create_dry_run(control_plane, as_pod(name, template, namespace=restricted))
        assert result.returncode == 0, f"{name}: {result.stderr}"
        assert "Warning" not in result.stderr, f"{name}: {result.stderr}"


async def test_a_root_pod_is_refused_in_the_restricted_namespace(
    control_plane: ControlPlane, restricted: str
) -> None:
    # Proves the namespace really enforces the profile the test above relies on.
    name, template = pod_templates(render(Install("cluster")))[0]
    template["spec"]["securityContext"] = {"runAsUser": 0}
    for c in template["spec"]["containers"]:
        c.pop("securityContext", None)
    result = create_dry_run(control_plane, as_pod(name, template, namespace=restricted))
    assert result.returncode != 0
    assert "violates PodSecurity" in result.stderr


async def test_deployments_get_their_pods_created_in_a_restricted_namespace(
    control_plane: ControlPlane, kube: KubeClient, restricted: str
) -> None:
    install = Install("cluster", ("ha", "monitoring", "network-policy", "size-large"))
    deployments = of_kind(render(install), "Deployment")
    for deployment in deployments:
        deployment["metadata"]["namespace"] = restricted
    control_plane.kubectl(
        "apply",
        "--server-side",
        f"--field-manager={FIELD_MANAGER}",
        "-f",
        "-",
        input=dump(deployments),
    )

    def failures() -> list[str]:
        out = control_plane.kubectl("get", "replicasets", "-n", restricted, "-o", "json")
        messages: list[str] = []
        for rs in json.loads(out.stdout)["items"]:
            for condition in rs.get("status", {}).get("conditions", []):
                if condition["type"] == "ReplicaFailure":
                    messages.append(f"{rs['metadata']['name']}: {condition['message']}")
        return messages

    async def created(selector: str, want: int) -> bool:
        refused = failures()
        if refused:
            pytest.fail(f"pods refused: {refused}")
        pods = await kube.list(PODS, namespace=restricted, label_selector=selector)
        assert len(pods.items) == want, f"{len(pods.items)} of {want} pods for {selector}"
        return True

    # The namespace fixture deletes the Deployments with the namespace.
    for deployment in deployments:
        labels = deployment["spec"]["selector"]["matchLabels"]
        selector = ",".join(f"{k}={v}" for k, v in labels.items())
        await eventually(
            functools.partial(created, selector, deployment["spec"]["replicas"]),
            timeout=60,
            message=deployment["metadata"]["name"],
        )
