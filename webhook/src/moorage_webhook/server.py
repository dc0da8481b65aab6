"""Serving the webhook: the admission port and the metrics port, over one reloading TLS context.

`WebhookServer` runs inside an event loop (the command's, or a test's): `start()` binds both
ports, `stop()` closes them after in-flight requests finish (bounded by `--drain-timeout`). A
certificate directory or an address that cannot be used is a `StartupFailure` naming its setting. The certificate pair comes from
`--cert-dir` and is reloaded when cert-manager rewrites it; both ports present the same pair.
Readiness (on both ports) requires a certificate that has not expired and, when the webhook reads
MCPTenants (`kube` given, as the command does), their first list; liveness only needs the loop to
answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime

import structlog
from cryptography import x509
from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector

from moorage_core.kube import KubeClient
from moorage_core.serving import HealthChecks, HTTPSServer, make_health_app
from moorage_core.startup import load_tls
from moorage_core.supervising import TaskSupervisor
from moorage_webhook.admission import AllowancesLookup, no_tenants
from moorage_webhook.app import make_app
from moorage_webhook.metrics import WebhookMetrics
from moorage_webhook.settings import WebhookSettings
from moorage_webhook.tenants import TenantAllowances

log = structlog.get_logger(__name__)

COMMON_NAME = "moorage-webhook"


class WebhookServer:
    """The admission server (`settings.bind`) and the metrics server (`settings.metrics_bind`)."""

    def __init__(
        self,
        settings: WebhookSettings,
        *,
        registry: CollectorRegistry | None = None,
        supervisor: TaskSupervisor | None = None,
        kube: KubeClient | None = None,
    ) -> None:
        self.settings = settings
        self.supervisor = supervisor
        """Where the certificate reload loop runs, so that its end is noticed."""
        if registry is None:
            registry = CollectorRegistry()
            ProcessCollector(registry=registry)
            PlatformCollector(registry=registry)
            GCCollector(registry=registry)
        self.registry = registry
        self.metrics = WebhookMetrics.create(registry)
        self.tls = load_tls(
            settings.cert_dir,
            setting="CERT_DIR / --cert-dir",
            hosts=["localhost", "127.0.0.1"],
            common_name=COMMON_NAME,
            poll_interval=settings.tls_poll_interval,
        )
        checks = HealthChecks(readiness={"certificate": self.check_certificate})
        self.tenants = None if kube is None else TenantAllowances(kube)
        """MCPTenant allowances; None: none are read, so nothing beyond the rules is allowed."""
        self._tenants_task: asyncio.Task[None] | None = None
        allowances: AllowancesLookup = no_tenants
        if self.tenants is not None:
            checks.readiness["mcptenants"] = self.tenants.check_synced
            allowances = self.tenants.lookup
        app = make_app(settings, metrics=self.metrics, checks=checks, allowances=allowances)
        host, port = settings.bind
        self.admission = HTTPSServer(
            app,
            host=host,
            port=port,
            tls=self.tls,
            setting="BIND / --bind",
            shutdown_timeout=settings.drain_timeout,
            reload_tls=False,
            read_timeouts=settings.read_timeouts,
        )
        metrics_host, metrics_port = settings.metrics_bind
        self.monitoring = HTTPSServer(
            make_health_app(registry, checks),
            host=metrics_host,
            port=metrics_port,
            tls=self.tls,
            setting="METRICS_BIND / --metrics-bind",
            shutdown_timeout=settings.drain_timeout,
            reload_tls=False,
            read_timeouts=settings.read_timeouts,
        )

    @property
    def port(self) -> int:
        """The admission port (the real one once started on port 0)."""
        return self.admission.port

    @property
    def metrics_port(self) -> int:
        return self.monitoring.port

    async def check_certificate(self) -> None:
        """Raise unless the served certificate file is readable and currently valid."""
        cert = x509.load_pem_x509_certificate(self.tls.cert_file.read_bytes())
        now = datetime.datetime.now(datetime.UTC)
        if cert.not_valid_after_utc <= now:
            raise RuntimeError(f"certificate expired at {cert.not_valid_after_utc.isoformat()}")
        if cert.not_valid_before_utc > now:
            raise RuntimeError(
                f"certificate is not valid before {cert.not_valid_before_utc.isoformat()}"
            )

    async def start(self) -> None:
        await self.admission.start()
        try:
            await self.monitoring.start()
        except BaseException:
            await self.admission.stop()
            raise
        # One reload loop for the pair both ports present, run here rather than by either
        # server: it must go on while either of them still drains.
        self.tls.start(self.supervisor)
        if self.tenants is not None:
            if self.supervisor is not None:
                self._tenants_task = self.supervisor.spawn("mcptenants", self.tenants.run())
            else:
                self._tenants_task = asyncio.create_task(self.tenants.run(), name="mcptenants")
        log.info("webhook_started", port=self.port, metrics_port=self.metrics_port)

    async def stop(self) -> None:
        # Together, so that the drain of both is bounded by one `--drain-timeout`.
        try:
            await asyncio.gather(self.admission.stop(), self.monitoring.stop())
        finally:
            await self.tls.stop()
            if self._tenants_task is not None:
                self._tenants_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._tenants_task
        log.info("webhook_stopped")
