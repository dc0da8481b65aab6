"""The apiserver calls the webhook: admissions, rejections with our message, warnings, dry runs,
certificate rotation without a restart, and fail-closed when the webhook process is gone."""

from __future__ import annotations

import asyncio
import base64
import json
import signal
from pathlib import Path
from typing import Any

import pytest
from testkit.commands import free_port
from testkit.waiting import eventually
from webhook_harness import (
    SHORT_DIGEST_IMAGE,
    LocalWebhook,
    Registration,
    dry_run_create,
    mcpserver_body,
    registration,
    serving_pair,
    start_webhook_process,
    wait_until_enforced,
)

from moorage_core import errors
from moorage_core.kube import (
    CONFIGMAPS,
    MCPREGISTRIES,
    MCPSERVERS,
    MCPTOOLCONFIGS,
    VALIDATING_WEBHOOKS,
    KubeClient,
    ResourceKind,
)
from moorage_core.tls import build_ca, write_pair
from moorage_dev.cluster import ControlPlane

pytestmark = pytest.mark.integration


def _toolconfig(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "moorage.dev/v1alpha1",
        "kind": "MCPToolConfig",
        "metadata": {"name": name},
        "spec": spec,
    }


def _registry(name: str, git: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "moorage.dev/v1alpha1",
        "kind": "MCPRegistry",
        "metadata": {"name": name},
        "spec": {
            "source": {
                "type": "git",
                "git": {"repository": "https://github.com/org/registry.git", **git},
            }
        },
    }


async def test_a_valid_mcpserver_is_admitted(
    kube: KubeClient, registered_webhook: Registration
) -> None:
    created = await kube.create(
        MCPSERVERS, mcpserver_body("time"), namespace=registered_webhook.namespace
    )
    assert created["metadata"]["name"] == "time"


@pytest.mark.parametrize(
    ("kind", "body", "message"),
    [
        pytest.param(
            MCPSERVERS,
            mcpserver_body("digest", image=SHORT_DIGEST_IMAGE),
            'admission webhook "mcpserver.moorage.dev" denied the request: spec.image: '
            f'"{SHORT_DIGEST_IMAGE}" is not a valid image reference: sha256 digest must have 64 '
            "hex digits, not 40",
            id="bad-image-reference",
        ),
        pytest.param(
            MCPSERVERS,
            mcpserver_body(
                "cedar",
                authzConfig={
                    "type": "inline",
                    "inline": {"policies": ['permit(principal, action == Action::"call_tool"']},
                },
            ),
            'admission webhook "mcpserver.moorage.dev" denied the request: '
            "spec.authzConfig.inline.policies[0]: is not a valid Cedar policy",
            id="broken-cedar-policy",
        ),
        pytest.param(
            MCPSERVERS,
            mcpserver_body(
                "podspec",
                podTemplateSpec={"spec": {"containers": [{"name": "mcp", "stdin": "yes"}]}},
            ),
            'admission webhook "mcpserver.moorage.dev" denied the request: '
            "spec.podTemplateSpec.spec.containers[0].stdin: must be a boolean, not a string",
            id="pod-template-wrong-type",
        ),
        pytest.param(
            MCPTOOLCONFIGS,
            _toolconfig(
                "tools",
                {"toolsOverride": {"fetch": {"name": "get"}, "download": {"name": "get"}}},
            ),
            'admission webhook "mcptoolconfig.moorage.dev" denied the request: '
            'spec.toolsOverride[fetch].name: "get" is also the new name of tool "download"',
            id="colliding-tool-renames",
        ),
        pytest.param(
            MCPREGISTRIES,
            _registry("catalog", {"commit": "abc1234"}),
            'admission webhook "mcpregistry.moorage.dev" denied the request: '
            'spec.source.git.commit: "abc1234" must be a full commit SHA',
            id="abbreviated-git-commit",
        ),
        pytest.param(
            MCPREGISTRIES,
            _registry("catalog", {"repository": "https://token:secret@github.com/org/r.git"}),
            'admission webhook "mcpregistry.moorage.dev" denied the request: '
            "spec.source.git.repository: must not contain a password",
            id="password-in-repository-url",
        ),
    ],
)
async def test_invalid_objects_are_rejected_with_the_webhooks_message(
    kube: KubeClient,
    registered_webhook: Registration,
    kind: ResourceKind,
    body: dict[str, Any],
    message: str,
) -> None:
    with pytest.raises(errors.Invalid) as caught:
        await kube.create(kind, body, namespace=registered_webhook.namespace)
    assert message in caught.value.message
    assert caught.value.status == 422
    assert caught.value.causes, "field causes reach the client"


async def test_rules_the_schema_already_states_still_reject(
    kube: KubeClient, registered_webhook: Registration
) -> None:
    # Branch and tag together: the CRD's CEL rule answers before the webhook is asked.
    with pytest.raises(errors.Invalid) as caught:
        await kube.create(
            MCPREGISTRIES,
            _registry("both", {"branch": "main", "tag": "v1"}),
            namespace=registered_webhook.namespace,
        )
    assert "at most one of branch, tag and commit may be set" in caught.value.message


