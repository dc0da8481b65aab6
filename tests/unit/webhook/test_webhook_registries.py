"""MCPRegistry admission rules: sources, git refs and URLs, sync interval, filter globs."""

from __future__ import annotations

from typing import Any

import pytest
from webhook_samples import mcpregistry

from moorage_webhook.validation import validate_mcpregistry

SHA = "0123456789abcdef0123456789abcdef01234567"


def _git(**fields: Any) -> dict[str, Any]:
    return {"type": "git", "git": {"repository": "https://github.com/org/registry.git", **fields}}


@pytest.mark.parametrize(
    "source",
    [
        pytest.param({"type": "configMap", "configMap": {"name": "servers"}}, id="config-map"),
        pytest.param(_git(), id="git-default-branch"),
        pytest.param(_git(branch="release/v1"), id="git-branch"),
        pytest.param(_git(tag="v1.2.3"), id="git-tag"),
        pytest.param(_git(commit=SHA, path="data/registry.json"), id="git-commit"),
        pytest.param(
            {"type": "git", "git": {"repository": "ssh://git@example.com:2222/org/r.git"}},
            id="ssh",
        ),
        pytest.param({"type": "git", "git": {"repository": "git@github.com:org/r.git"}}, id="scp"),
        pytest.param(
            _git(auth={"username": "bot", "passwordSecretRef": {"name": "gh", "key": "token"}}),
            id="https-auth",
        ),
    ],
)
def test_valid_sources_are_allowed_without_warnings(source: dict[str, Any]) -> None:
    obj = mcpregistry(
        source,
        syncPolicy={"automatic": True, "interval": "30m"},
        filter={"names": {"include": ["io.github.*", "[a-c]?"], "exclude": ["*-test"]}},
    )
    verdict = validate_mcpregistry(obj, old=None)
    assert verdict.errors == ()
    assert verdict.warnings == ()


