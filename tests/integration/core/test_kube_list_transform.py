"""`KubeClient.list(transform=...)` trims each page as it arrives, before the next is asked for."""

from __future__ import annotations

from typing import Any

import pytest

from moorage_core.kube import CONFIGMAPS, KubeClient
from moorage_dev.cluster import ControlPlane

pytestmark = pytest.mark.integration


async def test_each_page_is_transformed_before_the_next_is_requested(
    control_plane: ControlPlane, kube: KubeClient, namespace: str
) -> None:
    for i in range(5):
        meta = {"name": f"cm-{i}", "labels": {"listed": "yes"}}
        body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta}
        await kube.create(CONFIGMAPS, body, namespace=namespace)
    order: list[str] = []

    def trim(item: dict[str, Any]) -> dict[str, Any]:
        order.append("item")
        item["metadata"].pop("managedFields", None)
        return item

    client = await KubeClient.connect(
        kubeconfig=str(control_plane.kubeconfig),
        user_agent="moorage-tests",
        observer=lambda verb, _status, _seconds: order.append(verb),
    )
    async with client:
        result = await client.list(
            CONFIGMAPS, namespace=namespace, label_selector="listed", page_size=2, transform=trim
        )

    assert sorted(i["metadata"]["name"] for i in result.items) == [f"cm-{i}" for i in range(5)]
    assert all("managedFields" not in i["metadata"] for i in result.items)
    assert all(i["kind"] == "ConfigMap" for i in result.items)
    # Pages of 2, 2 and 1, each trimmed before the next page is requested.
    assert order == ["list", "item", "item", "list", "item", "item", "list", "item"]
