"""The kube client against the real apiserver: verbs, error translation, watches, apply."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from moorage_core import errors
from moorage_core.kube import CONFIGMAPS, PODTEMPLATES, SERVICES, KubeClient, WatchEvent
from moorage_dev.cluster import ControlPlane

pytestmark = pytest.mark.integration


def _cm(name: str, **data: str) -> dict[str, object]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data}


async def test_get_of_a_missing_object_is_not_found(kube: KubeClient, namespace: str) -> None:
    with pytest.raises(errors.NotFound) as info:
        await kube.get(CONFIGMAPS, namespace=namespace, name="nope")
    assert info.value.reason == "NotFound"
    assert '"nope" not found' in info.value.message


async def test_creating_twice_is_a_conflict(kube: KubeClient, namespace: str) -> None:
    await kube.create(CONFIGMAPS, _cm("a"), namespace=namespace)
    with pytest.raises(errors.Conflict) as info:
        await kube.create(CONFIGMAPS, _cm("a"), namespace=namespace)
    assert info.value.reason == "AlreadyExists"


async def test_a_stale_resource_version_is_a_conflict(kube: KubeClient, namespace: str) -> None:
    created = await kube.create(CONFIGMAPS, _cm("a", k="1"), namespace=namespace)
    await kube.patch(CONFIGMAPS, {"data": {"k": "2"}}, namespace=namespace, name="a")
    with pytest.raises(errors.Conflict):
        await kube.replace(CONFIGMAPS, created, namespace=namespace, name="a")


async def test_an_invalid_object_is_invalid_with_causes(kube: KubeClient, namespace: str) -> None:
    bad = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "s"},
        "spec": {"ports": [{"port": 70000}]},
    }
    with pytest.raises(errors.Invalid) as info:
        await kube.create(SERVICES, bad, namespace=namespace)
    assert any("port" in c.get("field", "") for c in info.value.causes)


async def test_server_side_apply_owns_fields_and_is_idempotent(
    kube: KubeClient, namespace: str
) -> None:
    body = _cm("applied", a="1")
    body["metadata"] = {"name": "applied", "namespace": namespace}
    first = await kube.apply(CONFIGMAPS, body, namespace=namespace, field_manager="moorage-tests")
    second = await kube.apply(CONFIGMAPS, body, namespace=namespace, field_manager="moorage-tests")
    assert first["metadata"]["resourceVersion"] == second["metadata"]["resourceVersion"]
    managers = {m["manager"] for m in second["metadata"]["managedFields"]}
    assert "moorage-tests" in managers


async def test_list_pages_through_every_item(kube: KubeClient, namespace: str) -> None:
    for i in range(7):
        await kube.create(CONFIGMAPS, _cm(f"cm-{i}"), namespace=namespace)
    result = await kube.list(CONFIGMAPS, namespace=namespace, page_size=2)
    names = {i["metadata"]["name"] for i in result.items}
    assert {f"cm-{i}" for i in range(7)} <= names
    assert all(i["kind"] == "ConfigMap" for i in result.items)
    assert result.resource_version


async def test_watch_streams_events_in_order(kube: KubeClient, namespace: str) -> None:
    start = await kube.list(CONFIGMAPS, namespace=namespace)
    seen: list[tuple[str, str]] = []

    async def consume() -> None:
        async for event in kube.watch(
            CONFIGMAPS,
            namespace=namespace,
            resource_version=start.resource_version,
            timeout_seconds=30,
        ):
            if event.type != "BOOKMARK":
                seen.append((event.type, event.object["metadata"]["name"]))
            if len(seen) == 3:
                return

    task = asyncio.create_task(consume())
    await kube.create(CONFIGMAPS, _cm("w"), namespace=namespace)
    await kube.patch(CONFIGMAPS, {"data": {"x": "y"}}, namespace=namespace, name="w")
    await kube.delete(CONFIGMAPS, namespace=namespace, name="w")
    await asyncio.wait_for(task, timeout=30)
    assert seen == [("ADDED", "w"), ("MODIFIED", "w"), ("DELETED", "w")]


async def test_watch_from_a_compacted_version_raises_gone(
    kube: KubeClient, namespace: str, control_plane: ControlPlane
) -> None:
    template = {
        "apiVersion": "v1",
        "kind": "PodTemplate",
        "metadata": {"name": "t"},
        "template": {"spec": {"containers": [{"name": "c", "image": "busybox"}]}},
    }
    created = await kube.create(PODTEMPLATES, template, namespace=namespace)
    await kube.patch(
        PODTEMPLATES, {"metadata": {"labels": {"a": "b"}}}, namespace=namespace, name="t"
    )
    # One more write so that the watch's start revision lies strictly below the compaction.
    await kube.create(CONFIGMAPS, _cm("later"), namespace=namespace)
    control_plane.compact_etcd()
    with pytest.raises(errors.Gone):
        async for _ in kube.watch(
            PODTEMPLATES,
            namespace=namespace,
            resource_version=created["metadata"]["resourceVersion"],
            timeout_seconds=5,
        ):
            pass


async def test_request_observer_sees_verb_and_code(control_plane: object, namespace: str) -> None:
    seen: list[tuple[str, int]] = []
    client = await KubeClient.connect(
        kubeconfig=str(control_plane.kubeconfig),  # type: ignore[attr-defined]
        observer=lambda verb, code, _s: seen.append((verb, code)),
    )
    async with client:
        with contextlib.suppress(errors.NotFound):
            await client.get(CONFIGMAPS, namespace=namespace, name="nope")
        await client.list(CONFIGMAPS, namespace=namespace)
    assert seen == [("get", 404), ("list", 200)]


def test_watch_event_repr_names_the_object() -> None:
    event = WatchEvent("ADDED", {"metadata": {"namespace": "a", "name": "b"}})
    assert repr(event) == "WatchEvent(ADDED, a/b)"
