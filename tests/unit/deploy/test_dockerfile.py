"""docker/Dockerfile and .dockerignore, read as text (no Docker engine is needed or used).

The Dockerfile is parsed into stages; each image target is followed through the stages it builds
on to check what it would run as and run. Every COPY from the build context must name something
that exists in the repository and that .dockerignore lets into the context, and together the
COPYs must bring everything the wheel is built from.
"""

from __future__ import annotations

import json
import re
import tomllib

import pytest
from testkit.dockerfiles import (
    DOCKERFILE,
    DOCKERIGNORE,
    REPO,
    Instruction,
    Stage,
    chain,
    context_copies,
    ignore_patterns,
    instructions,
    is_ignored,
    last,
    stages,
)

PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
TARGETS = {
    "operator": "moorage-operator",
    "webhook": "moorage-webhook",
    "proxyrunner": "moorage-proxyrunner",
    "registry-api": "moorage-registry-api",
}


@pytest.fixture(scope="module")
def all_stages() -> dict[str, Stage]:
    return stages(DOCKERFILE.read_text())


@pytest.fixture(scope="module")
def ignores() -> list[tuple[bool, re.Pattern[str]]]:
    return ignore_patterns(DOCKERIGNORE.read_text())


def test_every_target_exists(all_stages: dict[str, Stage]) -> None:
    assert set(TARGETS) <= set(all_stages)


@pytest.mark.parametrize("target", TARGETS)
def test_target_runs_as_nobody(all_stages: dict[str, Stage], target: str) -> None:
    user = last(chain(all_stages, target), "USER")
    assert user is not None
    assert user.args in ("65534", "65534:65534")


@pytest.mark.parametrize("target", TARGETS)
def test_target_runs_its_console_script(all_stages: dict[str, Stage], target: str) -> None:
    entrypoint = last(chain(all_stages, target), "ENTRYPOINT")
    assert entrypoint is not None
    argv = json.loads(entrypoint.args)  # exec form: signals reach the process itself
    script = TARGETS[target]
    assert argv == [f"/opt/moorage/bin/{script}"]
    assert script in PYPROJECT["project"]["scripts"]
    builder = [i.args for i in all_stages["builder"].instructions if i.keyword == "ENV"]
    assert any("UV_PROJECT_ENVIRONMENT=/opt/moorage" in e for e in builder)


@pytest.mark.parametrize("target", TARGETS)
def test_target_is_read_only_friendly(all_stages: dict[str, Stage], target: str) -> None:
    env = " ".join(
        i.args for s in chain(all_stages, target) for i in s.instructions if i.keyword == "ENV"
    )
    assert "PYTHONDONTWRITEBYTECODE=1" in env
    assert "HOME=/tmp" in env
    workdir = last(chain(all_stages, target), "WORKDIR")
    assert workdir is not None
    assert workdir.args == "/tmp"
    base = chain(all_stages, target)[0].base
    assert base == "${PYTHON_IMAGE}"


def test_base_images_are_pinned_python_slim() -> None:
    text = DOCKERFILE.read_text()
    python = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", text, flags=re.MULTILINE)
    uv = re.search(r"^ARG UV_IMAGE=(\S+)$", text, flags=re.MULTILINE)
    assert python is not None
    assert python.group(1).startswith("python:3.11-slim")
    assert uv is not None
    assert re.fullmatch(r"ghcr\.io/astral-sh/uv:\d+\.\d+\.\d+", uv.group(1))


def test_builder_installs_the_locked_environment_without_dev_tools(
    all_stages: dict[str, Stage],
) -> None:
    runs = [i.args for i in all_stages["builder"].instructions if i.keyword == "RUN"]
    assert any(
        "uv sync --frozen --no-dev --no-editable --reinstall-package moorage" in r for r in runs
    )
    assert all("--frozen" in r for r in runs if "uv sync" in r)
    for stage in all_stages.values():
        for ins in stage.instructions:
            if ins.keyword == "RUN":
                assert "pip install" not in ins.args, "install from uv.lock only"


def test_only_the_runtime_environment_reaches_the_images(all_stages: dict[str, Stage]) -> None:
    copies = [
        (ins.flags, ins.args)
        for name in ("runtime", *TARGETS)
        for ins in all_stages[name].instructions
        if ins.keyword in ("COPY", "ADD")
    ]
    assert copies == [(("--from=builder",), "/opt/moorage /opt/moorage")]


def test_every_copied_path_exists_and_reaches_the_context(
    all_stages: dict[str, Stage], ignores: list[tuple[bool, re.Pattern[str]]]
) -> None:
    sources = context_copies(all_stages)
    assert sources
    for source in sources:
        assert (REPO / source).exists(), f"COPY {source}: no such path in the repository"
        assert not is_ignored(source, ignores), f"COPY {source}: excluded by .dockerignore"
        path = REPO / source
        files = [path] if path.is_file() else [p for p in path.rglob("*.py")]
        for file in files:
            relative = file.relative_to(REPO).as_posix()
            if "__pycache__" not in relative:
                assert not is_ignored(relative, ignores), relative


def test_everything_the_wheel_is_built_from_is_copied(all_stages: dict[str, Stage]) -> None:
    sources = {s.rstrip("/") for s in context_copies(all_stages)}
    needed = {"pyproject.toml", "uv.lock", PYPROJECT["project"]["readme"]}
    needed |= set(PYPROJECT["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"])
    for path in needed:
        assert any(path == s or path.startswith(f"{s}/") for s in sources), path


def test_the_context_leaves_out_what_images_do_not_need(
    ignores: list[tuple[bool, re.Pattern[str]]],
) -> None:
    for path in (
        ".git/config",
        ".venv/bin/python",
        "tests/unit/deploy/test_dockerfile.py",
        "deploy/base/kustomization.yaml",
        "core/src/moorage_core/__pycache__/kube.cpython-311.pyc",
        "bench/README.md",
    ):
        assert is_ignored(path, ignores), path


@pytest.mark.parametrize(
    ("patterns", "path", "ignored"),
    [
        ("*\n!core/src", "core/src/moorage_core/kube.py", False),
        ("*\n!core/src", "core/README.md", True),
        ("*\n!core/src\n**/__pycache__", "core/src/x/__pycache__/a.pyc", True),
        ("**/*.pyc", "a/b/c.pyc", True),
        ("**/*.pyc", "c.pyc", True),
        ("docs", "docs/x.md", True),
        ("docs", "core/docs", False),
        ("", "anything", False),
    ],
)
def test_the_dockerignore_reader_follows_dockers_rules(
    patterns: str, path: str, ignored: bool
) -> None:
    assert is_ignored(path, ignore_patterns(patterns)) is ignored


def test_the_parser_joins_continued_lines_and_reads_flags() -> None:
    parsed = instructions(
        "FROM a AS b\n# note\nRUN --mount=type=cache,target=/x \\\n    echo 1 \\\n    && echo 2\n"
    )
    assert parsed == [
        Instruction("FROM", (), "a AS b"),
        Instruction("RUN", ("--mount=type=cache,target=/x",), "echo 1 && echo 2"),
    ]
