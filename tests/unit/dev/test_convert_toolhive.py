"""The converter from the incumbent operator's resources: what maps, what is reported, the CLI."""

from __future__ import annotations

import argparse
import io
from pathlib import Path
from typing import Any

import pytest
import yaml

from moorage_dev.convertcommands import EXIT_LEFT_BEHIND, EXIT_UNREADABLE, run_convert_command
from moorage_dev.converting import Conversion, convert_documents

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "toolhive"


def convert_fixture(name: str) -> Conversion:
    return convert_documents(yaml.safe_load_all((FIXTURES / name).read_text()))


def incumbent(kind: str, spec: dict[str, Any], *, version: str = "v1beta1") -> dict[str, Any]:
    return {
        "apiVersion": f"toolhive.stacklok.dev/{version}",
        "kind": kind,
        "metadata": {"name": "x", "namespace": "team"},
        "spec": spec,
    }


def converted_spec(doc: dict[str, Any]) -> dict[str, Any]:
    result = convert_documents([doc])
    assert result.dropped == [], [str(d) for d in result.dropped]
    [out] = result.documents
    return dict(out["spec"])


@pytest.mark.parametrize(
    ("fixture", "kinds", "dropped"),
    [
        pytest.param("server-stdio.yaml", ["MCPServer"], [], id="stdio"),
        pytest.param("server-sse-env.yaml", ["MCPServer"], [], id="sse-env"),
        pytest.param(
            "server-tool-filter.yaml", ["MCPToolConfig", "MCPServer"], [], id="tool-filter"
        ),
        pytest.param("server-pod-template.yaml", ["MCPServer"], [], id="pod-template"),
        pytest.param(
            "server-overrides.yaml",
            ["MCPServer"],
            ["MCPServer/forge: spec.resourceOverrides.proxyDeployment.imagePullSecrets"],
            id="overrides",
        ),
        pytest.param("server-v1alpha1-auth.yaml", ["MCPServer"], [], id="v1alpha1-auth"),
        pytest.param(
            "registry-configmap.yaml",
            ["ConfigMap", "MCPRegistry"],
            [
                "MCPRegistry/catalogue: spec.displayName",
                "MCPRegistry/catalogue: spec.configYAML.auth",
                "MCPRegistry/catalogue: spec.configYAML.database",
                "MCPRegistry/catalogue: spec.configYAML.registries",
            ],
            id="registry",
        ),
        pytest.param(
            "unsupported.yaml",
            ["MCPServer"],
            [
                "MCPGroup/research: -",
                "MCPRemoteProxy/remote-search: -",
                "MCPServer/linked: spec.oidcConfigRef",
                "MCPServer/linked: spec.telemetryConfigRef",
                "MCPServer/linked: spec.groupRef",
                "MCPServer/linked: spec.sessionStorage",
                "MCPServer/linked: spec.rateLimiting",
            ],
            id="unsupported",
        ),
    ],
)
def test_each_fixture_converts_and_reports_what_it_leaves_behind_by_name(
    fixture: str, kinds: list[str], dropped: list[str]
) -> None:
    result = convert_fixture(fixture)
    assert [d["kind"] for d in result.documents] == kinds
    assert [str(d).split(": ", 2)[0] + ": " + d.field for d in result.dropped] == dropped
    assert all(d.reason for d in result.dropped)
    for doc in result.documents:
        if doc["kind"] != "ConfigMap":
            assert doc["apiVersion"] == "moorage.dev/v1alpha1"


def test_names_namespaces_labels_and_annotations_are_kept() -> None:
    doc = incumbent("MCPServer", {"image": "ghcr.io/x/y:1"})
    doc["metadata"].update(
        labels={"team": "a"}, annotations={"note": "b"}, uid="u", resourceVersion="9"
    )
    doc["status"] = {"phase": "Running"}
    [out] = convert_documents([doc]).documents
    assert out["metadata"] == {
        "name": "x",
        "namespace": "team",
        "labels": {"team": "a"},
        "annotations": {"note": "b"},
    }
    assert "status" not in out


@pytest.mark.parametrize(
    ("spec", "version", "ports"),
    [
        pytest.param({"proxyPort": 9090, "mcpPort": 3000}, "v1beta1", (9090, 3000), id="v1beta1"),
        pytest.param({"port": 9090, "targetPort": 3000}, "v1alpha1", (9090, 3000), id="v1alpha1"),
    ],
)
def test_ports_map_from_either_version(
    spec: dict[str, Any], version: str, ports: tuple[int, int]
) -> None:
    out = converted_spec(
        incumbent("MCPServer", {"image": "ghcr.io/x/y:1", **spec}, version=version)
    )
    assert (out["port"], out["targetPort"]) == ports


def test_a_configmap_permission_profile_takes_our_spelling() -> None:
    profile = {"type": "configmap", "name": "egress", "key": "profile.json"}
    out = converted_spec(
        incumbent("MCPServer", {"image": "ghcr.io/x/y:1", "permissionProfile": profile})
    )
    assert out["permissionProfile"] == {
        "type": "configMap",
        "name": "egress",
        "key": "profile.json",
    }


def test_a_kubernetes_service_account_without_namespace_defaults_to_the_servers() -> None:
    oidc = {"type": "kubernetes", "kubernetes": {"serviceAccount": "agent"}}
    out = converted_spec(
        incumbent("MCPServer", {"image": "ghcr.io/x/y:1", "oidcConfig": oidc}, version="v1alpha1")
    )
    assert out["oidcConfig"]["kubernetes"]["allowedServiceAccounts"] == ["team/agent"]


