"""Both Helm charts installed for real against the local control plane, with helm 4 (built from Go
modules), and again with helm 3: install, `helm upgrade` between the two RBAC scopes in both
directions, uninstall.

What runs where: `helm install` creates every object of the charts in the apiserver (the pods go
to kwok's fake node, which runs nothing). The operator itself runs as a local process, the way
tests/integration/deploy/test_namespace_mode_rbac.py runs it for the kustomize overlay: with the
settings of the Deployment the chart created (read back from the apiserver) and a kubeconfig
holding only a TokenRequest token of the chart's ServiceAccount, so every request it makes is
authorised by the chart's RBAC alone. A 403 shows in its log, or as a reconcile that never ends.

The webhook does not run (kwok), so the install sets `webhook.failurePolicy=Ignore` and a TLS
Secret named in advance (`certManager.enabled=false`): the chart's webhook and TLS objects are
created and checked, but admission is not exercised here (tests/integration/webhook does that).

The crds chart is installed with `--take-ownership`: the session's other tests may have applied
the same CRDs with kubectl already, which is also how a kustomize install migrates to Helm.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import signal
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from test_namespace_mode_rbac import (
    POD_NAME,
    SERVER,
    apply_examples,
    assert_registry_reconciled,
    assert_server_reconciled,
    assert_untouched,
    operator_environment,
    operator_process,
    refusals,
    request_token,
    write_token_kubeconfig,
)
from testkit.helm import CRDS_CHART, OPERATOR_CHART, HelmFailed, run
from testkit.waiting import eventually

from moorage_core.errors import NotFound
from moorage_core.kube import (
    CLUSTERROLEBINDINGS,
    DEPLOYMENTS,
    LEASES,
    MCPSERVERS,
    NAMESPACES,
    ROLEBINDINGS,
    KubeClient,
)
from moorage_dev.cluster import ControlPlane
from moorage_dev.helm_binaries import HELM3_VERSION, HELM_VERSION

pytestmark = pytest.mark.integration

CRDS_RELEASE = "moorage-crds"
RELEASE = "moorage"
CRD_NAMES = (
    "mcpservers.moorage.dev",
    "mcptoolconfigs.moorage.dev",
    "mcpregistries.moorage.dev",
    "mcptenants.moorage.dev",
)
Obj = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Helm:
    """`helm <args>` against the control plane, with one version of helm."""

    kubeconfig: Path
    version: str

    def __call__(self, *args: str) -> str:
        return run(*args, kubeconfig=self.kubeconfig, version=self.version, timeout=180)

    @property
    def taking_over_kubectl_fields(self) -> tuple[str, ...]:
        """Flags for an upgrade that changes fields `kubectl apply --server-side` set: Helm 4
        applies server-side too and must force the conflict; Helm 3 merges client-side."""
        return ("--force-conflicts",) if self.version == HELM_VERSION else ()


@pytest.fixture(params=[HELM_VERSION, HELM3_VERSION], ids=["helm4", "helm3"])
def helm(control_plane: ControlPlane, request: pytest.FixtureRequest) -> Helm:
    return Helm(Path(control_plane.kubeconfig), request.param)


def install_values(plane: ControlPlane, *, scope: str, allowed: tuple[str, ...]) -> list[str]:
    """`--set` flags for a chart install on this control plane (see the module docstring)."""
    ca_bundle = base64.b64encode(Path(plane.ca_file).read_bytes()).decode()
    flags = {
        "certManager.enabled": "false",
        "tls.secretName": "moorage-webhook-provisioned",
        "tls.caBundle": ca_bundle,
        "webhook.failurePolicy": "Ignore",
        "operator.rbac.scope": scope,
    }
    if allowed:
        flags["operator.rbac.allowedNamespaces"] = "{" + ",".join(allowed) + "}"
    return [a for key, value in flags.items() for a in ("--set", f"{key}={value}")]


async def exists(kube: KubeClient, kind: Any, *, name: str, namespace: str | None = None) -> bool:
    try:
        await kube.get(kind, name=name, namespace=namespace)
    except NotFound:
        return False
    return True


@contextlib.asynccontextmanager
async def fresh_namespaces(kube: KubeClient, *names: str) -> AsyncIterator[tuple[str, ...]]:
    for name in names:
        body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
        await kube.create(NAMESPACES, body)
    try:
        yield names
    finally:
        for name in names:
            with contextlib.suppress(NotFound):
                await kube.delete(NAMESPACES, name=name, propagation_policy="Background")


@contextlib.contextmanager
def installed_crds(plane: ControlPlane, helm: Helm) -> Iterator[None]:
    helm("upgrade", "-i", CRDS_RELEASE, str(CRDS_CHART), "--take-ownership", "--wait")
    try:
        plane.kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd", *CRD_NAMES)
        yield
    finally:
        # The CRDs are kept (`keep`): the rest of the session uses them.
        with contextlib.suppress(HelmFailed):
            helm("uninstall", CRDS_RELEASE)


@contextlib.contextmanager
def released(helm: Helm, namespace: str) -> Iterator[None]:
    """The operator chart's release is uninstalled afterwards, whatever happened."""
    try:
        yield
    finally:
        with contextlib.suppress(HelmFailed):
            helm("uninstall", RELEASE, "-n", namespace, "--wait")