@pytest.mark.parametrize(
    ("obj", "path", "fragment"),
    [
        pytest.param(
            mcpregistry(_git(branch="main", tag="v1")),
            "spec.source.git",
            "at most one of branch, tag and commit may be set (got branch, tag)",
            id="branch-and-tag",
        ),
        pytest.param(
            mcpregistry({"type": "git"}),
            "spec.source",
            "git: required when type is git",
            id="type-without-its-field",
        ),
        pytest.param(
            mcpregistry({**_git(), "type": "configMap", "configMap": {"name": "x"}}),
            "spec.source",
            "git: not allowed when type is configMap",
            id="field-of-another-type",
        ),
        pytest.param(
            mcpregistry({"type": "git", "git": {"repository": "http://example.com/r.git"}}),
            "spec.source.git.repository",
            "uses plain http; use https://",
            id="http-scheme",
        ),
        pytest.param(
            mcpregistry({"type": "git", "git": {"repository": "https:///r.git"}}),
            "spec.source.git.repository",
            "has no host",
            id="no-host",
        ),
        pytest.param(
            mcpregistry({"type": "git", "git": {"repository": "https://example.com/"}}),
            "spec.source.git.repository",
            "has no repository path",
            id="no-path",
        ),
        pytest.param(
            mcpregistry({"type": "git", "git": {"repository": "https://example.com:99999/r"}}),
            "spec.source.git.repository",
            "check the port",
            id="bad-port",
        ),
        pytest.param(
            mcpregistry({"type": "git", "git": {"repository": "https://example.com/r#main"}}),
            "spec.source.git.repository",
            "must not have a query or fragment",
            id="fragment",
        ),
        pytest.param(
            mcpregistry({"type": "git", "git": {"repository": "git@:org/r.git"}}),
            "spec.source.git.repository",
            "is not a valid git@host:path address",
            id="scp-without-host",
        ),
        pytest.param(
            mcpregistry({"type": "git", "git": {"repository": "file://relative/dir"}}),
            "spec.source.git.repository",
            "needs an absolute path",
            id="file-relative",
        ),
        pytest.param(
            mcpregistry({"type": "git", "git": {"repository": "https://u:pw@example.com/r"}}),
            "spec.source.git.repository",
            "must not contain a password",
            id="password-in-url",
        ),
        pytest.param(
            mcpregistry(_git(branch="feature..x")),
            "spec.source.git.branch",
            "is not a valid git ref name",
            id="branch-double-dot",
        ),
        pytest.param(
            mcpregistry(_git(branch="x.lock")),
            "spec.source.git.branch",
            "end with '.lock'",
            id="branch-lock",
        ),
        pytest.param(
            mcpregistry(_git(tag="v1/")),
            "spec.source.git.tag",
            "trailing",
            id="tag-trailing-slash",
        ),
        pytest.param(
            mcpregistry(_git(tag="@")),
            "spec.source.git.tag",
            "lone '@'",
            id="tag-at",
        ),
        pytest.param(
            mcpregistry(_git(branch="a b")),
            "spec.source.git.branch",
            "no spaces",
            id="branch-space",
        ),
        pytest.param(
            mcpregistry(_git(commit="abc1234")),
            "spec.source.git.commit",
            "must be a full commit SHA",
            id="short-commit",
        ),
        pytest.param(
            mcpregistry(_git(commit=SHA.upper())),
            "spec.source.git.commit",
            "40 lowercase hex digits",
            id="uppercase-commit",
        ),
        pytest.param(
            mcpregistry(_git(path="../secrets.json")),
            "spec.source.git.path",
            "must stay inside the repository",
            id="path-escape",
        ),
        pytest.param(
            mcpregistry(_git(path="data/")),
            "spec.source.git.path",
            "must name a file",
            id="path-directory",
        ),
        pytest.param(
            mcpregistry(_git(path="/etc/passwd")),
            "spec.source.git.path",
            "must be a relative path",
            id="path-absolute",
        ),
        pytest.param(
            mcpregistry(_git(), syncPolicy={"interval": "30s"}),
            "spec.syncPolicy.interval",
            "interval must be at least 1m (got 30s)",
            id="interval-too-short",
        ),
        pytest.param(
            mcpregistry(_git(), syncPolicy={"interval": "1 hour"}),
            "spec.syncPolicy.interval",
            "is not a duration",
            id="interval-not-a-duration",
        ),
        pytest.param(
            mcpregistry(_git(), filter={"names": {"include": ["io.[github"]}}),
            "spec.filter.names.include[0]",
            "has a '[' that is never closed",
            id="glob-unclosed",
        ),
        pytest.param(
            mcpregistry(_git(), filter={"tags": {"exclude": ["x\\"]}}),
            "spec.filter.tags.exclude[0]",
            "unfinished escape",
            id="glob-escape",
        ),
        pytest.param(
            mcpregistry(_git(), filter={"tags": {"include": [""]}}),
            "spec.filter.tags.include[0]",
            "must not be empty",
            id="glob-empty",
        ),
        pytest.param(
            mcpregistry(_git(), apiService={"enabled": [True]}),
            "spec.apiService.enabled",
            "valid boolean",
            id="api-service-type",
        ),
    ],
)
def test_rejects_with_the_field_path_and_what_is_expected(
    obj: dict[str, Any], path: str, fragment: str
) -> None:
    errors = [str(e) for e in validate_mcpregistry(obj, old=None).errors]
    assert any(e.startswith(f"{path}: ") and fragment in e for e in errors), errors


def test_registry_names_must_fit_the_api_service_name() -> None:
    obj = mcpregistry(_git())
    obj["metadata"]["name"] = "9lives"
    errors = [str(e) for e in validate_mcpregistry(obj, old=None).errors]
    assert errors == [
        "metadata.name: must be lower-case letters, digits and '-', starting with a letter"
    ]


@pytest.mark.parametrize(
    ("obj", "path", "fragment"),
    [
        pytest.param(
            mcpregistry(
                {
                    "type": "git",
                    "git": {
                        "repository": "git@github.com:org/r.git",
                        "auth": {"username": "u", "passwordSecretRef": {"name": "s", "key": "k"}},
                    },
                }
            ),
            "spec.source.git.auth",
            "only used for https:// repositories",
            id="auth-with-ssh",
        ),
        pytest.param(
            mcpregistry(_git(), syncPolicy={"automatic": False, "interval": "5m"}),
            "spec.syncPolicy.interval",
            "ignored while automatic is false",
            id="interval-without-automatic",
        ),
        pytest.param(
            mcpregistry(_git(), filter={"names": {"include": ["a*"], "exclude": ["a*"]}}),
            "spec.filter.names.include[0]",
            "also excluded, and exclusion wins",
            id="include-and-exclude",
        ),
    ],
)
def test_warns_about_settings_that_do_nothing(
    obj: dict[str, Any], path: str, fragment: str
) -> None:
    verdict = validate_mcpregistry(obj, old=None)
    assert verdict.allowed, verdict.message()
    warnings = [str(w) for w in verdict.warnings]
    assert any(w.startswith(f"{path}: ") and fragment in w for w in warnings), warnings
