"""Reading Dockerfiles and .dockerignore the way the image cache needs: the pure parsers."""

from __future__ import annotations

from pathlib import Path

import pytest

from moorage_dev.dockerfiles import (
    context_sources,
    global_arg_defaults,
    is_ignored,
    logical_lines,
    parse_dockerignore,
)

REPO = Path(__file__).resolve().parents[3]

SAMPLE = """\
# syntax=docker/dockerfile:1.7
ARG BASE=python:3.11-slim-bookworm
ARG UV_IMAGE=ghcr.io/astral-sh/uv:0.13.9 OTHER="two words"
ARG NO_DEFAULT
FROM ${UV_IMAGE} AS uv
ARG AFTER_FROM=not-global
FROM ${BASE}
COPY --from=uv /uv /usr/local/bin/uv
COPY pyproject.toml \\
    # a comment inside a continued instruction
    uv.lock ./
COPY --chown=65534:65534 ./src/ /app/src
ADD data.tar /data
COPY pyproject.toml /again
RUN echo done
"""


def test_continued_lines_are_joined_and_comments_dropped() -> None:
    lines = logical_lines(SAMPLE)
    assert "COPY pyproject.toml uv.lock ./" in lines
    assert not any(line.startswith("#") for line in lines)
    assert lines[-1] == "RUN echo done"


def test_only_args_before_the_first_from_are_global() -> None:
    assert global_arg_defaults(SAMPLE) == {
        "BASE": "python:3.11-slim-bookworm",
        "UV_IMAGE": "ghcr.io/astral-sh/uv:0.13.9",
        "OTHER": "two words",
    }


def test_context_sources_skip_other_stages_and_repeat_nothing() -> None:
    assert context_sources(SAMPLE) == ["pyproject.toml", "uv.lock", "src", "data.tar"]


def test_the_main_dockerfile_copies_the_sources_and_the_lock_file() -> None:
    text = (REPO / "docker" / "Dockerfile").read_text()
    sources = context_sources(text)
    assert sources[:2] == ["pyproject.toml", "uv.lock"]
    assert {"README.md", "core/src", "operator/src", "proxyrunner/src"} <= set(sources)
    assert set(global_arg_defaults(text)) == {"PYTHON_IMAGE", "UV_IMAGE"}


RULES = """\
# comment
.git
**/__pycache__
*.log
docs/
!keep.log
"""


@pytest.mark.parametrize(
    ("path", "ignored"),
    [
        pytest.param(".git/config", True, id="below-an-ignored-directory"),
        pytest.param("core/src/x/__pycache__/a.pyc", True, id="double-star-at-any-depth"),
        pytest.param("__pycache__/a.pyc", True, id="double-star-at-the-root"),
        pytest.param("build.log", True, id="star-at-the-root"),
        pytest.param("logs/build.log", False, id="star-stays-within-one-element"),
        pytest.param("docs/x.md", True, id="trailing-slash-pattern"),
        pytest.param("keep.log", False, id="negation-wins-when-last"),
        pytest.param("core/src/x/a.py", False, id="not-matched"),
        pytest.param(".gitignore", False, id="a-name-prefix-is-not-a-match"),
    ],
)
def test_dockerignore_matching(path: str, ignored: bool) -> None:
    assert is_ignored(path, parse_dockerignore(RULES)) is ignored
