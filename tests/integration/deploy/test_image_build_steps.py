"""docker/Dockerfile's builder stage, replayed without Docker.

There is no container engine here, so the image itself is not built. What can be checked is the
part most likely to break: that the files the builder copies (after .dockerignore) are enough
for its `uv sync` commands to build the locked environment, and that every target's entry point
then exists and starts. The builder's ENV is used as written, except for the two paths that only
exist inside the image (the environment's location and the interpreter).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from testkit.dockerfiles import (
    DOCKERFILE,
    DOCKERIGNORE,
    REPO,
    Stage,
    chain,
    ignore_patterns,
    is_ignored,
    last,
    stages,
)

pytestmark = pytest.mark.integration

TARGETS = ("operator", "webhook", "proxyrunner", "registry-api")


def env_assignments(stage: Stage) -> dict[str, str]:
    values: dict[str, str] = {}
    for ins in stage.instructions:
        if ins.keyword == "ENV":
            for pair in ins.args.split():
                key, _, value = pair.partition("=")
                values[key] = value
    return values


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Stage]]:
    """The builder's environment, built from a context filtered by .dockerignore."""
    all_stages = stages(DOCKERFILE.read_text())
    builder = all_stages["builder"]
    root = tmp_path_factory.mktemp("image")
    workdir = root / "src"
    venv = root / "venv"
    ignores = ignore_patterns(DOCKERIGNORE.read_text())
    env = {
        **os.environ,
        **env_assignments(builder),
        "UV_PROJECT_ENVIRONMENT": str(venv),
        "UV_PYTHON": sys.executable,
    }
    env.pop("VIRTUAL_ENV", None)
    for ins in builder.instructions:
        if ins.keyword == "WORKDIR":
            workdir = root / ins.args.lstrip("/")
            workdir.mkdir(parents=True, exist_ok=True)
        elif ins.keyword == "COPY" and not any(f.startswith("--from=") for f in ins.flags):
            *sources, dest = ins.args.split()
            for source in sources:
                for path in [REPO / source, *(REPO / source).rglob("*")]:
                    relative = path.relative_to(REPO).as_posix()
                    if path.is_dir() or is_ignored(relative, ignores):
                        continue
                    base = REPO / source
                    if base.is_dir():  # a folder's contents go into dest
                        target = workdir / dest / path.relative_to(base)
                    elif dest.endswith("/"):
                        target = workdir / dest / path.name
                    else:
                        target = workdir / dest
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(path, target)
        elif ins.keyword == "RUN":
            result = subprocess.run(
                ["bash", "-c", ins.args],
                cwd=workdir,
                env=env,
                capture_output=True,
                text=True,
                check=False,
                timeout=600,
            )
            assert result.returncode == 0, f"RUN {ins.args}: {result.stderr}"
    return venv, all_stages


@pytest.mark.parametrize("target", TARGETS)
def test_entry_point_exists_and_starts(built: tuple[Path, dict[str, Stage]], target: str) -> None:
    venv, all_stages = built
    entrypoint = last(chain(all_stages, target), "ENTRYPOINT")
    assert entrypoint is not None
    path = entrypoint.args.strip('[]"').replace("/opt/moorage", str(venv), 1)
    assert Path(path).is_file(), path
    script = Path(path).name
    module = {
        "moorage-operator": "moorage_operator.__main__",
        "moorage-webhook": "moorage_webhook.__main__",
        "moorage-proxyrunner": "moorage_proxyrunner",
        "moorage-registry-api": "moorage_registryserver",
    }[script]
    # The installed copy, not the repository's sources, is what gets imported.
    result = subprocess.run(
        [str(venv / "bin" / "python"), "-c", f"import {module}; print({module}.__file__)"],
        cwd=venv,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(str(venv)), result.stdout


def test_operator_answers_help(built: tuple[Path, dict[str, Stage]]) -> None:
    venv, _ = built
    result = subprocess.run(
        [str(venv / "bin" / "moorage-operator"), "--help"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "WATCH_NAMESPACES" in result.stdout


def test_development_tools_stay_out(built: tuple[Path, dict[str, Stage]]) -> None:
    venv, _ = built
    for tool in ("pytest", "mypy", "ruff", "hypothesis"):
        assert not (venv / "bin" / tool).exists(), tool
