"""The aggregator's health report and the VirtualMCPServer status patch made from it."""

from __future__ import annotations

from datetime import UTC, datetime

from moorage_proxyrunner.backends.aggregate.report import (
    BackendHealth,
    build_report,
    status_patch,
)
from moorage_proxyrunner.protocol.aggregation import Rules, merge_names

AT = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
LATER = datetime(2026, 1, 2, 3, 5, 0, tzinfo=UTC)
NAMES = {"time": ["echo", "now"], "toolbox": ["echo"], "everything": ["echo", "add"]}


def healths(at: datetime, *, toolbox: bool | None = True) -> list[BackendHealth]:
    return [
        BackendHealth("time", True, 2, "", at),
        BackendHealth("toolbox", toolbox, 1 if toolbox else 0, "" if toolbox else "down", at),
        BackendHealth("everything", None, 0, "not checked yet", None),
    ]


def test_the_status_patch_has_the_two_agreed_fields() -> None:
    merges = {"tools": merge_names(NAMES, Rules("manual", manual={"time/echo": "t_echo"}))}
    patch = status_patch(build_report(healths(AT, toolbox=False), merges))
    assert patch == {
        "status": {
            "backendHealth": [
                {
                    "name": "time",
                    "healthy": True,
                    "toolCount": 2,
                    "message": "",
                    "checkedAt": "2026-01-02T03:04:05Z",
                },
                {
                    "name": "toolbox",
                    "healthy": False,
                    "toolCount": 0,
                    "message": "down",
                    "checkedAt": "2026-01-02T03:04:05Z",
                },
                {
                    "name": "everything",
                    "healthy": None,
                    "toolCount": 0,
                    "message": "not checked yet",
                    "checkedAt": None,
                },
            ],
            "unresolvedConflicts": [{"name": "echo", "backends": ["toolbox", "everything"]}],
        }
    }


def test_shadowed_names_are_reported_on_the_losing_backend() -> None:
    merges = {"tools": merge_names(NAMES, Rules("priority", priority=("everything",)))}
    report = build_report(healths(AT), merges)
    messages = {h.name: h.message for h in report.backend_health}
    assert messages["time"] == "shadowed: tool 'echo' (by everything)"
    assert messages["toolbox"] == "shadowed: tool 'echo' (by everything)"
    assert report.unresolved == ()


def test_a_report_differing_only_in_check_times_is_the_same() -> None:
    merges = {"tools": merge_names(NAMES, Rules("prefix"))}
    first = build_report(healths(AT), merges)
    assert first.same_as(build_report(healths(LATER), merges))
    assert not first.same_as(build_report(healths(LATER, toolbox=False), merges))
    assert not first.same_as(None)
