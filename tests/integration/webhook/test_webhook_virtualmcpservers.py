"""VirtualMCPServers written through the real apiserver with the webhook registered: a bad conflict
map is refused naming the field (by the CRD's own rules, which answer before the webhook is
asked), the webhook judges what the schema cannot (incoming Cedar policies), and a good one is
admitted."""

from __future__ import annotations

from typing import Any

import pytest
from testkit.remotekinds import virtualmcpserver
from webhook_harness import Registration

from moorage_core import errors
from moorage_core.kube import VIRTUALMCPSERVERS, KubeClient

pytestmark = pytest.mark.integration


def virtual_server(name: str, **spec: Any) -> dict[str, Any]:
    return virtualmcpserver(name, groupRef={"name": "tools"}, **spec)


def manual(*entries: tuple[str, str, str]) -> dict[str, Any]:
    return {
        "strategy": "manual",
        "manual": [{"backend": b, "tool": t, "name": n} for b, t, n in entries],
    }


async def test_a_good_virtual_server_is_admitted(
    kube: KubeClient, registered_webhook: Registration
) -> None:
    body = virtual_server(
        "hub", conflictResolution=manual(("time", "now", "time_now"), ("docs", "now", "now"))
    )
    created = await kube.create(VIRTUALMCPSERVERS, body, namespace=registered_webhook.namespace)
    assert created["spec"]["conflictResolution"]["strategy"] == "manual"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        pytest.param(
            {"conflictResolution": manual(("time", "now", "now"), ("docs", "now", "now"))},
            'spec.conflictResolution.manual: Invalid value: "object": manual names must be unique',
            id="manual-name-twice",
        ),
        pytest.param(
            {"conflictResolution": manual(("time", "now", "a"), ("time", "now", "b"))},
            'spec.conflictResolution.manual[1]: Duplicate value: {"backend":"time","tool":"now"}',
            id="manual-entry-twice",
        ),
        pytest.param(
            {"conflictResolution": {"strategy": "prefix", "priority": ["time"]}},
            'spec.conflictResolution.priority: Invalid value: "object": priority is required '
            "with strategy priority and not allowed otherwise",
            id="priority-with-prefix",
        ),
        pytest.param(
            {"conflictResolution": {"strategy": "manual"}},
            'spec.conflictResolution.manual: Invalid value: "object": manual is required with '
            "strategy manual and not allowed otherwise",
            id="manual-missing",
        ),
        pytest.param(
            {"conflictResolution": {"strategy": "priority", "priority": ["a"], "separator": "-"}},
            'spec.conflictResolution.separator: Invalid value: "object": separator is allowed '
            "only with strategy prefix",
            id="separator-with-priority",
        ),
        pytest.param(
            {"conflictResolution": manual(("time", "now", "two words"))},
            'spec.conflictResolution.manual[0].name: Invalid value: "two words"',
            id="manual-name-not-a-tool-name",
        ),
        pytest.param(
            {"toolConfigs": {"Time": {"name": "t"}}},
            'spec.toolConfigs: Invalid value: "object": keys must be backend (member) names',
            id="tool-configs-key",
        ),
        pytest.param(
            {
                "incomingAuth": {
                    "authzConfig": {
                        "type": "inline",
                        "inline": {"policies": ['permit(principal, action == Action::"x"']},
                    }
                }
            },
            'admission webhook "virtualmcpserver.moorage.dev" denied the request: '
            "spec.incomingAuth.authzConfig.inline.policies[0]: is not a valid Cedar policy",
            id="webhook-broken-cedar-policy",
        ),
    ],
)
async def test_bad_virtual_servers_are_refused_naming_the_field(
    kube: KubeClient, registered_webhook: Registration, spec: dict[str, Any], message: str
) -> None:
    with pytest.raises(errors.Invalid) as caught:
        await kube.create(
            VIRTUALMCPSERVERS, virtual_server("bad", **spec), namespace=registered_webhook.namespace
        )
    assert message in caught.value.message, caught.value.message
