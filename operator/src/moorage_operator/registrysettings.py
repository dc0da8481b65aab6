"""Settings of the MCPRegistry controller, read from the operator's environment.

Pure: parsing only (the environment is passed in or read from `os.environ`). A bad value raises
`SettingError` naming the variable, so the operator refuses to start.

- `REGISTRY_GIT_TIMEOUT`: seconds (Go duration accepted) one git fetch may take, from `git init`
  to the file read. Default `2m`.
- `REGISTRY_SYNC_INTERVAL_OVERRIDE`: **for tests only.** When set, every registry with automatic
  sync uses this interval instead of `spec.syncPolicy.interval`. The CRD does not accept
  intervals under `1m`, which makes "a new commit is picked up on the next interval" too slow
  to test; production deployments leave it unset. Default unset.
- `REGISTRY_RETRY_BASE`, `REGISTRY_RETRY_CAP`: seconds (Go duration accepted) of the back-off
  between retries of a failing sync: the first delay and the longest. Defaults `10s` and `10m`.

- `REGISTRY_ALLOW_LOCAL_SOURCES`: fetch git sources from `file://` and from hosts on the
  operator's own pod or a metadata service (`moorage_api.sources`). For tests and local
  development; the platform admin's choice, never a namespace user's. Default false.

The registry API's image comes from the operator's `REGISTRY_API_IMAGE`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from moorage_api.mcpregistry import SyncPolicy
from moorage_api.sources import ALLOW_LOCAL_SOURCES_SETTING, SourcePolicy, literal_address
from moorage_core.backoff import Backoff
from moorage_core.settings import SettingError, parse_bool, parse_duration
from moorage_operator.planning.mcpregistries.scheduling import SYNC_BACKOFF


@dataclass(frozen=True, slots=True)
class RegistrySettings:
    """How the MCPRegistry controller syncs and what it deploys."""

    api_image: str
    """Image of the registry API Deployment (the operator's REGISTRY_API_IMAGE)."""
    git_timeout: float = 120.0
    """REGISTRY_GIT_TIMEOUT: seconds one git fetch may take. Default 2m."""
    sync_interval_override: float | None = None
    """REGISTRY_SYNC_INTERVAL_OVERRIDE: seconds replacing every automatic sync interval; for
    tests only. Default None (use each registry's interval)."""
    backoff: Backoff = SYNC_BACKOFF
    """REGISTRY_RETRY_BASE / REGISTRY_RETRY_CAP: retry delays of a failing sync, in seconds.
    Defaults 10s and 10m."""
    source_policy: SourcePolicy = field(default_factory=SourcePolicy)
    """REGISTRY_ALLOW_LOCAL_SOURCES (default false) and the apiserver's Service address
    (`KUBERNETES_SERVICE_HOST`): which git sources may be fetched (`moorage_api.sources`)."""

    def interval(self, policy: SyncPolicy) -> float:
        """Seconds between automatic syncs of a registry with `policy`."""
        if self.sync_interval_override is not None:
            return self.sync_interval_override
        return policy.interval_seconds

    @classmethod
    def from_env(
        cls, *, api_image: str, environ: Mapping[str, str] | None = None
    ) -> RegistrySettings:
        """Settings from `environ` (default `os.environ`); unset or empty variables keep the
        defaults."""
        env = os.environ if environ is None else environ

        def seconds(name: str) -> float | None:
            raw = env.get(name, "").strip()
            if not raw:
                return None
            try:
                value = parse_duration(raw)
            except SettingError as exc:
                raise SettingError(f"{name}: {exc}") from None
            if value <= 0:
                raise SettingError(f"{name}: {raw!r} must be longer than zero")
            return value

        defaults = cls(api_image=api_image)
        base = seconds("REGISTRY_RETRY_BASE") or defaults.backoff.base
        cap = seconds("REGISTRY_RETRY_CAP") or defaults.backoff.cap
        if cap < base:
            raise SettingError(
                f"REGISTRY_RETRY_CAP: must be at least REGISTRY_RETRY_BASE ({base:g}s)"
            )
        try:
            allow_local = parse_bool(env.get(ALLOW_LOCAL_SOURCES_SETTING, "").strip() or "false")
        except SettingError as exc:
            raise SettingError(f"{ALLOW_LOCAL_SOURCES_SETTING}: {exc}") from None
        apiserver = literal_address(env.get("KUBERNETES_SERVICE_HOST", "").strip())
        return cls(
            api_image=api_image,
            git_timeout=seconds("REGISTRY_GIT_TIMEOUT") or defaults.git_timeout,
            sync_interval_override=seconds("REGISTRY_SYNC_INTERVAL_OVERRIDE"),
            backoff=Backoff(base=base, cap=cap),
            source_policy=SourcePolicy(
                allow_local=allow_local,
                apiserver_addresses=frozenset() if apiserver is None else frozenset({apiserver}),
            ),
        )
