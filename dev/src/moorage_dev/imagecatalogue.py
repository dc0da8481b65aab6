"""Which images `moorage-dev images build` makes, under which names, from which Dockerfiles.

Moorage's four images come from the targets of `docker/Dockerfile`, tagged with the `moorage`
package version (the names `deploy/` uses). The example and test MCP servers come from
`docker/examples/<name>/Dockerfile`, tagged with the version of the server they pin, so that a
manifest naming an image names what the Dockerfile really installs; so does the Redis the
examples' replicas share their sessions through. Every version is read from where it is pinned
(pyproject.toml, the examples' lock files, the Redis Dockerfile's `REDIS_VERSION`); nothing here
repeats one.

Pure apart from `load_catalogue`, which reads those few files.
"""

from __future__ import annotations

import json
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

from moorage_dev.dockerfiles import global_arg_defaults

MOORAGE_REGISTRY = "ghcr.io/moorage"
EXAMPLES_REGISTRY = "ghcr.io/moorage-dev"
MAIN_DOCKERFILE = "docker/Dockerfile"
EXAMPLES_DIR = "docker/examples"
MOORAGE_TARGETS = ("operator", "webhook", "proxyrunner", "registry-api")

TIME_SERVER = "mcp-server-time"
EVERYTHING_SERVER = "mcp-server-everything"
FAILING_SERVER = "mcp-server-failing"
TOOLBOX_SERVER = "mcp-server-toolbox"
REDIS = "redis"
EXAMPLE_SERVERS = (TIME_SERVER, EVERYTHING_SERVER, TOOLBOX_SERVER, FAILING_SERVER, REDIS)
"""Every image of `docker/examples/`: the MCP servers, and Redis (not an MCP server: the session
storage of the examples with several proxy replicas)."""
# The npm package the everything image installs; its pinned version is the image's tag.
EVERYTHING_PACKAGE = "@modelcontextprotocol/server-everything"


@dataclass(frozen=True, slots=True)
class ImageSpec:
    """One image to build: `docker build -f <dockerfile> [--target <target>] -t <reference> <context>`."""

    name: str
    """Short name for `--only` and for the archive file: `operator`, `mcp-server-time`, ..."""
    reference: str
    """The full name it is tagged and imported with, e.g. `ghcr.io/moorage/moorage-operator:0.1.0`."""
    dockerfile: str
    """Repository-relative path of the Dockerfile."""
    context: str
    """Repository-relative build context directory."""
    target: str | None = None
    """The Dockerfile stage to build; None builds the last one."""


def moorage_image(target: str, *, version: str) -> str:
    return f"{MOORAGE_REGISTRY}/moorage-{target}:{version}"


def example_image(server: str, *, version: str) -> str:
    return f"{EXAMPLES_REGISTRY}/{server}:{version}"


def build_catalogue(
    *, moorage_version: str, time_version: str, everything_version: str, redis_version: str
) -> tuple[ImageSpec, ...]:
    """Every image, Moorage's first, in the order they are built."""
    ours = tuple(
        ImageSpec(
            name=target,
            reference=moorage_image(target, version=moorage_version),
            dockerfile=MAIN_DOCKERFILE,
            context=".",
            target=target,
        )
        for target in MOORAGE_TARGETS
    )
    tags = {
        TIME_SERVER: time_version,
        EVERYTHING_SERVER: everything_version,
        # The failing and toolbox servers are ours: they go with Moorage's version.
        TOOLBOX_SERVER: moorage_version,
        FAILING_SERVER: moorage_version,
        REDIS: redis_version,
    }
    examples = tuple(
        ImageSpec(
            name=server,
            reference=example_image(server, version=tags[server]),
            dockerfile=f"{EXAMPLES_DIR}/{server}/Dockerfile",
            context=f"{EXAMPLES_DIR}/{server}",
        )
        for server in EXAMPLE_SERVERS
    )
    return ours + examples


def select(catalogue: tuple[ImageSpec, ...], only: list[str] | None) -> tuple[ImageSpec, ...]:
    """The images named in `only` (short names or full references), all when it is empty."""
    if not only:
        return catalogue
    known = {spec.name for spec in catalogue} | {spec.reference for spec in catalogue}
    unknown = [name for name in only if name not in known]
    if unknown:
        names = ", ".join(spec.name for spec in catalogue)
        raise ValueError(f"unknown image {', '.join(unknown)}: choose from {names}")
    return tuple(s for s in catalogue if s.name in only or s.reference in only)


def pinned_requirement(text: str, *, package: str) -> str:
    """The version a pip requirements file pins `package` to (`package==X`)."""
    pattern = re.compile(rf"^{re.escape(package)}==([^\s;\\]+)", re.IGNORECASE | re.MULTILINE)
    match = pattern.search(text)
    if match is None:
        raise ValueError(f"{package} is not pinned with == in the requirements")
    return match.group(1)


def pinned_npm_dependency(package_json: str, *, package: str) -> str:
    """The exact version a package.json asks for `package` (a range is refused: it is a tag)."""
    data = json.loads(package_json)
    version = data.get("dependencies", {}).get(package)
    if not isinstance(version, str) or not re.fullmatch(r"\d+(\.\d+)*", version):
        raise ValueError(f"{package} must be pinned to an exact version in package.json")
    return version


def pinned_arg(dockerfile: str, *, name: str) -> str:
    """The default of a Dockerfile's global `ARG name=...` (a version it installs)."""
    value = global_arg_defaults(dockerfile).get(name)
    if not value:
        raise ValueError(f"the Dockerfile declares no default for ARG {name} before FROM")
    return value


def project_version(pyproject: str) -> str:
    version = tomllib.loads(pyproject)["project"]["version"]
    assert isinstance(version, str)
    return version


def load_catalogue(repo: Path) -> tuple[ImageSpec, ...]:
    """The catalogue with the versions read from the repository at `repo`."""
    examples = repo / EXAMPLES_DIR
    return build_catalogue(
        moorage_version=project_version((repo / "pyproject.toml").read_text()),
        time_version=pinned_requirement(
            (examples / TIME_SERVER / "requirements.txt").read_text(), package=TIME_SERVER
        ),
        everything_version=pinned_npm_dependency(
            (examples / EVERYTHING_SERVER / "package.json").read_text(),
            package=EVERYTHING_PACKAGE,
        ),
        redis_version=pinned_arg(
            (examples / REDIS / "Dockerfile").read_text(), name="REDIS_VERSION"
        ),
    )
