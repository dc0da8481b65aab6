"""MCPTenants for tests: created for the duration of a block, removed whatever happens (they are
cluster-scoped, so a leftover would grant allowances to later tests)."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import AsyncIterator
from typing import Any

from moorage_core.errors import NotFound
from moorage_core.kube import MCPTENANTS, KubeClient


@contextlib.asynccontextmanager
async def mcptenant(
    kube: KubeClient, namespaces: list[str], allowances: dict[str, Any]
) -> AsyncIterator[str]:
    """An MCPTenant covering `namespaces` with `spec.podTemplate` = `allowances`; its name."""
    name = f"tenant-{secrets.token_hex(4)}"
    await kube.create(
        MCPTENANTS,
        {
            "apiVersion": "moorage.dev/v1alpha1",
            "kind": "MCPTenant",
            "metadata": {"name": name},
            "spec": {"namespaces": namespaces, "podTemplate": allowances},
        },
    )
    try:
        yield name
    finally:
        with contextlib.suppress(NotFound):
            await kube.delete(MCPTENANTS, name=name)
