"""Prometheus metrics of the pool sink worker (:mod:`sinks.pool`), beside its children's own."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

ENDPOINTS = Gauge("activity_sync_pool_endpoints", "Enabled endpoints this pool serves (activity.config)")
RUNNING = Gauge("activity_sync_pool_workers_running", "Endpoint workers this pool has running")
STARTS = Counter("activity_sync_pool_worker_starts_total", "Endpoint workers started, new or again after an exit",
                 ["endpoint", "why"])  # new, restart
EXITS = Counter("activity_sync_pool_worker_exits_total", "Endpoint workers that exited, stopped or crashed",
                ["endpoint", "how"])  # stopped, crashed
