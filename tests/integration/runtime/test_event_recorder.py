"""Events as the apiserver accepts them: one `events.k8s.io/v1` Event, then its series bumped."""

from __future__ import annotations

import pytest
from testkit.waiting import eventually

from moorage_core.kube import CONFIGMAPS, EVENTS, KubeClient
from moorage_operator.runtime.events import EventDeduper, EventRecorder

pytestmark = pytest.mark.integration


async def test_a_repeated_event_is_one_event_with_a_series(
    kube: KubeClient, namespace: str
) -> None:
    regarding = await kube.create(
        CONFIGMAPS,
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "subject"}},
        namespace=namespace,
    )
    recorder = EventRecorder(
        kube, reporting_instance="test-pod", deduper=EventDeduper(min_interval=0)
    )
    for _ in range(3):
        await recorder.record(
            regarding,
            type_="Warning",
            reason="ApplyFailed",
            note='Deployment "x" could not be applied',
            action="Apply",
        )
    await recorder.record(
        regarding, type_="Normal", reason="Running", note="running", action="Reconcile"
    )

    async def events() -> list[dict[str, object]]:
        listed = await kube.list(EVENTS, namespace=namespace)
        assert len(listed.items) == 2
        return listed.items

    items = await eventually(events, timeout=10)
    by_reason = {e["reason"]: e for e in items}
    warning = by_reason["ApplyFailed"]
    assert warning["type"] == "Warning"
    assert warning["series"]["count"] == 3  # type: ignore[index]
    assert warning["regarding"]["uid"] == regarding["metadata"]["uid"]  # type: ignore[index]
    assert warning["reportingController"] == "moorage.dev/operator"
    assert warning["reportingInstance"] == "test-pod"
    assert "series" not in by_reason["Running"]
