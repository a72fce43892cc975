"""Prometheus metrics of the sink workers, served on ``/metrics``."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

DELIVERIES = Counter("activity_sync_deliveries_total", "Deliveries by endpoint and outcome",
                     ["endpoint", "outcome"])  # delivered, retried, dead
DEAD_REASONS = Counter("activity_sync_delivery_dead_letters_total", "Dead-lettered deliveries by reason",
                       ["endpoint", "reason"])
_LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 6 * 3600, 86400, 7 * 86400,
                    14 * 86400, 365 * 86400)
LATENCY = Histogram("activity_sync_delivery_latency_seconds",
                    "From the activity's time (ActivityDate) to the CRM's acknowledgement", ["endpoint"],
                    buckets=_LATENCY_BUCKETS)
PIPELINE_LATENCY = Histogram("activity_sync_delivery_pipeline_latency_seconds",
                             "From enrichment (enriched_at) to the CRM's acknowledgement", ["endpoint"],
                             buckets=_LATENCY_BUCKETS)
RETRY_BACKLOG = Gauge("activity_sync_retry_backlog",
                      "Records in a retry tier this endpoint's consumer group has not yet passed",
                      ["endpoint", "tier"])
HTTP = Counter("activity_sync_sink_http_responses_total", "HTTP responses from the CRM by status",
               ["endpoint", "status"])
WAITS = Counter("activity_sync_rate_limit_waits_total", "Waits before a request, by reason",
                ["endpoint", "reason"])  # retry_after, rate_limit
WAIT_SECONDS = Counter("activity_sync_rate_limit_wait_seconds_total", "Seconds waited before requests",
                       ["endpoint", "reason"])
ENRICHED_LAG = Gauge("activity_sync_enriched_lag",
                     "Records of activity.enriched this endpoint's consumer group has not yet passed (its lag)",
                     ["endpoint"])
PAUSED = Gauge("activity_sync_endpoint_paused",
               "1 while an endpoint's deliveries wait (disabled, settings it cannot use, or a setup error the "
               "API answered)", ["endpoint"])
SETUP_ERRORS = Counter("activity_sync_endpoint_setup_errors_total",
                       "Times an endpoint paused because the API answered that its setup is wrong (a missing "
                       "field or permission, an unsupported version): no record can succeed until it is fixed",
                       ["endpoint"])
NEXT_RUN = Gauge("activity_sync_bulk_next_run_timestamp_seconds",
                 "When the next bulk run of an interval-scheduled endpoint starts", ["endpoint"])
LAST_RUN_COUNT = Gauge("activity_sync_bulk_last_run_records", "Records the last bulk run delivered", ["endpoint"])
LAST_RUN_SECONDS = Gauge("activity_sync_bulk_last_run_seconds", "How long the last bulk run took", ["endpoint"])


class EndpointStatus:
    """What a sink worker says of its endpoint in ``activity.control`` (``status:<endpoint>:<worker>``),
    for the admin page: counts since start, last success, last error, the last wait and why."""

    def __init__(self) -> None:
        self.delivered = self.retried = self.dead = 0
        self.last_success_at: float | None = None
        self.last_error: str | None = None
        self.last_error_class: str | None = None
        self.last_error_at: float | None = None
        self.last_wait_reason: str | None = None
        self.last_wait_at: float | None = None
        self.last_wait_s = 0.0

    def as_dict(self) -> dict:
        return dict(vars(self))


STATUS: dict[str, EndpointStatus] = {}


def status(endpoint: str) -> EndpointStatus:
    return STATUS.setdefault(endpoint, EndpointStatus())


class MetricsOutcome:
    """The runner's outcome hooks, counted (metrics, and the endpoint's :class:`EndpointStatus`)."""

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self.status = status(endpoint)

    def failed(self, error) -> None:
        import time

        self.status.last_error = str(error)[:500]
        self.status.last_error_class = type(error).__name__
        self.status.last_error_at = time.time()

    def delivered(self, p, now: float) -> None:
        self.status.delivered += 1
        self.status.last_success_at = now
        DELIVERIES.labels(self.endpoint, "delivered").inc()
        LATENCY.labels(self.endpoint).observe(max(0.0, now - p.delivery.activity_date.timestamp()))
        if p.enriched_at:
            PIPELINE_LATENCY.labels(self.endpoint).observe(max(0.0, now - p.enriched_at))

    def retried(self, p, tier: str) -> None:
        self.status.retried += 1
        DELIVERIES.labels(self.endpoint, "retried").inc()

    def dead(self, p, reason: str) -> None:
        self.status.dead += 1
        DELIVERIES.labels(self.endpoint, "dead").inc()
        DEAD_REASONS.labels(self.endpoint, reason).inc()

    def waited(self, reason: str, seconds: float) -> None:
        import time

        self.status.last_wait_reason, self.status.last_wait_at, self.status.last_wait_s = reason, time.time(), seconds
        WAITS.labels(self.endpoint, reason).inc()
        WAIT_SECONDS.labels(self.endpoint, reason).inc(seconds)

API_USAGE = Gauge("activity_sync_sink_api_usage", "The CRM's own API allocation as it reports it "
                  "(Salesforce Sforce-Limit-Info): requests used and the limit", ["endpoint", "kind"])
