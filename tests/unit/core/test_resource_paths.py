"""REST paths of resource kinds."""

from __future__ import annotations

import pytest

from moorage_core.kube import DEPLOYMENTS, MCPSERVERS, NAMESPACES, PODS, ResourceKind


@pytest.mark.parametrize(
    ("kind", "kwargs", "path"),
    [
        (PODS, {}, "/api/v1/pods"),
        (PODS, {"namespace": "a"}, "/api/v1/namespaces/a/pods"),
        (
            PODS,
            {"namespace": "a", "name": "p", "subresource": "attach"},
            "/api/v1/namespaces/a/pods/p/attach",
        ),
        (DEPLOYMENTS, {"namespace": "a", "name": "d"}, "/apis/apps/v1/namespaces/a/deployments/d"),
        (NAMESPACES, {"name": "a"}, "/api/v1/namespaces/a"),
        (NAMESPACES, {"namespace": "ignored", "name": "a"}, "/api/v1/namespaces/a"),
        (
            MCPSERVERS,
            {"namespace": "a", "name": "s", "subresource": "status"},
            "/apis/moorage.dev/v1alpha1/namespaces/a/mcpservers/s/status",
        ),
        (PODS, {"namespace": "a", "name": "we/ird"}, "/api/v1/namespaces/a/pods/we%2Fird"),
    ],
)
def test_builds_paths(kind: ResourceKind, kwargs: dict[str, str], path: str) -> None:
    assert kind.path(**kwargs) == path  # type: ignore[arg-type]


def test_api_version_of_core_and_named_groups() -> None:
    assert PODS.api_version == "v1"
    assert MCPSERVERS.api_version == "moorage.dev/v1alpha1"
