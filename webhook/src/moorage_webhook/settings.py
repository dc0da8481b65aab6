"""The webhook's settings: every one a flag and an environment variable.

`WebhookSettings.from_env_and_args(argv)` reads the environment, then the command line; a flag
wins over its variable and an empty variable counts as unset. A value we cannot use raises
`SettingError` naming the flag and the variable, so the webhook refuses to start with a message a
person can act on.

Pure: parsing and validation only.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from moorage_core.readtimeouts import (
    DEFAULT_BODY_TIMEOUT,
    DEFAULT_HEADER_TIMEOUT,
    READ_TIMEOUT_SPECS,
    ReadTimeouts,
)
from moorage_core.settings import (
    SettingError,
    SettingSpec,
    add_setting_flags,
    parse_bind,
    parse_bool,
    parse_choice,
    parse_directory,
    parse_positive_duration,
    read_settings,
)

_LOG_FORMATS = ("json", "console", "auto")
_LOG_LEVELS = ("debug", "info", "warning", "error", "critical")


@dataclass(frozen=True, slots=True)
class WebhookSettings:
    """Everything the webhook is configured with."""

    cert_dir: Path | None = None
    """CERT_DIR / --cert-dir: directory holding `tls.crt` and `tls.key` (the mounted Secret),
    reloaded when they change; serves both ports. Required by the command; unset only in tests
    and local runs, where a self-signed pair is generated."""
    bind: tuple[str, int] = ("0.0.0.0", 9443)  # noqa: S104 - the apiserver calls from outside
    """BIND / --bind: HOST:PORT (or :PORT) of the HTTPS admission server. Default `:9443`."""
    metrics_bind: tuple[str, int] = ("0.0.0.0", 8443)  # noqa: S104 - scraped from outside
    """METRICS_BIND / --metrics-bind: HOST:PORT of the HTTPS server for /metrics, /healthz and
    /readyz. Default `:8443`."""
    max_request_bytes: int = 6 * 1024 * 1024
    """MAX_REQUEST_BYTES / --max-request-bytes: largest AdmissionReview body accepted; larger
    ones get 413. Default 6 MiB: an object and its old version, each up to etcd's 1.5 MiB, with
    room for JSON escaping."""
    drain_timeout: float = 5.0
    """DRAIN_TIMEOUT / --drain-timeout: seconds SIGTERM lets reviews in flight finish before the
    process exits (Go duration accepted). Default 5s: the apiserver waits at most 10s for a
    review, and the pod's grace period must cover the drain."""
    header_timeout: float = DEFAULT_HEADER_TIMEOUT
    """HEADER_TIMEOUT / --header-timeout: seconds a connection may take to send a request's
    line and headers, counted from connecting or from the previous answer; also how long an
    idle keep-alive connection stays open. Default 30s."""
    body_timeout: float = DEFAULT_BODY_TIMEOUT
    """BODY_TIMEOUT / --body-timeout: seconds from a request's headers until its whole body is
    in; a slower client's connection is closed. Default 60s."""
    tls_poll_interval: float = 2.0
    """TLS_POLL_INTERVAL / --tls-poll-interval: seconds between checks of the certificate files
    for a rotation (Go duration accepted). Default 2s."""
    registry_allow_local_sources: bool = False
    """REGISTRY_ALLOW_LOCAL_SOURCES / --registry-allow-local-sources: admit MCPRegistry git
    sources that read the operator's files (`file://`) or reach its own host (loopback,
    link-local, unspecified addresses). Set it together with the operator's. Default false."""
    log_format: str = "auto"
    """LOG_FORMAT / --log-format: `json`, `console`, or `auto` (console on a TTY, JSON
    otherwise). Default auto."""
    log_level: str = "info"
    """LOG_LEVEL / --log-level: debug, info, warning, error or critical. Default info."""
    mcptenants: bool = True
    """MCPTENANTS / --mcptenants: follow MCPTenants (list + watch) so that their allowances apply.
    Default true; false (local runs without a cluster) allows nothing beyond the pod security
    rules, so it can only refuse more, never less."""
    kubeconfig: str | None = None
    """KUBECONFIG / --kubeconfig: credentials for reading MCPTenants. Default: the pod's
    ServiceAccount, else `~/.kube/config`."""

    @classmethod
    def from_env_and_args(
        cls, argv: Sequence[str] | None = None, *, environ: Mapping[str, str] | None = None
    ) -> WebhookSettings:
        """Settings from `environ` (default `os.environ`) overridden by the flags in `argv`."""
        env = os.environ if environ is None else environ
        args = vars(build_parser().parse_args(list(argv or [])))
        return cls(**read_settings(_SPECS, args=args, environ=env))

    @property
    def read_timeouts(self) -> ReadTimeouts:
        return ReadTimeouts.of(self)


def _size(text: str) -> int:
    try:
        value = int(text.strip())
    except ValueError:
        raise SettingError(f"{text!r} is not a whole number of bytes") from None
    if not 1024 <= value <= 64 * 1024 * 1024:
        raise SettingError(f"{value} is out of range (1024 to 64 MiB)")
    return value


_SPECS: tuple[SettingSpec, ...] = (
    SettingSpec(
        "cert_dir",
        "CERT_DIR",
        "cert-dir",
        parse_directory,
        "DIR",
        "directory with tls.crt and tls.key",
    ),
    SettingSpec("bind", "BIND", "bind", parse_bind, "HOST:PORT", "admission server address"),
    SettingSpec(
        "metrics_bind",
        "METRICS_BIND",
        "metrics-bind",
        parse_bind,
        "HOST:PORT",
        "metrics and probes server address",
    ),
    SettingSpec(
        "max_request_bytes",
        "MAX_REQUEST_BYTES",
        "max-request-bytes",
        _size,
        "BYTES",
        "largest AdmissionReview accepted",
    ),
    SettingSpec(
        "drain_timeout",
        "DRAIN_TIMEOUT",
        "drain-timeout",
        parse_positive_duration,
        "DURATION",
        "how long SIGTERM lets reviews in flight finish",
    ),
    *READ_TIMEOUT_SPECS,
    SettingSpec(
        "tls_poll_interval",
        "TLS_POLL_INTERVAL",
        "tls-poll-interval",
        parse_positive_duration,
        "DURATION",
        "how often to look for a rotated certificate",
    ),
    SettingSpec(
        "registry_allow_local_sources",
        "REGISTRY_ALLOW_LOCAL_SOURCES",
        "registry-allow-local-sources",
        parse_bool,
        "BOOL",
        "admit MCPRegistry sources on the operator's own host (default: false)",
    ),
    SettingSpec(
        "log_format",
        "LOG_FORMAT",
        "log-format",
        parse_choice(_LOG_FORMATS),
        "FORMAT",
        "json, console or auto",
    ),
    SettingSpec(
        "mcptenants",
        "MCPTENANTS",
        "mcptenants",
        parse_bool,
        "BOOL",
        "follow MCPTenants so that their allowances apply",
    ),
    SettingSpec(
        "kubeconfig",
        "KUBECONFIG",
        "kubeconfig",
        str,
        "PATH",
        "kubeconfig for reading MCPTenants (default: in-cluster)",
    ),
    SettingSpec(
        "log_level",
        "LOG_LEVEL",
        "log-level",
        parse_choice(_LOG_LEVELS),
        "LEVEL",
        "debug ... critical",
    ),
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="moorage-webhook",
        description="Validating admission webhook for Moorage's kinds (moorage.dev).",
    )
    add_setting_flags(parser, _SPECS)
    return parser
