"""MCPRegistry from a ConfigMap against the real control plane: sync, re-sync on edit, failure
keeping the last good data, filters, manual sync of unchanged data writing nothing."""

from __future__ import annotations

import json
from typing import Any

import pytest
from registry_harness import mcpregistry, registry_status, run_registry_operator, stored_servers
from testkit.registrydocs import toolhive
from testkit.waiting import eventually

from moorage_core.kube import CONFIGMAPS, EVENTS, MCPREGISTRIES, MERGE_PATCH, KubeClient
from moorage_dev.cluster import ControlPlane

pytestmark = pytest.mark.integration


def configmap(name: str, document: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name},
        "data": {"registry.json": document},
    }


CM_SOURCE = {"type": "configMap", "configMap": {"name": "catalogue"}}


async def set_document(kube: KubeClient, namespace: str, document: str) -> None:
    await kube.patch(
        CONFIGMAPS,
        {"data": {"registry.json": document}},
        name="catalogue",
        namespace=namespace,
        content_type=MERGE_PATCH,
    )


@pytest.mark.usefixtures("crds")
async def test_configmap_source_syncs_follows_edits_and_keeps_good_data_on_failure(
    control_plane: ControlPlane, kube: KubeClient, namespace: str
) -> None:
    await kube.create(CONFIGMAPS, configmap("catalogue", toolhive("time")), namespace=namespace)
    async with run_registry_operator(control_plane, namespace=namespace):
        await kube.create(MCPREGISTRIES, mcpregistry("reg", source=CM_SOURCE), namespace=namespace)

        async def ready_with(*names: str) -> dict[str, Any]:
            # Storage is written before status: once the status counts the servers, the
            # storage read before it holds them.
            stored = await stored_servers(kube, name="reg", namespace=namespace)
            status = await registry_status(kube, name="reg", namespace=namespace)
            assert status.get("phase") == "Ready", status
            assert status["syncStatus"]["serverCount"] == len(names), status
            assert stored == list(names)
            return status

        status = await eventually(lambda: ready_with("time"), message="first sync")
        sync = status["syncStatus"]
        assert sync["serverCount"] == 1
        assert sync["attemptCount"] == 0
        assert sync["message"] == 'Synced 1 server from ConfigMap "catalogue"'
        assert status["observedGeneration"] == 1
        assert {c["type"]: c["status"] for c in status["conditions"]} == {
            "Synced": "True",
            "Ready": "True",
        }
        storage = await kube.get(CONFIGMAPS, name="reg-registry-storage", namespace=namespace)
        metadata = json.loads(storage["data"]["sync_metadata.json"])
        assert metadata["hash"] == sync["lastSyncHash"]
        assert metadata["serverCount"] == 1
        assert metadata["source"] == f"configmap:{namespace}/catalogue#registry.json"
        assert set(metadata) == {"timestamp", "hash", "serverCount", "source"}
        (owner,) = storage["metadata"]["ownerReferences"]
        assert (owner["kind"], owner["name"], owner["controller"]) == ("MCPRegistry", "reg", True)
        assert storage["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "moorage"

        await set_document(kube, namespace, toolhive("time", "fetch"))
        status = await eventually(lambda: ready_with("fetch", "time"), message="edit re-synced")
        good = status["syncStatus"]["lastSyncHash"]
        good_data = (await kube.get(CONFIGMAPS, name="reg-registry-storage", namespace=namespace))[
            "data"
        ]

        bad = json.loads(toolhive("time"))
        bad["servers"]["time"]["transport"] = "carrier-pigeon"
        await set_document(kube, namespace, json.dumps(bad))

        async def failed() -> dict[str, Any]:
            status = await registry_status(kube, name="reg", namespace=namespace)
            assert status.get("phase") == "Failed", status
            return status

        status = await eventually(failed, message="invalid document fails")
        message = status["syncStatus"]["message"]
        assert message == (
            'the registry in ConfigMap "catalogue" is not valid toolhive data: '
            "servers.time.transport: expected one of stdio, sse, streamable-http "
            '(got "carrier-pigeon")'
        )
        assert status["syncStatus"]["attemptCount"] == 1
        assert status["syncStatus"]["lastSyncHash"] == good
        ready = next(c for c in status["conditions"] if c["type"] == "Ready")
        assert ready["message"].endswith("(the last good data is kept)")
        storage = await kube.get(CONFIGMAPS, name="reg-registry-storage", namespace=namespace)
        assert storage["data"] == good_data

        async def warned() -> bool:
            events = await kube.list(EVENTS, namespace=namespace)
            return any(
                e.get("reason") == "SyncFailed" and "carrier-pigeon" in e.get("note", "")
                for e in events.items
            )

        await eventually(warned, message="a SyncFailed event")

        await set_document(kube, namespace, toolhive("time", "fetch", "notes"))
        await eventually(lambda: ready_with("fetch", "notes", "time"), message="recovered")


@pytest.mark.usefixtures("crds")
async def test_a_missing_configmap_fails_and_recovers_when_it_appears(
    control_plane: ControlPlane, kube: KubeClient, namespace: str
) -> None:
    async with run_registry_operator(control_plane, namespace=namespace):
        await kube.create(MCPREGISTRIES, mcpregistry("reg", source=CM_SOURCE), namespace=namespace)

        async def failed() -> bool:
            status = await registry_status(kube, name="reg", namespace=namespace)
            return (status.get("syncStatus") or {}).get("message") == (
                'ConfigMap "catalogue" not found'
            )

        await eventually(failed, message="missing ConfigMap reported")
        await kube.create(CONFIGMAPS, configmap("catalogue", toolhive("a")), namespace=namespace)

        async def ready() -> bool:
            status = await registry_status(kube, name="reg", namespace=namespace)
            return status.get("phase") == "Ready"

        await eventually(ready, message="recovered once the ConfigMap exists")


@pytest.mark.usefixtures("crds")
async def test_filters_keep_matching_servers(
    control_plane: ControlPlane, kube: KubeClient, namespace: str
) -> None:
    doc = json.loads(toolhive("alpha", "beta", "beta-deprecated"))
    doc["servers"]["alpha"]["tags"] = ["other"]
    await kube.create(CONFIGMAPS, configmap("catalogue", json.dumps(doc)), namespace=namespace)
    async with run_registry_operator(control_plane, namespace=namespace):
        await kube.create(
            MCPREGISTRIES,
            mcpregistry(
                "reg",
                source=CM_SOURCE,
                filter={"names": {"exclude": ["*-deprecated"]}, "tags": {"include": ["demo"]}},
            ),
            namespace=namespace,
        )

        async def filtered() -> bool:
            return await stored_servers(kube, name="reg", namespace=namespace) == ["beta"]

        await eventually(filtered, message="only beta is kept")


@pytest.mark.usefixtures("crds")
async def test_a_registry_too_big_for_a_configmap_fails_once_with_advice(
    control_plane: ControlPlane, kube: KubeClient, namespace: str
) -> None:
    # Compact source entries grow by their name and tags when stored: under 1 MiB as a source,
    # over it as storage.
    servers = {
        f"s{i:05d}": {"description": "d", "image": "i", "transport": "stdio"} for i in range(16_000)
    }
    document = json.dumps({"version": "1", "servers": servers}, separators=(",", ":"))
    assert len(document) < 1_000_000
    await kube.create(CONFIGMAPS, configmap("catalogue", document), namespace=namespace)
    async with run_registry_operator(control_plane, namespace=namespace) as operator:
        await kube.create(MCPREGISTRIES, mcpregistry("reg", source=CM_SOURCE), namespace=namespace)

        async def refused() -> dict[str, Any]:
            obj = await kube.get(MCPREGISTRIES, name="reg", namespace=namespace)
            assert (obj.get("status") or {}).get("phase") == "Failed", obj.get("status")
            return obj

        obj = await eventually(refused, message="oversized registry refused")
        message = obj["status"]["syncStatus"]["message"]
        assert message.startswith('ConfigMap "catalogue": the filtered registry takes 1.')
        assert message.endswith(
            "more than a ConfigMap holds (1 MiB); keep fewer servers with spec.filter"
        )
        assert await stored_servers(kube, name="reg", namespace=namespace) is None
        # Reconciling again changes nothing: no retry loop, no status churn.
        for _ in range(3):
            await operator.reconcile_now(namespace=namespace, name="reg")
        again = await kube.get(MCPREGISTRIES, name="reg", namespace=namespace)
        assert again["metadata"]["resourceVersion"] == obj["metadata"]["resourceVersion"]
        assert again["status"]["syncStatus"]["attemptCount"] == 1


@pytest.mark.usefixtures("crds")
async def test_a_manual_sync_of_unchanged_data_writes_nothing(
    control_plane: ControlPlane, kube: KubeClient, namespace: str
) -> None:
    await kube.create(CONFIGMAPS, configmap("catalogue", toolhive("time")), namespace=namespace)
    async with run_registry_operator(control_plane, namespace=namespace) as operator:
        await kube.create(
            MCPREGISTRIES,
            mcpregistry("reg", source=CM_SOURCE, syncPolicy={"automatic": False}),
            namespace=namespace,
        )

        async def ready() -> dict[str, Any]:
            status = await registry_status(kube, name="reg", namespace=namespace)
            assert status.get("phase") == "Ready"
            return status

        before = await eventually(ready, message="first sync")
        storage = await kube.get(CONFIGMAPS, name="reg-registry-storage", namespace=namespace)
        applies = operator.requests("apply")

        await kube.patch(
            MCPREGISTRIES,
            {"metadata": {"annotations": {"moorage.dev/sync": "true"}}},
            name="reg",
            namespace=namespace,
            content_type=MERGE_PATCH,
        )

        async def handled() -> dict[str, Any]:
            obj = await kube.get(MCPREGISTRIES, name="reg", namespace=namespace)
            assert "moorage.dev/sync" not in (obj["metadata"].get("annotations") or {})
            return obj

        obj = await eventually(handled, message="the sync annotation is removed")
        after = await kube.get(CONFIGMAPS, name="reg-registry-storage", namespace=namespace)
        assert after["metadata"]["resourceVersion"] == storage["metadata"]["resourceVersion"]
        assert operator.requests("apply") == applies
        assert obj["status"]["syncStatus"]["lastSyncHash"] == before["syncStatus"]["lastSyncHash"]
        assert obj["status"]["phase"] == "Ready"

        # A manual registry does not follow its ConfigMap; an automatic one on the same
        # ConfigMap does, and once it has, the manual one has had every chance to as well.
        await kube.create(MCPREGISTRIES, mcpregistry("auto", source=CM_SOURCE), namespace=namespace)
        await set_document(kube, namespace, toolhive("time", "fetch"))

        async def auto_followed() -> bool:
            return await stored_servers(kube, name="auto", namespace=namespace) == [
                "fetch",
                "time",
            ]

        await eventually(auto_followed, message="the automatic registry follows the edit")
        await operator.reconcile_now(namespace=namespace, name="reg")
        assert await stored_servers(kube, name="reg", namespace=namespace) == ["time"]
        await kube.patch(
            MCPREGISTRIES,
            {"metadata": {"annotations": {"moorage.dev/sync": "true"}}},
            name="reg",
            namespace=namespace,
            content_type=MERGE_PATCH,
        )

        async def requested_sync() -> bool:
            return await stored_servers(kube, name="reg", namespace=namespace) == [
                "fetch",
                "time",
            ]

        await eventually(requested_sync, message="the manual registry syncs on request")
