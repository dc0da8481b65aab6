"""Status writes and the memory of writes the caches have not shown yet, against a fake kube
client: only changed fields are sent, a write is remembered until any event about its object."""

from __future__ import annotations

from typing import Any

import pytest
from reconciler_fakes import NAMESPACE, RecordingKube

from moorage_core.errors import Conflict, NotFound
from moorage_core.kube import MCPSERVERS, MCPTOOLCONFIGS
from moorage_operator.reconcilers.pending import PendingWrites
from moorage_operator.reconcilers.statuswrites import patch_status, previous_status
from moorage_operator.runtime.cache import CacheEvent

FIELDS = ("phase", "message", "url")


def server(name: str = "time", **status: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": "moorage.dev/v1alpha1",
        "kind": "MCPServer",
        "metadata": {"name": name, "namespace": NAMESPACE},
    }
    if status:
        obj["status"] = status
    return obj


@pytest.mark.parametrize(
    ("previous", "status", "sent", "written"),
    [
        pytest.param(
            {"phase": "Running", "url": "http://x"},
            {"phase": "Running", "url": "http://x"},
            None,
            [],
            id="unchanged-sends-nothing",
        ),
        pytest.param(
            {"phase": "Pending", "url": "http://x"},
            {"phase": "Running", "url": "http://x"},
            {"phase": "Running"},
            ["phase"],
            id="only-the-changed-field",
        ),
        pytest.param(
            {"phase": "Failed", "message": "broken"},
            {"phase": "Running"},
            {"phase": "Running", "message": None},
            ["message", "phase"],
            id="a-field-no-longer-wanted-is-removed",
        ),
        pytest.param(
            {"phase": "Running", "other": "theirs"},
            {"phase": "Running"},
            None,
            [],
            id="another-writers-field-is-left-alone",
        ),
    ],
)
async def test_a_status_patch_sends_only_what_changed(
    previous: dict[str, Any],
    status: dict[str, Any],
    sent: dict[str, Any] | None,
    written: list[str],
) -> None:
    kube = RecordingKube()
    pending = PendingWrites()

    fields = await patch_status(
        kube, MCPSERVERS, server(), previous=previous, status=status, fields=FIELDS, pending=pending
    )

    assert fields == written
    assert [c.body["status"] for c in kube.writes()] == ([sent] if sent else [])
    assert all(c.subresource == "status" for c in kube.writes())
    remembered = pending.recall(MCPSERVERS, namespace=NAMESPACE, name="time")
    assert remembered == sent


async def test_a_status_patch_of_an_object_gone_meanwhile_writes_and_remembers_nothing() -> None:
    kube = RecordingKube()
    kube.fail("patch", "MCPServer", NotFound("gone", status=404), subresource="status")
    pending = PendingWrites()

    fields = await patch_status(
        kube,
        MCPSERVERS,
        server(),
        previous={},
        status={"phase": "Running"},
        fields=FIELDS,
        pending=pending,
    )

    assert fields == []
    assert len(pending) == 0


async def test_a_refused_status_patch_is_raised_and_not_remembered() -> None:
    kube = RecordingKube()
    kube.fail("patch", "MCPServer", Conflict("try again", status=409), subresource="status")
    pending = PendingWrites()

    with pytest.raises(Conflict):
        await patch_status(
            kube,
            MCPSERVERS,
            server(),
            previous={},
            status={"phase": "Running"},
            fields=FIELDS,
            pending=pending,
        )
    assert len(pending) == 0


@pytest.mark.parametrize(
    ("event_kind", "event_object", "forgotten"),
    [
        pytest.param(MCPSERVERS, server(phase="Pending"), True, id="any-event-of-the-object"),
        pytest.param(MCPSERVERS, server("other"), False, id="another-object"),
        pytest.param(MCPTOOLCONFIGS, server(), False, id="same-name-another-kind"),
    ],
)
def test_the_status_written_is_the_previous_one_until_an_event_about_its_object(
    event_kind: Any, event_object: dict[str, Any], forgotten: bool
) -> None:
    pending = PendingWrites()
    pending.remember(MCPSERVERS, namespace=NAMESPACE, name="time", value={"phase": "Running"})
    stale = server(phase="Pending")
    assert previous_status(stale, kind=MCPSERVERS, pending=pending) == {"phase": "Running"}

    pending.forgetting_handler(event_kind)(CacheEvent("MODIFIED", event_object, old=stale))

    expected = {"phase": "Pending"} if forgotten else {"phase": "Running"}
    assert previous_status(stale, kind=MCPSERVERS, pending=pending) == expected
