"""The operator's Prometheus collectors.

Names mirror controller-runtime and client-go with our `moorage_` prefix so that dashboards and
alerts written for Go operators translate one to one. Every collector is created against the
`CollectorRegistry` handed in, never the global one, so tests can build as many as they like.

This module only defines and labels collectors; the runtime decides when to observe.
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# client-go's workqueue buckets: 1 µs to 10 s, by powers of ten.
_QUEUE_BUCKETS = tuple(10.0**e for e in range(-8, 2))
# controller-runtime's reconcile buckets: 5 ms to 60 s.
_RECONCILE_BUCKETS = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.15,
    0.2,
    0.25,
    0.3,
    0.35,
    0.4,
    0.45,
    0.5,
    0.6,
    0.7,
    0.8,
    0.9,
    1.0,
    1.25,
    1.5,
    1.75,
    2.0,
    2.5,
    3.0,
    3.5,
    4.0,
    4.5,
    5.0,
    6.0,
    7.0,
    8.0,
    9.0,
    10.0,
    15.0,
    20.0,
    25.0,
    30.0,
    40.0,
    50.0,
    60.0,
)
_REST_BUCKETS = (0.005, 0.025, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0, 60.0)


@dataclass(frozen=True, slots=True)
class WorkQueueMetrics:
    """The workqueue collectors bound to one queue's `name` label."""

    depth: Gauge
    adds: Counter
    queue_duration: Histogram
    work_duration: Histogram
    retries: Counter
    unfinished_work: Gauge
    longest_running: Gauge


@dataclass(frozen=True, slots=True)
class ControllerMetrics:
    """The controller collectors bound to one controller's `controller` label."""

    name: str
    reconcile_total: Counter
    """Labelled further by `result` at observation time; see `count_result`."""
    reconcile_errors: Counter
    terminal_errors: Counter
    reconcile_time: Histogram
    active_workers: Gauge
    max_concurrent: Gauge

    def count_result(self, result: str) -> None:
        """One reconcile ended with `result` (success, error, requeue_after)."""
        self.reconcile_total.labels(controller=self.name, result=result).inc()


class OperatorMetrics:
    """Every collector of the operator, registered on one registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.reconcile_total = Counter(
            "moorage_controller_reconcile",
            "Total number of reconciliations per controller and result.",
            ["controller", "result"],
            registry=registry,
        )
        self.reconcile_errors = Counter(
            "moorage_controller_reconcile_errors",
            "Total number of reconciliation errors per controller.",
            ["controller"],
            registry=registry,
        )
        self.terminal_errors = Counter(
            "moorage_controller_terminal_reconcile_errors",
            "Total number of terminal reconciliation errors (not retried) per controller.",
            ["controller"],
            registry=registry,
        )
        self.reconcile_time = Histogram(
            "moorage_controller_reconcile_time_seconds",
            "Length of time per reconciliation per controller.",
            ["controller"],
            buckets=_RECONCILE_BUCKETS,
            registry=registry,
        )
        self.active_workers = Gauge(
            "moorage_controller_active_workers",
            "Number of currently used workers per controller.",
            ["controller"],
            registry=registry,
        )
        self.max_concurrent = Gauge(
            "moorage_controller_max_concurrent_reconciles",
            "Maximum number of concurrent reconciles per controller.",
            ["controller"],
            registry=registry,
        )
        self.queue_depth = Gauge(
            "moorage_workqueue_depth",
            "Current depth of the work queue.",
            ["name"],
            registry=registry,
        )
        self.queue_adds = Counter(
            "moorage_workqueue_adds",
            "Total number of adds handled by the work queue.",
            ["name"],
            registry=registry,
        )
        self.queue_duration = Histogram(
            "moorage_workqueue_queue_duration_seconds",
            "How long in seconds an item stays in the work queue before being requested.",
            ["name"],
            buckets=_QUEUE_BUCKETS,
            registry=registry,
        )
        self.work_duration = Histogram(
            "moorage_workqueue_work_duration_seconds",
            "How long in seconds processing an item from the work queue takes.",
            ["name"],
            buckets=_QUEUE_BUCKETS,
            registry=registry,
        )
        self.queue_retries = Counter(
            "moorage_workqueue_retries",
            "Total number of retries handled by the work queue.",
            ["name"],
            registry=registry,
        )
        self.unfinished_work = Gauge(
            "moorage_workqueue_unfinished_work_seconds",
            "How many seconds of work has been done that is in progress and has not been "
            "observed by work_duration. Large values indicate stuck threads.",
            ["name"],
            registry=registry,
        )
        self.longest_running = Gauge(
            "moorage_workqueue_longest_running_processor_seconds",
            "How many seconds has the longest running processor for the work queue been running.",
            ["name"],
            registry=registry,
        )
        self.leader_status = Gauge(
            "moorage_leader_election_status",
            "1 while this replica holds the named lease, 0 otherwise.",
            ["name"],
            registry=registry,
        )
        self.rest_requests = Counter(
            "moorage_rest_client_requests",
            "Number of HTTP requests to the Kubernetes API, partitioned by verb and status code.",
            ["verb", "code"],
            registry=registry,
        )
        self.rest_duration = Histogram(
            "moorage_rest_client_request_duration_seconds",
            "Request latency to the Kubernetes API in seconds, by verb.",
            ["verb"],
            buckets=_REST_BUCKETS,
            registry=registry,
        )

    def workqueue(self, name: str) -> WorkQueueMetrics:
        """The workqueue collectors for the queue called `name` (children created now so the
        series exist at zero before the first add)."""
        return WorkQueueMetrics(
            depth=self.queue_depth.labels(name=name),
            adds=self.queue_adds.labels(name=name),
            queue_duration=self.queue_duration.labels(name=name),
            work_duration=self.work_duration.labels(name=name),
            retries=self.queue_retries.labels(name=name),
            unfinished_work=self.unfinished_work.labels(name=name),
            longest_running=self.longest_running.labels(name=name),
        )

    def controller(self, name: str) -> ControllerMetrics:
        """The controller collectors for the controller called `name`."""
        for result in ("success", "error", "requeue_after"):
            self.reconcile_total.labels(controller=name, result=result)
        return ControllerMetrics(
            name=name,
            reconcile_total=self.reconcile_total,
            reconcile_errors=self.reconcile_errors.labels(controller=name),
            terminal_errors=self.terminal_errors.labels(controller=name),
            reconcile_time=self.reconcile_time.labels(controller=name),
            active_workers=self.active_workers.labels(controller=name),
            max_concurrent=self.max_concurrent.labels(controller=name),
        )

    def leader(self, lease_name: str) -> Gauge:
        """The leader-election gauge for the lease called `lease_name`, starting at 0."""
        gauge = self.leader_status.labels(name=lease_name)
        gauge.set(0)
        return gauge

    def observe_request(self, verb: str, status: int, seconds: float) -> None:
        """A `moorage_core.kube.RequestObserver`: count and time one API request."""
        code = str(status) if status else "<error>"
        self.rest_requests.labels(verb=verb, code=code).inc()
        self.rest_duration.labels(verb=verb).observe(seconds)
