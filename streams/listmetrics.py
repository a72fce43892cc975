"""Prometheus metrics of the list stage (:mod:`streams.lists`)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

APPLIED = Counter("activity_sync_lists_activities_total", "activities applied to members' list states")
REPEATS = Counter("activity_sync_lists_repeats_total", "activities seen again (at least once delivery): counted once")
SCORES = Counter("activity_sync_lists_scores_total", "engagement scores applied to members' list states")
TICKS = Counter("activity_sync_lists_ticks_total", "members re-evaluated because a time window passed (or a list changed)")
CHANGES = Counter("activity_sync_lists_membership_changes_total", "members joining (in) or leaving (out) a list",
                  ["change"])
DUE = Gauge("activity_sync_lists_timers", "members with a time window to re-evaluate later (this worker)")
LISTS = Gauge("activity_sync_lists_defined", "lists defined (enabled or not), all tenants")
