"""`moorage-proxyrunner`: the command line.

`run --local [options] -- <command...>` fronts a local stdio MCP server; `run --local
--transport streamable-http|sse --target-url URL` fronts one on HTTP. `run --local --config PATH`
takes authentication, authorisation, the tool filter/override, audit and rate limits (with where
they are counted) from a RunConfig file
(only those keys are read; changes to the file apply live). `run [--config PATH]` is the
in-cluster start-up from a RunConfig (spec §4.1), implemented by
`moorage_proxyrunner.startup.cluster.run_from_config`.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType

from moorage_api.runconfig import RunConfigError
from moorage_core.loggers import configure_logging
from moorage_core.running import Lifecycle, run_service
from moorage_core.settings import SettingError, parse_list
from moorage_proxyrunner.config.limits import (
    add_drain_argument,
    add_limit_arguments,
    drain_timeout_from,
    limits_from,
)
from moorage_proxyrunner.config.settings import (
    ADVERTISE_ADDRESS_ENV,
    DEFAULT_MAX_BODY_BYTES,
    ProxyRunnerSettings,
    advertise_address_from,
)
from moorage_proxyrunner.config.toolpolicy import ToolPolicy
from moorage_proxyrunner.policy.chain import LiveConfig, LiveConfigError, tool_policy_from_runconfig
from moorage_proxyrunner.policy.reload import load_local_runconfig
from moorage_proxyrunner.sessionstore.redisconn import RedisSettingError, connection_options
from moorage_proxyrunner.startup.local import LocalBackend, LocalConfig, run_local

DEFAULT_CONFIG = "/etc/moorage/runconfig.json"
TRANSPORTS = ("stdio", "sse", "streamable-http")


def build_parser() -> tuple[argparse.ArgumentParser, argparse.ArgumentParser]:
    """The parser and its `run` sub-command's parser."""
    parser = argparse.ArgumentParser(prog="moorage-proxyrunner", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run the proxy", description="Run the MCP proxy.")
    run.add_argument("--local", action="store_true", help="run without a cluster")
    run.add_argument(
        "--config",
        metavar="PATH",
        help=f"RunConfig file (default {DEFAULT_CONFIG}). With --local only its middleware keys "
        "are read (oidc, authz, tools_filter, tools_override, audit, rate_limits, "
        "session_storage; the workload keys may be "
        "left out), and edits to the file apply to the next request without a restart. "
        'Example: {"schema_version": "moorage/v1", "audit": {"enabled": true}, "oidc": '
        '{"type": "oidc", "issuer": "https://idp.example", "audience": "mcp"}, "authz": '
        '{"policies": ["permit(principal, action, resource);"]}}',
    )
    run.add_argument("--host", default=None, help="listen address (default 127.0.0.1 with --local)")
    run.add_argument("--port", type=int, default=8080, help="listen port (default 8080)")
    run.add_argument(
        "--advertise-address",
        metavar="HOST:PORT",
        default=None,
        help="where the other replicas reach this one's MCP port (default $POD_IP:<port> when "
        f"POD_IP is set, else 127.0.0.1:<port>) [env {ADVERTISE_ADDRESS_ENV}]",
    )
    run.add_argument(
        "--transport",
        choices=TRANSPORTS,
        default="stdio",
        help="how the MCP server speaks (default stdio)",
    )
    run.add_argument(
        "--target-url",
        action="append",
        default=[],
        metavar="URL",
        help="the MCP server's URL for sse/streamable-http (repeat for several replicas)",
    )
    run.add_argument(
        "--max-body-bytes", type=int, default=DEFAULT_MAX_BODY_BYTES, help="request body limit"
    )
    run.add_argument("--endpoint-prefix", default="", help="path prefix for SSE endpoint URLs")
    run.add_argument(
        "--stdio-era",
        default="handshake",
        choices=["handshake", "auto"],
        help="a stdio server's era: initialise it (handshake, default), or probe it and run a "
        "dual-era server in 2026-07-28 (auto)",
    )
    run.add_argument(
        "--trust-proxy-headers", action="store_true", help="honour X-Forwarded-* headers"
    )
    run.add_argument(
        "--allowed-origins", default="", help="comma list of extra allowed Origin values"
    )
    run.add_argument("--allowed-hosts", default="", help="comma list of allowed Host values")
    run.add_argument(
        "--tools-filter", default="", help="comma list of tool names to expose (default all)"
    )
    add_drain_argument(run)
    add_limit_arguments(run)
    run.add_argument("--log-format", default="auto", choices=["auto", "json", "console"])
    run.add_argument("--log-level", default="INFO")
    return parser, run


def split_command(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """Options before `--`, the MCP server's command after it."""
    args = list(argv)
    if "--" in args:
        index = args.index("--")
        return args[:index], args[index + 1 :]
    return args, []


def local_config(args: argparse.Namespace) -> LocalConfig | None:
    """The `--config` file of `run --local`, read and checked; None without one."""
    if not args.config:
        return None
    if args.tools_filter:
        raise SettingError("with --config, set tools_filter in the RunConfig file")
    path = Path(args.config)
    try:
        runconfig = load_local_runconfig(path.read_text())
        LiveConfig.from_runconfig(runconfig)  # Cedar parses, renames do not collide
        if runconfig.session_storage.redis is not None:
            connection_options(runconfig.session_storage.redis)  # the password is set
    except OSError as exc:
        raise SettingError(f"cannot read --config {path}: {exc.strerror or exc}") from None
    except (RunConfigError, LiveConfigError, RedisSettingError) as exc:
        raise SettingError(f"--config {path}: {exc}") from None
    return LocalConfig(path=path, runconfig=runconfig)


def settings_from(
    args: argparse.Namespace, config: LocalConfig | None = None
) -> ProxyRunnerSettings:
    settings = ProxyRunnerSettings(
        host=args.host or "127.0.0.1",
        port=args.port,
        max_body_bytes=args.max_body_bytes,
        drain_timeout=drain_timeout_from(args),
        endpoint_prefix=args.endpoint_prefix,
        trust_proxy_headers=args.trust_proxy_headers,
        stdio_era=args.stdio_era,
        allowed_origins=parse_list(args.allowed_origins),
        allowed_hosts=parse_list(args.allowed_hosts),
        tool_policy=ToolPolicy(allowed=frozenset(parse_list(args.tools_filter))),
        limits=limits_from(args),
        advertise_address=advertise_address_from(
            args.advertise_address, port=args.port, environ=os.environ
        ),
    )
    if config is None:
        return settings
    runconfig = config.runconfig
    return dataclasses.replace(
        settings,
        tool_policy=tool_policy_from_runconfig(runconfig),
        oidc=runconfig.oidc,
        authz=runconfig.authz,
        audit=runconfig.audit.enabled,
        rate_limits=runconfig.rate_limits,
        session_storage=runconfig.session_storage,
    )


def local_backend(
    args: argparse.Namespace, command: list[str], config: LocalConfig | None = None
) -> LocalBackend:
    if config is not None and config.runconfig.aggregate is not None:
        if command or args.target_url:
            raise SettingError(
                "the --config RunConfig aggregates MCP servers: give no command or --target-url"
            )
        return LocalBackend(transport="stdio", aggregate=True)
    remote = config.runconfig.remote if config is not None else None
    if remote is not None:
        if command or args.target_url:
            raise SettingError(
                "the --config RunConfig names a remote MCP server: give no command or --target-url"
            )
        return LocalBackend(transport=remote.transport, target_urls=(remote.url,))
    if args.transport == "stdio":
        if args.target_url:
            raise SettingError("--target-url is for --transport sse or streamable-http")
        if not command:
            raise SettingError("a stdio MCP server needs its command after `--`")
        return LocalBackend(transport="stdio", command=tuple(command))
    if command:
        raise SettingError(f"--transport {args.transport} takes --target-url, not a command")
    if not args.target_url:
        raise SettingError(f"--transport {args.transport} needs --target-url")
    return LocalBackend(transport=args.transport, target_urls=tuple(args.target_url))


def load_cluster() -> ModuleType | None:
    """The in-cluster start-up module, imported only when used so local mode needs none of the
    Kubernetes code; None when this build has none."""
    try:
        return importlib.import_module("moorage_proxyrunner.startup.cluster")
    except ModuleNotFoundError as exc:
        if exc.name != "moorage_proxyrunner.startup.cluster":
            raise
        return None


def main(argv: Sequence[str] | None = None) -> int:
    options, command = split_command(sys.argv[1:] if argv is None else argv)
    parser, run = build_parser()
    args, _ = parser.parse_known_args(options)
    cluster = None if args.local else load_cluster()
    if cluster is not None:
        # `run --config` hands over to `cluster.run_from_config(args)`; its own flags
        # (`--k8s-pod-patch`, `--readiness-timeout`, ...) are registered by that module.
        cluster.add_cluster_arguments(run)
    args = parser.parse_args(options)
    args.server_command = command
    configure_logging(fmt=args.log_format, level=args.log_level)
    if not args.local:
        if cluster is None:
            parser.error("this build has no cluster mode; use `run --local`")
        args.config = args.config or DEFAULT_CONFIG
        run_from_config: Callable[[argparse.Namespace], int] = cluster.run_from_config
        return run_from_config(args)
    try:
        config = local_config(args)
        settings = settings_from(args, config)
        backend = local_backend(args, command, config)
    except SettingError as exc:
        parser.error(str(exc))

    async def serve_locally(lifecycle: Lifecycle) -> int:
        await run_local(backend, settings, config=config, lifecycle=lifecycle, check_launch=True)
        return 0

    return run_service(serve_locally, drain_timeout=settings.drain_timeout)


if __name__ == "__main__":
    sys.exit(main())
