"""The image catalogue: names, versions read from where they are pinned, and agreement with the
manifests that use the images."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from moorage_dev.__main__ import main
from moorage_dev.dockerfiles import global_arg_defaults
from moorage_dev.imagecatalogue import (
    EXAMPLE_SERVERS,
    MOORAGE_TARGETS,
    build_catalogue,
    load_catalogue,
    pinned_arg,
    pinned_npm_dependency,
    pinned_requirement,
    project_version,
    select,
)

REPO = Path(__file__).resolve().parents[3]


def _catalogue() -> dict[str, str]:
    return {spec.name: spec.reference for spec in load_catalogue(REPO)}


def test_moorage_images_are_named_with_the_package_version() -> None:
    version = project_version((REPO / "pyproject.toml").read_text())
    specs = build_catalogue(
        moorage_version="9.8.7", time_version="1", everything_version="2", redis_version="7"
    )
    ours = {s.name: s for s in specs if s.name in MOORAGE_TARGETS}
    assert ours["registry-api"].reference == "ghcr.io/moorage/moorage-registry-api:9.8.7"
    assert ours["registry-api"].target == "registry-api"
    assert all(s.dockerfile == "docker/Dockerfile" and s.context == "." for s in ours.values())
    assert _catalogue()["operator"] == f"ghcr.io/moorage/moorage-operator:{version}"


def test_example_images_are_tagged_with_the_version_they_pin() -> None:
    specs = {
        s.name: s
        for s in build_catalogue(
            moorage_version="0.9.0",
            time_version="2025.9.25",
            everything_version="2025.9.24",
            redis_version="7.0.15",
        )
    }
    assert specs["mcp-server-time"].reference == "ghcr.io/moorage-dev/mcp-server-time:2025.9.25"
    assert specs["mcp-server-everything"].reference.endswith(":2025.9.24")
    assert specs["mcp-server-failing"].reference == "ghcr.io/moorage-dev/mcp-server-failing:0.9.0"
    assert specs["mcp-server-time"].context == "docker/examples/mcp-server-time"
    assert specs["mcp-server-time"].target is None
    assert specs["redis"].reference == "ghcr.io/moorage-dev/redis:7.0.15"
    assert specs["redis"].dockerfile == "docker/examples/redis/Dockerfile"


def test_the_redis_image_is_tagged_with_the_version_its_dockerfile_installs() -> None:
    assert (
        pinned_arg("ARG PYTHON_IMAGE=x\nARG REDIS_VERSION=7.0.15\nFROM x\n", name="REDIS_VERSION")
        == "7.0.15"
    )
    with pytest.raises(ValueError, match="REDIS_VERSION"):
        pinned_arg("FROM x\nARG REDIS_VERSION=7\n", name="REDIS_VERSION")
    dockerfile = (REPO / "docker" / "examples" / "redis" / "Dockerfile").read_text()
    version = pinned_arg(dockerfile, name="REDIS_VERSION")
    assert _catalogue()["redis"] == f"ghcr.io/moorage-dev/redis:{version}"


def test_every_catalogued_dockerfile_exists_and_takes_the_same_base_defaults() -> None:
    main = global_arg_defaults((REPO / "docker" / "Dockerfile").read_text())
    for spec in load_catalogue(REPO):
        dockerfile = REPO / spec.dockerfile
        assert dockerfile.is_file(), spec.dockerfile
        defaults = global_arg_defaults(dockerfile.read_text())
        assert defaults["PYTHON_IMAGE"] == main["PYTHON_IMAGE"], spec.dockerfile
        if "UV_IMAGE" in defaults:
            assert defaults["UV_IMAGE"] == main["UV_IMAGE"], spec.dockerfile


@pytest.mark.parametrize(
    ("only", "names"),
    [
        pytest.param(None, [*MOORAGE_TARGETS, *EXAMPLE_SERVERS], id="all-by-default"),
        pytest.param(
            ["webhook", "mcp-server-time"], ["webhook", "mcp-server-time"], id="short-names"
        ),
        pytest.param(
            ["ghcr.io/moorage/moorage-proxyrunner:0.1.0"], ["proxyrunner"], id="reference"
        ),
    ],
)
def test_selecting_images(only: list[str] | None, names: list[str]) -> None:
    specs = build_catalogue(
        moorage_version="0.1.0", time_version="1", everything_version="2", redis_version="7"
    )
    assert [s.name for s in select(specs, only)] == names


def test_selecting_an_unknown_image_names_the_choices() -> None:
    specs = build_catalogue(
        moorage_version="0.1.0", time_version="1", everything_version="2", redis_version="7"
    )
    with pytest.raises(ValueError, match=r"unknown image nginx: choose from operator, webhook"):
        select(specs, ["nginx"])


def test_pinned_versions_are_read_exactly_and_ranges_refused() -> None:
    text = (
        "anyio==4.1 \\\n    --hash=sha256:aa\nmcp-server-time==2025.9.25 \\\n    --hash=sha256:bb\n"
    )
    assert pinned_requirement(text, package="mcp-server-time") == "2025.9.25"
    with pytest.raises(ValueError, match="not pinned"):
        pinned_requirement("mcp-server-time>=1\n", package="mcp-server-time")
    package = json.dumps({"dependencies": {"x": "1.2.3", "y": "^1.2.3"}})
    assert pinned_npm_dependency(package, package="x") == "1.2.3"
    with pytest.raises(ValueError, match="exact version"):
        pinned_npm_dependency(package, package="y")


def _yaml_documents(path: Path) -> list[Any]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def test_the_deploy_manifests_name_the_images_the_command_builds() -> None:
    built = _catalogue()
    for component in ("operator", "webhook"):
        kustomization = _yaml_documents(
            REPO / "deploy" / "base" / component / "kustomization.yaml"
        )[0]
        (image,) = kustomization["images"]
        assert f"{image['newName']}:{image['newTag']}" == built[component]
    deployment = _yaml_documents(REPO / "deploy" / "base" / "operator" / "deployment.yaml")[0]
    env = {
        e["name"]: e.get("value")
        for c in deployment["spec"]["template"]["spec"]["containers"]
        for e in c.get("env", [])
    }
    assert env["PROXYRUNNER_IMAGE"] == built["proxyrunner"]
    assert env["REGISTRY_API_IMAGE"] == built["registry-api"]


def test_the_example_servers_use_images_the_command_builds() -> None:
    built = set(_catalogue().values())
    examples = REPO / "deploy" / "examples"
    images = {
        doc["spec"]["image"]
        for path in examples.glob("mcpserver-*.yaml")
        for doc in _yaml_documents(path)
        if doc.get("kind") == "MCPServer"
    }
    assert images
    assert images <= built
    # What runs beside the servers (the Redis their replicas share) is built as well.
    pods = {
        container["image"]
        for path in examples.glob("*.yaml")
        for doc in _yaml_documents(path)
        if doc.get("kind") == "Deployment"
        for container in doc["spec"]["template"]["spec"]["containers"]
    }
    assert pods <= built
    registry = _yaml_documents(examples / "mcpregistry-configmap.yaml")[0]
    entries = json.loads(registry["data"]["registry.json"])["servers"].values()
    assert {entry["image"] for entry in entries} <= built


def test_the_http_examples_match_what_their_servers_serve() -> None:
    # The everything server listens on $PORT (3001 in its image) and takes its transport as first
    # argument; the toolbox server takes its transport, --host and --port.
    dockerfile = (REPO / "docker" / "examples" / "mcp-server-everything" / "Dockerfile").read_text()
    assert "PORT=3001" in dockerfile
    expected = {
        "ghcr.io/moorage-dev/mcp-server-everything": {"sse": ["sse"]},
        "ghcr.io/moorage-dev/mcp-server-toolbox": {
            "streamable-http": ["http", "--host=0.0.0.0", "--port=3001"]
        },
    }
    seen: set[str] = set()
    for path in (REPO / "deploy" / "examples").glob("mcpserver-*.yaml"):
        for doc in _yaml_documents(path):
            spec = doc["spec"]
            if spec["transport"] == "stdio":
                continue
            image = spec["image"].rpartition(":")[0]
            assert spec["targetPort"] == 3001, path.name
            assert spec["args"] == expected[image][spec["transport"]], path.name
            seen.add(spec["transport"])
    assert seen == {"sse", "streamable-http"}


def test_the_command_refuses_an_unknown_image_before_building_anything(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["images", "build", "--only", "nginx"]) == 2
    assert "unknown image nginx" in capsys.readouterr().err