def read_log(log: Path) -> str:
    return log.read_text(errors="replace")


async def run_operator_until(
    plane: ControlPlane,
    kube: KubeClient,
    *,
    release_namespace: str,
    log: Path,
    converged: Any,
) -> str:
    """The operator, as the chart's Deployment configures it and with only the chart's RBAC,
    until `converged()` holds; stopped with SIGTERM. Its log."""
    deployment = await kube.get(DEPLOYMENTS, name="moorage-operator", namespace=release_namespace)
    settings = operator_environment(deployment)
    account = deployment["spec"]["template"]["spec"]["serviceAccountName"]
    assert account == "moorage-operator"  # the account request_token asks for
    token = await request_token(kube, namespace=release_namespace)
    kubeconfig = write_token_kubeconfig(
        log.with_suffix(".kubeconfig"), server=plane.server, ca_file=plane.ca_file, token=token
    )
    env = {
        **os.environ,
        **settings,
        "KUBECONFIG": str(kubeconfig),
        "POD_NAME": POD_NAME,
        "METRICS_BIND": "127.0.0.1:0",
    }
    with operator_process(env, log=log) as proc:

        async def done() -> bool:
            if proc.poll() is not None:
                pytest.fail(f"the operator exited with {proc.returncode}")
            refused = refusals(read_log(log))
            if refused:
                pytest.fail("the operator was refused:\n" + "\n".join(refused[:5]))
            await converged()
            return True

        await eventually(done, timeout=90, message="the operator converged")
        lease = await kube.get(LEASES, name="moorage-operator", namespace=release_namespace)
        assert lease["spec"]["holderIdentity"] == POD_NAME
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    text = read_log(log)
    assert refusals(text) == []
    assert '"reconcile_failed"' not in text
    return text


async def operator_bindings(kube: KubeClient, namespaces: tuple[str, ...]) -> dict[str, bool]:
    """Which of the operator's bindings exist: `cluster` and each namespace."""
    found = {"cluster": await exists(kube, CLUSTERROLEBINDINGS, name="moorage-operator")}
    for ns in namespaces:
        found[ns] = await exists(kube, ROLEBINDINGS, name="moorage-operator", namespace=ns)
    return found


def manifest_objects(helm: Helm, namespace: str) -> list[Obj]:
    out = helm("get", "manifest", RELEASE, "-n", namespace)
    return [d for d in yaml.safe_load_all(out) if d]