def _kubectl_create(
    plane: ControlPlane, namespace: str, body: dict[str, Any], *extra: str
) -> tuple[int, str, str]:
    result = plane.kubectl(
        "create", "-n", namespace, "-f", "-", *extra, input=json.dumps(body), check=False
    )
    return result.returncode, result.stdout, result.stderr


async def test_warnings_reach_the_client(
    control_plane: ControlPlane, registered_webhook: Registration
) -> None:
    code, _, stderr = await asyncio.to_thread(
        _kubectl_create,
        control_plane,
        registered_webhook.namespace,
        mcpserver_body("floating", image="ghcr.io/moorage/time:latest", targetPort=9000),
    )
    assert code == 0, stderr
    assert "Warning: spec.image: tag 'latest' moves" in stderr
    assert "Warning: spec.targetPort: ignored for transport stdio" in stderr


async def test_updates_are_validated_with_the_old_object(
    control_plane: ControlPlane, kube: KubeClient, registered_webhook: Registration
) -> None:
    namespace = registered_webhook.namespace
    await kube.create(MCPSERVERS, mcpserver_body("moving"), namespace=namespace)
    changed = mcpserver_body("moving", transport="sse", proxyMode="sse")
    result = await asyncio.to_thread(
        control_plane.kubectl,
        "apply",
        "--server-side",
        "--field-manager=tests",
        "--force-conflicts",
        "-n",
        namespace,
        "-f",
        "-",
        input=json.dumps(changed),
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "Warning: spec.transport: changing from stdio to sse" in result.stderr


async def test_dry_runs_are_validated_and_store_nothing(
    kube: KubeClient, control_plane: ControlPlane, registered_webhook: Registration
) -> None:
    namespace = registered_webhook.namespace
    with pytest.raises(errors.Invalid, match="sha256 digest must have 64 hex digits"):
        await dry_run_create(kube, namespace, mcpserver_body("dry", image=SHORT_DIGEST_IMAGE))
    code, _, stderr = await asyncio.to_thread(
        _kubectl_create,
        control_plane,
        namespace,
        mcpserver_body("dry", image="ghcr.io/moorage/time:latest"),
        "--dry-run=server",
    )
    assert code == 0, stderr
    assert "Warning: spec.image: tag 'latest' moves" in stderr
    with pytest.raises(errors.NotFound):
        await kube.get(MCPSERVERS, namespace=namespace, name="dry")


async def test_rotating_the_certificate_keeps_admissions_working(
    kube: KubeClient, registered_webhook: Registration
) -> None:
    webhook: LocalWebhook = registered_webhook.webhook
    namespace = registered_webhook.namespace
    await kube.create(MCPSERVERS, mcpserver_body("before"), namespace=namespace)

    new_ca = build_ca(common_name="rotated-ca")
    write_pair(serving_pair(new_ca), webhook.cert_dir)
    config = await kube.get(VALIDATING_WEBHOOKS, name=registered_webhook.name)
    bundle = base64.b64encode(new_ca.cert_pem).decode()
    for entry in config["webhooks"]:
        entry["clientConfig"]["caBundle"] = bundle
    await kube.replace(VALIDATING_WEBHOOKS, config, name=registered_webhook.name)

    async def admits_with_the_new_certificate() -> bool:
        if webhook.server.tls.reloads < 1:
            return False
        try:
            await dry_run_create(kube, namespace, mcpserver_body("probe"))
        except errors.KubeError:
            return False
        return True

    await eventually(admits_with_the_new_certificate, timeout=60, message="rotation")
    await kube.create(MCPSERVERS, mcpserver_body("after"), namespace=namespace)
    with pytest.raises(errors.Invalid, match="sha256 digest must have 64 hex digits"):
        await kube.create(
            MCPSERVERS, mcpserver_body("bad", image=SHORT_DIGEST_IMAGE), namespace=namespace
        )


async def test_writes_of_our_kinds_fail_closed_when_the_webhook_process_is_gone(
    kube: KubeClient,
    namespace: str,
    crds: list[str],
    tmp_path: Path,
    control_plane: ControlPlane,
) -> None:
    ca = build_ca(common_name="subprocess-ca")
    write_pair(serving_pair(ca), tmp_path)
    port = free_port()
    # As deployed: it follows the cluster's MCPTenants.
    process = await start_webhook_process(
        tmp_path, port=port, ca=ca, kubeconfig=control_plane.kubeconfig
    )
    try:
        async with registration(
            kube, namespace, base_url=f"https://127.0.0.1:{port}", ca_pem=ca.cert_pem
        ):
            await wait_until_enforced(kube, namespace)
            await kube.create(MCPSERVERS, mcpserver_body("while-up"), namespace=namespace)

            process.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(process.wait(), timeout=30) == 0

            with pytest.raises(errors.KubeError) as caught:
                await kube.create(MCPSERVERS, mcpserver_body("while-down"), namespace=namespace)
            assert 'failed calling webhook "mcpserver.moorage.dev"' in caught.value.message
            configmap = {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "unaffected"},
                "data": {"k": "v"},
            }
            created = await kube.create(CONFIGMAPS, configmap, namespace=namespace)
            assert created["data"] == {"k": "v"}
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.stdout is not None
    output = await process.stdout.read()
    events = [
        json.loads(line).get("event") for line in output.splitlines() if line.startswith(b"{")
    ]
    assert "review_finished" in events
    assert "shutdown_requested" in events
