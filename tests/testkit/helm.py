"""Running the Helm charts of deploy/charts the way an install does, for the chart tests.

`helm` is built from Go modules once and cached (`moorage_dev.helm_binaries`); Helm 4 unless a
test asks for Helm 3. `template()` renders a chart with values given as dicts (each becomes one
`-f` file, later ones winning, as on the command line) plus any values files of the chart;
`run()` is any other helm command, against a cluster when given a kubeconfig.

`KUSTOMIZE_EQUIVALENTS` says, for each kustomize overlay and component, which values make the
operator chart render the same objects; the comparison lives in tests/unit/deploy.
"""

from __future__ import annotations

import functools
import json
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from moorage_dev.binaries import KUBERNETES_VERSION
from moorage_dev.helm_binaries import HELM_VERSION, ensure_helm
from testkit.kustomize import DEPLOY, Install, Obj

CHARTS = DEPLOY / "charts"
CRDS_CHART = CHARTS / "moorage-crds"
OPERATOR_CHART = CHARTS / "moorage-operator"
HELM_LABELS = frozenset(
    {
        "helm.sh/chart",
        "app.kubernetes.io/managed-by",
        "app.kubernetes.io/instance",
        "app.kubernetes.io/version",
    }
)
"""The labels the charts add to kustomize's (Helm's conventions); nothing else may differ."""

# Values equivalent to each overlay (its RBAC scope) and component of the kustomize install.
OVERLAY_VALUES: dict[str, dict[str, Any]] = {
    "cluster": {},
    "namespace": {
        "operator": {"rbac": {"scope": "namespace", "allowedNamespaces": ["team-a", "team-b"]}}
    },
    "production": {},
}
COMPONENT_VALUES: dict[str, dict[str, Any]] = {
    "ha": {"operator": {"replicaCount": 2}},
    "monitoring": {
        "serviceMonitor": {"enabled": True},
        "podMonitor": {"enabled": True},
        "prometheusRule": {"enabled": True},
        "grafanaDashboard": {"enabled": True},
    },
    "network-policy": {"networkPolicy": {"enabled": True}},
    "size-medium": {},
    "size-large": {},
}
COMPONENT_FILES: dict[str, str] = {
    "size-medium": "values-medium.yaml",
    "size-large": "values-large.yaml",
}
PRODUCTION_COMPONENTS = ("ha", "monitoring", "network-policy")


class HelmFailed(AssertionError):
    """A helm command exited non-zero; `stderr` holds what it said."""

    def __init__(self, command: Sequence[str], stderr: str) -> None:
        super().__init__(f"helm {' '.join(command)} failed: {stderr.strip()}")
        self.stderr = stderr


@functools.cache
def helm(version: str = HELM_VERSION) -> str:
    return str(ensure_helm(version))


def run(
    *args: str,
    kubeconfig: Path | None = None,
    version: str = HELM_VERSION,
    timeout: float = 300,
) -> str:
    """`helm <args>`; its stdout, or HelmFailed with its stderr."""
    command = [*args]
    if kubeconfig is not None:
        command += ["--kubeconfig", str(kubeconfig)]
    with tempfile.TemporaryDirectory(prefix="moorage-helm-home-") as home:
        # A private Helm home: no repositories, plugins or caches of the machine leak in.
        env = {
            # Without HOME the Kubernetes client caches discovery in ./.kube of the cwd.
            "HOME": home,
            "HELM_CACHE_HOME": f"{home}/cache",
            "HELM_CONFIG_HOME": f"{home}/config",
            "HELM_DATA_HOME": f"{home}/data",
            "PATH": "/usr/bin:/bin",
        }
        result = subprocess.run(
            [helm(version), *command],
            capture_output=True,
            text=True,
            check=False,
            timeout=timeout,
            env=env,
        )
    if result.returncode != 0:
        raise HelmFailed(command, result.stderr)
    return result.stdout


def values_args(values: Sequence[Mapping[str, Any]], *, directory: Path) -> list[str]:
    """`-f <file>` for each values dict, written into `directory`."""
    args: list[str] = []
    for index, mapping in enumerate(values):
        path = directory / f"values-{index}.yaml"
        # JSON, which is YAML: Helm's YAML 1.1 would read an unquoted `y` or `no` as a boolean.
        path.write_text(json.dumps(dict(mapping)))
        args += ["-f", str(path)]
    return args


def template(
    chart: Path,
    *values: Mapping[str, Any],
    files: Sequence[str] = (),
    namespace: str = "moorage-system",
    release: str = "moorage",
    version: str = HELM_VERSION,
) -> list[Obj]:
    """The objects `helm template` renders (`files`: values files inside the chart, first)."""
    with tempfile.TemporaryDirectory(prefix="moorage-helm-values-") as tmp:
        args = [a for f in files for a in ("-f", str(chart / f))]
        args += values_args(values, directory=Path(tmp))
        # Offline, Helm 3 assumes Kubernetes 1.20, older than the charts' kubeVersion allows.
        kube = ("--kube-version", KUBERNETES_VERSION)
        out = run("template", release, str(chart), "-n", namespace, *kube, *args, version=version)
    return [d for d in yaml.safe_load_all(out) if d]


def equivalent_values(install: Install) -> tuple[list[dict[str, Any]], list[str]]:
    """The values (dicts, then chart values files) equivalent to a kustomize install."""
    components = list(install.components)
    if install.overlay == "production":
        components = [*PRODUCTION_COMPONENTS, *components]
    values = [OVERLAY_VALUES[install.overlay], *(COMPONENT_VALUES[c] for c in components)]
    files = [COMPONENT_FILES[c] for c in components if c in COMPONENT_FILES]
    return values, files


def without_helm_labels(obj: Obj) -> Obj:
    """`obj` with the labels Helm's conventions add removed (kustomize has none of them)."""
    labels = obj.get("metadata", {}).get("labels")
    if labels is not None:
        for key in HELM_LABELS:
            labels.pop(key, None)
    return obj


def by_identity(objects: Sequence[Obj]) -> dict[tuple[str, str, str], Obj]:
    """Objects keyed by (kind, namespace, name); a duplicate is an error."""
    keyed: dict[tuple[str, str, str], Obj] = {}
    for obj in objects:
        meta = obj["metadata"]
        key = (obj["kind"], meta.get("namespace", ""), meta["name"])
        assert key not in keyed, f"rendered twice: {key}"
        keyed[key] = obj
    return keyed
