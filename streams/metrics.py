"""Prometheus metrics of the stream worker, served on ``/metrics`` (:mod:`core.health`)."""

from __future__ import annotations

import logging

from prometheus_client import Counter, Histogram

from core.metrics import OTHER

log = logging.getLogger("activity_sync.metrics")

EVENTS_IN = Counter("activity_sync_events_in_total", "Raw events read from activity.raw")
ENRICHED = Counter("activity_sync_events_enriched_total", "Events written to activity.enriched")
DEAD = Counter("activity_sync_events_dead_lettered_total", "Events sent to activity.dead", ["reason"])
UNKNOWN = Counter("activity_sync_unknown_activity_codes_total",
                  "Enriched events whose ActivityCode is not in the catalog (category Uncategorized)", ["code"])
ROUTED = Counter("activity_sync_deliveries_routed_total", "Delivery entries added, by endpoint", ["endpoint"])
LATENCY = Histogram("activity_sync_enrich_latency_seconds",
                    "From the raw event's Kafka timestamp to its enrichment",
                    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300))
BATCH_SECONDS = Histogram("activity_sync_enrich_batch_seconds", "Processing time of one batch of raw events")
UNROUTED = Counter("activity_sync_unrouted_activities_total",
                   "Enriched activities that no enabled endpoint of their tenant subscribes to", ["tenant"])

_MAX_CODE_LABELS = 200
_seen_codes: set[str] = set()


def unknown_code(code: str) -> None:
    """Count an unknown code; label values are capped so a noisy producer cannot explode the series."""
    if code not in _seen_codes and len(_seen_codes) < _MAX_CODE_LABELS:
        _seen_codes.add(code)
        log.warning("unknown activity code %r: enriched as Uncategorized (add it to the catalog)", code)
    UNKNOWN.labels(code if code in _seen_codes else OTHER).inc()


def unrouted(tenant: str, configured: frozenset[str]) -> None:
    """Count an activity routed nowhere, by tenant: a configured tenant by its code, any other as
    ``_other`` (a TenantCode comes from producers: it must not grow the series without limit)."""
    UNROUTED.labels(tenant if tenant in configured else OTHER).inc()