@pytest.mark.usefixtures("crds")
async def test_helm_installs_upgrades_between_scopes_and_uninstalls_the_operator(
    control_plane: ControlPlane, kube: KubeClient, namespace: str, tmp_path: Path, helm: Helm
) -> None:
    release_ns = namespace
    suffix = release_ns.rsplit("-", 1)[-1]
    team_a, team_b, other = (f"helm-{n}-{suffix}" for n in ("a", "b", "other"))
    watched = (team_a, team_b)
    chart = str(OPERATOR_CHART)
    with installed_crds(control_plane, helm):
        for name in CRD_NAMES:
            crd = yaml.safe_load(control_plane.kubectl("get", "crd", name, "-o", "yaml").stdout)
            assert crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
        async with fresh_namespaces(kube, team_a, team_b, other):
            with released(helm, release_ns):
                everything = (*watched, other)

                async def deploy(verb: str, scope: str, allowed: tuple[str, ...]) -> None:
                    """`helm <verb>` with that scope; then exactly its bindings exist: cluster-wide
                    for `cluster`, one RoleBinding per allowed namespace for `namespace`."""
                    values = install_values(control_plane, scope=scope, allowed=allowed)
                    helm(verb, RELEASE, chart, "-n", release_ns, *values)
                    expected = {"cluster": scope == "cluster"} | {
                        ns: ns in allowed for ns in everything
                    }
                    assert await operator_bindings(kube, everything) == expected

                async def operator_converges(log: str, converged: Any) -> None:
                    await run_operator_until(
                        control_plane,
                        kube,
                        release_namespace=release_ns,
                        log=tmp_path / log,
                        converged=converged,
                    )

                # 1. Namespace scope: a RoleBinding per allowed namespace, nothing cluster-wide.
                await deploy("install", "namespace", watched)
                apply_examples(control_plane, other)
                for ns in watched:
                    apply_examples(control_plane, ns)

                async def watched_reconciled() -> None:
                    for ns in watched:
                        await assert_server_reconciled(kube, ns)
                        await assert_registry_reconciled(kube, ns)

                await operator_converges("namespace-scope.log", watched_reconciled)
                await assert_untouched(kube, other)

                # 2. Upgrade to cluster scope: the RoleBindings go, the ClusterRoleBinding comes,
                # and the operator now reconciles the namespace nobody listed.
                await deploy("upgrade", "cluster", ())

                async def everywhere_reconciled() -> None:
                    for ns in everything:
                        await assert_server_reconciled(kube, ns)

                await operator_converges("cluster-scope.log", everywhere_reconciled)

                # 3. Back to namespace scope, with one namespace: nothing of cluster scope stays.
                await deploy("upgrade", "namespace", (team_b,))
                readers = await kube.get(CLUSTERROLEBINDINGS, name="moorage-proxyrunner-mcptenants")
                assert [s["name"] for s in readers["subjects"]] == [
                    f"system:serviceaccounts:{team_b}"
                ]
                # A change to reconcile, so that this run must write with the new RBAC.
                await kube.patch(
                    MCPSERVERS,
                    {"spec": {"args": ["--local-timezone=Europe/Paris"]}},
                    name=SERVER,
                    namespace=team_b,
                )

                async def team_b_reconciled() -> None:
                    await assert_server_reconciled(kube, team_b)

                await operator_converges("back-to-namespace-scope.log", team_b_reconciled)

                # 4. Uninstall: every object of the release goes; the CRDs stay.
                objects = manifest_objects(helm, release_ns)
                assert {o["kind"] for o in objects} >= {
                    "Deployment",
                    "ClusterRole",
                    "RoleBinding",
                    "ValidatingWebhookConfiguration",
                }
                helm("uninstall", RELEASE, "-n", release_ns, "--wait")
                for obj in objects:
                    meta = obj["metadata"]
                    name = f"{obj['kind'].lower()}/{meta['name']}"
                    where = ["-n", meta["namespace"]] if "namespace" in meta else []
                    left = control_plane.kubectl(
                        "get", name, *where, "--ignore-not-found", "-o", "name"
                    )
                    assert left.stdout.strip() == "", f"{name} is left after uninstall"
                for crd in CRD_NAMES:
                    control_plane.kubectl("get", "crd", crd)
                assert await exists(kube, MCPSERVERS, name=SERVER, namespace=team_b)


@pytest.mark.usefixtures("crds")
async def test_an_install_with_an_unknown_scope_is_refused_naming_the_field_and_creates_nothing(
    control_plane: ControlPlane, kube: KubeClient, namespace: str, helm: Helm
) -> None:
    values = install_values(control_plane, scope="galaxy", allowed=())
    with pytest.raises(HelmFailed) as refused:
        helm("install", RELEASE, str(OPERATOR_CHART), "-n", namespace, *values)
    stderr = refused.value.stderr
    # Helm 4 names the field `/operator/rbac/scope`, Helm 3 `operator.rbac.scope`.
    assert "/operator/rbac/scope" in stderr or "operator.rbac.scope" in stderr, stderr
    assert "must be one of" in stderr, stderr
    assert not await exists(kube, DEPLOYMENTS, name="moorage-operator", namespace=namespace)
    with pytest.raises(HelmFailed, match="not found"):
        helm("status", RELEASE, "-n", namespace)


@pytest.mark.usefixtures("crds")
def test_helm_upgrade_of_the_crds_chart_updates_the_crds(
    control_plane: ControlPlane, helm: Helm, tmp_path: Path
) -> None:
    """The CRDs are templates, not Helm's `crds/` folder (which Helm never upgrades): a newer
    chart's CRD reaches the apiserver with `helm upgrade`."""
    newer = tmp_path / "moorage-crds"
    shutil.copytree(CRDS_CHART, newer)
    template = newer / "templates" / "mcptenants.moorage.dev.yaml"
    text = template.read_text()
    assert text.count("    categories:\n    - moorage\n") == 1
    template.write_text(text.replace("    - moorage\n", "    - moorage\n    - moorage-next\n"))

    def categories() -> list[str]:
        out = control_plane.kubectl("get", "crd", "mcptenants.moorage.dev", "-o", "json")
        return list(json.loads(out.stdout)["spec"]["names"].get("categories", []))

    with installed_crds(control_plane, helm):
        assert categories() == ["moorage"]
        try:
            # The session's `crds` fixture applied these CRDs with kubectl first, as a kustomize
            # install does.
            helm("upgrade", CRDS_RELEASE, str(newer), "--wait", *helm.taking_over_kubectl_fields)
            assert categories() == ["moorage", "moorage-next"]
        finally:
            helm("upgrade", CRDS_RELEASE, str(CRDS_CHART), "--wait")
        assert categories() == ["moorage"]
