"""MCPRegistry git sources on the operator's own host at admission: refused by default with the
field path and what to do; admitted when the webhook runs with REGISTRY_ALLOW_LOCAL_SOURCES."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from webhook_samples import mcpregistry, review, review_bytes

from moorage_webhook.app import make_app
from moorage_webhook.settings import WebhookSettings
from moorage_webhook.validation import validate_mcpregistry

PATH = "spec.source.git.repository"


def git(repository: str) -> dict[str, Any]:
    return mcpregistry({"type": "git", "git": {"repository": repository}})


@pytest.mark.parametrize(
    ("repository", "fragment"),
    [
        ("file:///srv/registry", "file:// reads the operator's own filesystem"),
        ("https://localhost/org/r.git", "host localhost is a loopback address"),
        ("https://127.0.0.1:8443/org/r.git", "host 127.0.0.1 is a loopback address"),
        ("ssh://git@[::1]/org/r.git", "host ::1 is a loopback address"),
        ("git@127.0.0.1:org/r.git", "host 127.0.0.1 is a loopback address"),
        ("https://169.254.169.254/latest/meta-data", "a cloud metadata service"),
        ("https://[fe80::1]/org/r.git", "a link-local address"),
        ("https://0.0.0.0/org/r.git", "the unspecified address"),
    ],
    ids=["file", "localhost", "loopback", "loopback-v6", "scp-loopback", "metadata", "ll", "any"],
)
def test_local_sources_are_refused_by_default(repository: str, fragment: str) -> None:
    verdict = validate_mcpregistry(git(repository), old=None)
    messages = [str(e) for e in verdict.errors]
    assert len(messages) == 1, messages
    assert messages[0].startswith(f"{PATH}: ")
    assert fragment in messages[0]
    assert "REGISTRY_ALLOW_LOCAL_SOURCES=true" in messages[0]


@pytest.mark.parametrize(
    "repository",
    ["file:///srv/registry", "https://127.0.0.1:8443/org/r.git", "https://169.254.169.254/r"],
)
def test_the_platform_admins_opt_in_admits_them(repository: str) -> None:
    verdict = validate_mcpregistry(git(repository), old=None, allow_local_sources=True)
    assert verdict.errors == ()


def test_private_addresses_stay_admitted() -> None:
    assert validate_mcpregistry(git("https://10.0.0.12/org/r.git"), old=None).errors == ()


@pytest.mark.parametrize(("allow", "allowed"), [(False, False), (True, True)])
async def test_the_webhook_setting_decides_for_the_served_endpoint(
    allow: bool, allowed: bool
) -> None:
    app = make_app(WebhookSettings(registry_allow_local_sources=allow))
    document = review(git("file:///srv/registry"), uid="s-1")
    async with TestClient(TestServer(app)) as client:
        resp = await client.post(
            "/validate/mcpregistry",
            data=review_bytes(document),
            headers={"Content-Type": "application/json"},
        )
        body = await resp.json()
    assert body["response"]["allowed"] is allowed


@pytest.mark.parametrize(("value", "expected"), [("", False), ("true", True), ("0", False)])
def test_the_opt_in_is_read_from_the_environment(value: str, expected: bool) -> None:
    settings = WebhookSettings.from_env_and_args(
        [], environ={"REGISTRY_ALLOW_LOCAL_SOURCES": value}
    )
    assert settings.registry_allow_local_sources is expected
