"""Prometheus metrics of the scoring stage (:mod:`streams.scores`)."""

from __future__ import annotations

from prometheus_client import Counter

SCORED = Counter("activity_sync_scores_activities_total", "activities counted into members' scores")
REPEATS = Counter("activity_sync_scores_repeats_total", "activities seen again (at least once delivery): counted once")
STALE = Counter("activity_sync_scores_stale_total", "records of an older scoring generation (before a rebuild), dropped")
UNSCORED = Counter("activity_sync_scores_unscored_total",
                   "enriched activities not scored: no model for the tenant, no member, or a score activity")
