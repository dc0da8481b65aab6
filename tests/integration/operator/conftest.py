"""Fixtures of the operator's integration tests: the operator in namespace mode, kubectl apply."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
import yaml
from operator_harness import RunningOperator, run_operator

from moorage_dev.cluster import ControlPlane


@pytest_asyncio.fixture
async def operator(
    control_plane: ControlPlane, crds: list[str], namespace: str
) -> AsyncIterator[RunningOperator]:
    """The operator watching only the test's namespace (namespace mode)."""
    async with run_operator(control_plane, namespaces=(namespace,)) as running:
        yield running


@pytest.fixture
def kubectl_apply(control_plane: ControlPlane, namespace: str) -> Any:
    """Apply a document to the test namespace with kubectl (as a user would)."""

    def apply(obj: dict[str, Any]) -> None:
        control_plane.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(obj))

    return apply
