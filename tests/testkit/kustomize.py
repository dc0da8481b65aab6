"""Rendering the deploy/ kustomizations the way an install does, for the deploy tests.

An install is an overlay (deploy/overlays/<name>) plus any of the components
(deploy/components/<name>). `render()` writes a small kustomization into a temporary folder that
names the overlay as a resource and the components as components, and runs `kubectl kustomize`
(the kubectl built for the local control plane) on it. Nothing here talks to an apiserver.
"""

from __future__ import annotations

import copy
import functools
import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from moorage_dev.binaries import ensure_binaries

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
OVERLAYS = ("cluster", "namespace", "production")
COMPONENTS = ("ha", "monitoring", "network-policy", "size-medium", "size-large")

Obj = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Install:
    """One overlay with some components, as a user would combine them."""

    overlay: str
    components: tuple[str, ...] = ()

    @property
    def id(self) -> str:
        return "+".join((self.overlay, *self.components))

    def has(self, component: str) -> bool:
        """True when the component is in effect (named, or part of the production overlay)."""
        production = {"ha", "monitoring", "network-policy"}
        return component in self.components or (
            self.overlay == "production" and component in production
        )


# The combinations the deploy tests render, check and dry-run against the apiserver: each overlay
# alone, each component on the default overlay, and the larger mixes people install.
INSTALLS: tuple[Install, ...] = (
    Install("cluster"),
    Install("namespace"),
    Install("production"),
    Install("cluster", ("ha",)),
    Install("cluster", ("monitoring",)),
    Install("cluster", ("network-policy",)),
    Install("cluster", ("size-medium",)),
    Install("cluster", ("size-large",)),
    Install("cluster", ("ha", "monitoring", "network-policy", "size-large")),
    Install("namespace", ("ha",)),
    Install("namespace", ("monitoring", "network-policy", "size-medium")),
    Install("production", ("size-large",)),
)


@functools.cache
def kubectl() -> str:
    """Path of the kubectl built (once, then cached) for the local control plane."""
    return str(ensure_binaries()["kubectl"])


def kustomization(install: Install, *, directory: Path, extra: str = "") -> str:
    """The text of a kustomization in `directory` combining `install` (plus `extra` YAML)."""

    def rel(path: Path) -> str:
        return os.path.relpath(path, directory)

    lines = [
        "apiVersion: kustomize.config.k8s.io/v1beta1",
        "kind: Kustomization",
        "resources:",
        f"  - {rel(DEPLOY / 'overlays' / install.overlay)}",
    ]
    if install.components:
        lines.append("components:")
        lines.extend(f"  - {rel(DEPLOY / 'components' / c)}" for c in install.components)
    return "\n".join(lines) + "\n" + extra


def render_text(install: Install, *, extra: str = "") -> str:
    """`kubectl kustomize` output for `install`; raises with kustomize's message on failure."""
    with tempfile.TemporaryDirectory(prefix="moorage-kustomize-") as tmp:
        directory = Path(tmp)
        (directory / "kustomization.yaml").write_text(
            kustomization(install, directory=directory, extra=extra)
        )
        result = subprocess.run(
            [kubectl(), "kustomize", str(directory)],
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
    if result.returncode != 0:
        raise AssertionError(f"kustomize {install.id} failed: {result.stderr.strip()}")
    return result.stdout


@functools.cache
def _render_cached(install: Install) -> tuple[Obj, ...]:
    return tuple(d for d in yaml.safe_load_all(render_text(install)) if d)


def render(install: Install) -> list[Obj]:
    """The objects `install` renders to (a fresh copy: callers may change them)."""
    return copy.deepcopy(list(_render_cached(install)))


def find(objects: list[Obj], kind: str, name: str, namespace: str | None = None) -> Obj:
    """The one object of `kind` and `name` (and `namespace` when given)."""
    found = [
        o
        for o in objects
        if o["kind"] == kind
        and o["metadata"]["name"] == name
        and (namespace is None or o["metadata"].get("namespace") == namespace)
    ]
    assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
    return found[0]


def of_kind(objects: list[Obj], kind: str) -> list[Obj]:
    return [o for o in objects if o["kind"] == kind]


def container(deployment: Obj, name: str) -> Obj:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    found: list[Obj] = [c for c in containers if c["name"] == name]
    assert len(found) == 1, f"no container {name} in {deployment['metadata']['name']}"
    return found[0]


def env(container_spec: Obj) -> dict[str, Obj]:
    """A container's env entries by name."""
    return {e["name"]: e for e in container_spec.get("env", [])}


WORKLOAD_KINDS = frozenset({"Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob", "Pod"})


def pod_templates(objects: list[Obj]) -> list[tuple[str, Obj]]:
    """(`Kind/name`, pod template) of every workload among `objects`."""
    templates: list[tuple[str, Obj]] = []
    for o in objects:
        kind = o["kind"]
        if kind not in WORKLOAD_KINDS:
            continue
        if kind == "Pod":
            template = {"metadata": o.get("metadata", {}), "spec": o["spec"]}
        elif kind == "CronJob":
            template = o["spec"]["jobTemplate"]["spec"]["template"]
        else:
            template = o["spec"]["template"]
        templates.append((f"{kind}/{o['metadata']['name']}", template))
    return templates
