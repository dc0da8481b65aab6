"""Local git repositories for tests, driven by the real `git` binary.

`GitRepo(path)` creates a repository with branch `main`; `commit()` writes files and commits
them, `tag()` adds an annotated tag; `url` is its `file://` URL. No network.
"""

from __future__ import annotations

import subprocess
from pathlib import Path


class GitRepo:
    """A repository with one branch `main`, written by `commit()`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.mkdir(parents=True, exist_ok=True)
        self.git("init", "-q", "-b", "main")
        self.git("config", "user.email", "test@example.com")
        self.git("config", "user.name", "test")
        self.git("config", "commit.gpgsign", "false")

    @property
    def url(self) -> str:
        return self.path.as_uri()

    def git(self, *args: str) -> str:
        done = subprocess.run(
            ["git", *args], cwd=self.path, check=True, capture_output=True, text=True
        )
        return done.stdout.strip()

    def commit(self, files: dict[str, str], *, message: str = "update") -> str:
        """Write `files`, commit them; the new commit's hash."""
        for name, text in files.items():
            target = self.path / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
            self.git("add", name)
        self.git("commit", "-q", "-m", message)
        return self.git("rev-parse", "HEAD")

    def tag(self, name: str) -> None:
        self.git("tag", "-a", name, "-m", name)