def test_inline_oidc_fields_without_a_place_are_reported() -> None:
    oidc = {
        "type": "inline",
        "inline": {"issuer": "https://id.example.com", "audience": "mcp", "clientSecret": "s"},
    }
    result = convert_documents(
        [incumbent("MCPServer", {"image": "ghcr.io/x/y:1", "oidcConfig": oidc}, version="v1alpha1")]
    )
    assert [str(d) for d in result.dropped] == [
        "MCPServer/x: spec.oidcConfig.inline.clientSecret: no equivalent in inline OIDC"
    ]
    assert result.documents[0]["spec"]["oidcConfig"] == {
        "type": "inline",
        "inline": {"issuer": "https://id.example.com", "audience": "mcp"},
    }


def test_the_registry_configmap_source_comes_from_the_mounted_volume() -> None:
    [_, registry] = convert_fixture("registry-configmap.yaml").documents
    assert registry["spec"] == {
        "source": {"type": "configMap", "configMap": {"name": "catalogue", "key": "registry.json"}},
        "syncPolicy": {"interval": "2h"},
        "filter": {"tags": {"include": ["production"], "exclude": ["experimental"]}},
    }


def test_a_v1alpha1_registry_git_source_converts() -> None:
    spec = {
        "source": {
            "type": "git",
            "format": "upstream",
            "git": {"repository": "https://git.example.com/r.git", "branch": "main"},
        },
        "syncPolicy": {"interval": "30m"},
    }
    out = converted_spec(incumbent("MCPRegistry", spec, version="v1alpha1"))
    assert out == {
        "source": {
            "type": "git",
            "git": {"repository": "https://git.example.com/r.git", "branch": "main"},
            "format": "upstream",
        },
        "syncPolicy": {"interval": "30m"},
    }


def test_a_second_registry_source_is_reported_by_name() -> None:
    config = yaml.safe_dump(
        {
            "sources": [
                {"name": "a", "git": {"repository": "https://git.example.com/a.git"}},
                {"name": "b", "git": {"repository": "https://git.example.com/b.git"}},
            ]
        }
    )
    result = convert_documents([incumbent("MCPRegistry", {"configYAML": config})])
    assert [str(d) for d in result.dropped] == [
        "MCPRegistry/x: spec.configYAML.sources[1]: an MCPRegistry has one source; 'b' needs an "
        "MCPRegistry of its own"
    ]


def test_tool_annotation_overrides_are_reported_and_the_rest_kept() -> None:
    overrides = {
        "fetch": {"name": "get", "annotations": {"readOnlyHint": True}},
        "drop": {"annotations": {"destructiveHint": True}},
    }
    result = convert_documents([incumbent("MCPToolConfig", {"toolsOverride": overrides})])
    assert [str(d) for d in result.dropped] == [
        "MCPToolConfig/x: spec.toolsOverride.fetch.annotations: only a tool's name and "
        "description can be overridden",
        "MCPToolConfig/x: spec.toolsOverride.drop.annotations: only a tool's name and "
        "description can be overridden",
    ]
    assert result.documents[0]["spec"] == {"toolsOverride": {"fetch": {"name": "get"}}}


def test_unknown_fields_are_reported_not_guessed() -> None:
    result = convert_documents(
        [incumbent("MCPServer", {"image": "ghcr.io/x/y:1", "futureKnob": True})]
    )
    assert [str(d) for d in result.dropped] == [
        "MCPServer/x: spec.futureKnob: not a field Moorage knows; left out"
    ]


def test_a_result_our_api_refuses_is_reported_and_not_written() -> None:
    result = convert_documents([incumbent("MCPServer", {"transport": "stdio"})])
    assert result.documents == []
    [dropped] = result.dropped
    assert (dropped.kind, dropped.name, dropped.field) == ("MCPServer", "x", "-")
    assert dropped.reason.startswith("Moorage's API refuses the result: ")
    assert "image" in dropped.reason


def test_other_documents_pass_through_and_empty_ones_are_skipped() -> None:
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}}
    assert convert_documents([secret, None]).documents == [secret]


def run_cli(tmp_path: Path, text: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    source = tmp_path / "their.yaml"
    source.write_text(text)
    output = tmp_path / "ours.yaml"
    code = run_convert_command(
        argparse.Namespace(filename=str(source), output=output), stdin=io.StringIO()
    )
    written = output.read_text() if output.exists() else ""
    return code, written, capsys.readouterr().err


def test_cli_writes_the_documents_and_exits_zero_when_everything_carried_over(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, written, err = run_cli(
        tmp_path, (FIXTURES / "server-tool-filter.yaml").read_text(), capsys
    )
    assert code == 0
    assert [d["kind"] for d in yaml.safe_load_all(written)] == ["MCPToolConfig", "MCPServer"]
    assert err == "converted 2 document(s)\nevery field was carried over\n"


def test_cli_lists_every_field_left_behind_and_says_so_in_its_status(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, written, err = run_cli(tmp_path, (FIXTURES / "unsupported.yaml").read_text(), capsys)
    assert code == EXIT_LEFT_BEHIND
    assert [d["metadata"]["name"] for d in yaml.safe_load_all(written)] == ["linked"]
    assert "not carried over (7):\n" in err
    assert "  MCPRemoteProxy/remote-search: -: remote proxies are not implemented yet" in err


def test_cli_refuses_input_that_is_not_yaml(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, written, err = run_cli(tmp_path, "spec: [unclosed", capsys)
    assert (code, written) == (EXIT_UNREADABLE, "")
    assert err.startswith(f"moorage-dev convert: cannot read {tmp_path / 'their.yaml'}: ")
