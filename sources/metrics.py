"""Prometheus metrics of the polling-source workers, served on their metrics port (:mod:`core.health`).

Labelled by source name (from the config, a bounded set) and, for errors, by
:data:`sources.framework.ERROR_CLASSES`."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

RECORDS = Counter("activity_sync_source_records_total", "vendor records read by a source", ["source"])
ACTIVITIES = Counter("activity_sync_source_activities_total",
                     "activities a source produced to activity.raw (re-reads of a page included)", ["source"])
DEAD = Counter("activity_sync_source_dead_letters_total",
               "vendor records a source could not map, sent to activity.dead", ["source", "reason"])
ERRORS = Counter("activity_sync_source_errors_total",
                 "a source's failed requests (each retry counts), bad records and Kafka refusals, by class",
                 ["source", "error"])
POLLS_FAILED = Counter("activity_sync_source_polls_failed_total",
                       "polls given up (the next poll starts where it stopped), by the last error's class",
                       ["source", "error"])
REQUESTS = Counter("activity_sync_source_requests_total", "a source's HTTP answers, by status", ["source", "status"])
LAG = Gauge("activity_sync_source_lag_seconds",
            "now minus the update time of the newest record the source has passed (0 when nothing is newer)",
            ["source"])
LAST_SUCCESS = Gauge("activity_sync_source_last_success_timestamp_seconds",
                     "when a poll of the source last reached the end of the vendor's records", ["source"])
CURSOR = Gauge("activity_sync_source_cursor_timestamp_seconds",
               "the update time the source's cursor is at", ["source"])
