"""Prometheus metrics of the Push API ingest server, served on its metrics port (:mod:`core.health`)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

REQUESTS = Counter("activity_sync_ingest_requests_total", "Push API requests answered, by path and status",
                   ["path", "status"])
OBJECTS = Counter("activity_sync_ingest_objects_total",
                  "Push API objects, by path and outcome (stored on Kafka, refused as invalid)", ["path", "outcome"])
SECONDS = Histogram("activity_sync_ingest_request_seconds", "Push API request time, from headers to answer",
                    ["path"], buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
IN_FLIGHT = Gauge("activity_sync_ingest_in_flight_requests", "Push API requests being handled")
KAFKA_FAILURES = Counter("activity_sync_ingest_kafka_failures_total",
                         "Push API requests answered 503 because Kafka did not acknowledge the write in time")
