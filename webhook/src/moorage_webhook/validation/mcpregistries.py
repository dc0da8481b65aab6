"""Rules for MCPRegistry that its CRD schema cannot state (spec §2.3, §5).

Pure: no I/O. The model already holds `source.type` to the matching source field, at most one of
branch/tag/commit, and a sync interval of at least a minute (those are also CEL rules of the CRD).
This module adds:

- the git repository URL has a host and path (or an absolute `file:///` path), plain `http://` is
  refused, and no password travels in it (there is `auth.passwordSecretRef` for that);
- unless REGISTRY_ALLOW_LOCAL_SOURCES is on, no `file://` and no host that is the operator's own
  pod or a metadata service by its text (`localhost`, loopback, link-local, unspecified IPs;
  `moorage_api.sources`; the operator checks resolved addresses again when it fetches);
- branch and tag are valid git ref names, a commit is a full SHA (a remote serves fetches by id
  only for a full one), `path` stays inside the repository;
- `auth` with a non-https repository, and an `interval` that automatic syncing never uses, get
  warnings;
- every filter glob has the syntax of Go's `path.Match`; a pattern both included and excluded
  gets a warning.
"""

from __future__ import annotations

import functools
from typing import Any

from moorage_api.mcpregistry import GitSource, GlobFilter, MCPRegistry
from moorage_api.sources import local_source_problem
from moorage_webhook.validation.globs import glob_problem
from moorage_webhook.validation.locations import (
    git_commit_problem,
    git_ref_problem,
    git_repository_problem,
    has_url_password,
)
from moorage_webhook.validation.objects import validate_object
from moorage_webhook.validation.verdict import Findings, Verdict, quoted

DEFAULT_INTERVAL = "1h"


def _check_git(git: GitSource, out: Findings, *, allow_local_sources: bool) -> None:
    base = "spec.source.git"
    if (why := git_repository_problem(git.repository)) is not None or (
        not allow_local_sources and (why := local_source_problem(git.repository)) is not None
    ):
        out.error(f"{base}.repository", why)
    elif has_url_password(git.repository):
        out.error(
            f"{base}.repository",
            "must not contain a password (anyone who can read the MCPRegistry would see it); "
            "use auth.passwordSecretRef",
        )
    for field, value in (("branch", git.branch), ("tag", git.tag)):
        if value is not None and (why := git_ref_problem(value)) is not None:
            out.error(f"{base}.{field}", why)
    if git.commit is not None and (why := git_commit_problem(git.commit)) is not None:
        out.error(f"{base}.commit", why)
    parts = git.path.split("/")
    if ".." in parts:
        out.error(f"{base}.path", f"{quoted(git.path)} must stay inside the repository (no '..')")
    elif git.path.endswith("/") or parts[-1] in {"", "."}:
        out.error(f"{base}.path", f"{quoted(git.path)} must name a file, not a directory")
    if git.auth is not None and not git.repository.startswith("https://"):
        out.warn(
            f"{base}.auth",
            "username/password authentication is only used for https:// repositories",
        )


def _check_globs(name: str, globs: GlobFilter | None, out: Findings) -> None:
    if globs is None:
        return
    base = f"spec.filter.{name}"
    for part, patterns in (("include", globs.include), ("exclude", globs.exclude)):
        for index, pattern in enumerate(patterns):
            if (why := glob_problem(pattern)) is not None:
                out.error(f"{base}.{part}[{index}]", why)
    excluded = set(globs.exclude)
    for index, pattern in enumerate(globs.include):
        if pattern in excluded:
            out.warn(
                f"{base}.include[{index}]",
                f"{quoted(pattern)} is also excluded, and exclusion wins",
            )


def mcpregistry_rules(
    new: MCPRegistry,
    old: MCPRegistry | None,
    raw: dict[str, Any],
    out: Findings,
    *,
    allow_local_sources: bool = False,
) -> None:
    """Every MCPRegistry rule of this module."""
    spec = new.spec
    if spec.source.git is not None:
        _check_git(spec.source.git, out, allow_local_sources=allow_local_sources)
    if not spec.sync_policy.automatic and spec.sync_policy.interval != DEFAULT_INTERVAL:
        out.warn(
            "spec.syncPolicy.interval",
            "ignored while automatic is false (syncs happen only on request)",
        )
    if spec.filter is not None:
        _check_globs("names", spec.filter.names, out)
        _check_globs("tags", spec.filter.tags, out)


def validate_mcpregistry(
    new: dict[str, Any], *, old: dict[str, Any] | None = None, allow_local_sources: bool = False
) -> Verdict:
    """Validate an MCPRegistry for admission; `old` is the stored object on an update.
    `allow_local_sources` (REGISTRY_ALLOW_LOCAL_SOURCES) admits `file://` and local hosts."""
    return validate_object(
        new,
        old=old,
        model=MCPRegistry,
        rules=functools.partial(mcpregistry_rules, allow_local_sources=allow_local_sources),
    )
