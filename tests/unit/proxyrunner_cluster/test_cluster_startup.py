"""The in-cluster start-up's checks before the cluster is touched, its flags and its settings."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import pytest

from moorage_api.runconfig import load_runconfig
from moorage_core.errors import (
    Conflict,
    Forbidden,
    KubeError,
    ServerError,
    TooManyRequests,
)
from moorage_core.settings import SettingError
from moorage_core.startup import EXIT_FAILED, StartupFailure
from moorage_proxyrunner.config.toolpolicy import ToolOverride
from moorage_proxyrunner.startup.cluster import (
    DEFAULT_READINESS_TIMEOUT,
    EXIT_CONFIG,
    ClusterOptions,
    add_cluster_arguments,
    build_proxy_settings,
    options_from_args,
    prepare,
    run_cluster,
    start_workload,
)
from moorage_proxyrunner.workload.manager import WorkloadManager

if TYPE_CHECKING:
    from moorage_core.kube import KubeClient

RUNCONFIG: dict[str, Any] = {
    "schema_version": "moorage/v1",
    "name": "time",
    "namespace": "ns",
    "owner": {
        "apiVersion": "moorage.dev/v1alpha1",
        "kind": "MCPServer",
        "name": "time",
        "uid": "u",
    },
    "image": "ghcr.io/x/time:1",
    "port": 9090,
    "tools_filter": ["now"],
    "tools_override": {"get_current_time": {"name": "now", "description": "The time"}},
    "endpoint_prefix": "/team",
    "trust_proxy_headers": True,
}


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config")
    add_cluster_arguments(parser)
    return parser.parse_args(list(argv))


def test_flags_become_options() -> None:
    options = options_from_args(
        parse(
            "--config",
            "/rc.json",
            "--k8s-pod-patch",
            '{"spec": {}}',
            "--readiness-timeout",
            "90s",
            "--cluster-domain",
            "k8s.internal",
        )
    )
    assert options == ClusterOptions(
        config=Path("/rc.json"),
        pod_patch='{"spec": {}}',
        readiness_timeout=90.0,
        cluster_domain="k8s.internal",
    )


def test_flags_not_registered_keep_their_defaults() -> None:
    options = options_from_args(argparse.Namespace(config=None))
    assert options.config == Path("/etc/moorage/runconfig.json")
    assert options.readiness_timeout == DEFAULT_READINESS_TIMEOUT
    assert options.pod_patch is None
    assert options.host == "0.0.0.0"


@pytest.mark.parametrize("value", ["soon", "-5s", "0"])
def test_rejects_unusable_readiness_timeouts(value: str) -> None:
    with pytest.raises(SettingError):
        options_from_args(parse(f"--readiness-timeout={value}"))


def test_prepare_reads_the_runconfig_and_the_patch() -> None:
    prepared = prepare(
        ClusterOptions(config=Path("x"), pod_patch='{"spec": {"priority": 1}}'),
        runconfig_text=json.dumps(RUNCONFIG),
    )
    assert prepared.spec.name == "time"
    assert prepared.pod_patch == {"spec": {"priority": 1}}


@pytest.mark.parametrize(
    ("pod_patch", "runconfig", "message"),
    [
        pytest.param("{", RUNCONFIG, "--k8s-pod-patch is not valid JSON", id="patch-json"),
        pytest.param(
            '{"kind": "Pod"}', RUNCONFIG, "'kind' is not a pod template field", id="patch-shape"
        ),
        pytest.param(None, {**RUNCONFIG, "image": ""}, "invalid runconfig", id="runconfig"),
        pytest.param(
            None,
            {**RUNCONFIG, "pod_template_spec": {"spec": {"containers": [{"image": "x"}]}}},
            "pod_template_spec: spec.containers[0].name",
            id="runconfig-template",
        ),
    ],
)
def test_prepare_rejects_unusable_input_with_exit_code_2(
    pod_patch: str | None, runconfig: dict[str, Any], message: str
) -> None:
    with pytest.raises(StartupFailure) as info:
        prepare(
            ClusterOptions(config=Path("x"), pod_patch=pod_patch),
            runconfig_text=json.dumps(runconfig),
        )
    assert message in str(info.value)
    assert info.value.exit_code == EXIT_CONFIG


@pytest.mark.parametrize(
    ("error", "setting", "problem", "hint"),
    [
        pytest.param(
            Forbidden("no", status=403, reason="Forbidden"),
            "the proxy runner's ServiceAccount",
            "403 Forbidden: no",
            "its Role",
            id="forbidden",
        ),
        pytest.param(
            ServerError("etcd timeout", status=500, reason="InternalError"),
            "the apiserver",
            "the apiserver answered 500 InternalError: etcd timeout",
            "restarted",
            id="server-error",
        ),
        pytest.param(
            TooManyRequests("slow down", status=429, reason="TooManyRequests"),
            "the apiserver",
            "the apiserver answered 429 TooManyRequests: slow down",
            "restarted",
            id="too-many-requests",
        ),
        pytest.param(
            Conflict("field manager", status=409, reason="Conflict"),
            "the apiserver",
            "the apiserver answered 409 Conflict: field manager",
            "restarted",
            id="conflict",
        ),
    ],
)
async def test_only_a_refusal_is_blamed_on_the_service_account(
    monkeypatch: pytest.MonkeyPatch, error: KubeError, setting: str, problem: str, hint: str
) -> None:
    async def refuse(self: WorkloadManager) -> None:
        raise error

    monkeypatch.setattr(WorkloadManager, "apply_all", refuse)
    prepared = prepare(ClusterOptions(config=Path("x")), runconfig_text=json.dumps(RUNCONFIG))
    with pytest.raises(StartupFailure) as info:
        await start_workload(cast("KubeClient", object()), prepared)
    assert info.value.setting == setting
    assert info.value.problem == f"cannot apply the workload of ns/time: {problem}"
    assert hint in info.value.hint
    assert info.value.exit_code == EXIT_FAILED


async def test_an_invalid_pod_patch_fails_before_any_cluster_access(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # No credentials anywhere: reaching the cluster would fail differently (exit 1).
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing"))
    config = tmp_path / "runconfig.json"
    config.write_text(json.dumps(RUNCONFIG))
    code = await run_cluster(
        ClusterOptions(config=config, pod_patch='{"spec": {"hostPID": "yes"}}')
    )
    assert code == EXIT_CONFIG
    assert "spec.hostPID: must be a boolean" in capsys.readouterr().out


async def test_a_missing_runconfig_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await run_cluster(ClusterOptions(config=tmp_path / "absent.json")) == EXIT_CONFIG
    assert "cannot read" in capsys.readouterr().out


def test_proxy_settings_come_from_the_runconfig() -> None:
    rc = load_runconfig(json.dumps(RUNCONFIG))
    settings = build_proxy_settings(rc, ClusterOptions(config=Path("x"), allowed_hosts=("a",)))
    assert settings.host == "0.0.0.0"
    assert settings.port == 9090
    assert settings.endpoint_prefix == "/team"
    assert settings.trust_proxy_headers is True
    assert settings.allowed_hosts[-1] == "a", "the flag's hosts come after the RunConfig's"
    assert settings.tool_policy.allowed == frozenset({"now"})
    assert settings.tool_policy.overrides == {
        "get_current_time": ToolOverride(name="now", description="The time")
    }
    assert build_proxy_settings(rc, ClusterOptions(config=Path("x"), port=0)).port == 0
