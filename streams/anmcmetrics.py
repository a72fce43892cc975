"""Prometheus metrics of the Action Network ↔ Mobile Commons sync's stream stage (:mod:`streams.anmc`)."""

from __future__ import annotations

from prometheus_client import Counter

ANMC_OUTCOMES = Counter("activity_sync_anmc_profiles_total",
                        "profiles the sync handled, by sync and report outcome (created, subscribed, opted out, ...)",
                        ["sync", "outcome"])
ANMC_SKIPPED = Counter("activity_sync_anmc_skipped_total",
                       "change records of no active sync (deactivated, or a source no sync names)")
