"""Every topic the pipeline uses, declared with explicit partition counts and configs.

Faust creates only its own internal topics; these are created here, before any worker starts,
so partition counts and retention are what this file says and not a broker default.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .headers import RETRY_TIERS, TWO_WEEKS_MS
from .settings import KafkaSettings

MAX_EVENT_TOPIC_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    config: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Topics:
    """Topic names, with an optional prefix (tests and shared clusters namespace by it)."""

    prefix: str = ""

    def _n(self, name: str) -> str:
        return f"{self.prefix}{name}"

    @property
    def raw(self) -> str:
        return self._n("activity.raw")

    @property
    def enriched(self) -> str:
        return self._n("activity.enriched")

    @property
    def dead(self) -> str:
        return self._n("activity.dead")

    @property
    def config(self) -> str:
        return self._n("activity.config")

    @property
    def replays(self) -> str:
        return self._n("activity.replays")

    @property
    def control(self) -> str:
        return self._n("activity.control")

    @property
    def audit(self) -> str:
        return self._n("activity.audit")

    # The Push API (sources.push) and its member directory (streams.directory)
    @property
    def push_contacts(self) -> str:
        return self._n("push.contacts")

    @property
    def push_lists(self) -> str:
        return self._n("push.lists")

    @property
    def push_memberships(self) -> str:
        return self._n("push.memberships")

    @property
    def push_directory(self) -> str:
        return self._n("push.directory")

    @property
    def push_list_state(self) -> str:
        return self._n("push.list-state")

    @property
    def push_keys(self) -> str:
        return self._n("push.keys")

    # Polling sources (sources.runner)
    @property
    def source_offsets(self) -> str:
        return self._n("source.offsets")

    # The Action Network <-> Mobile Commons sync (sources.actionnetwork, sources.mobilecommons, streams.anmc)
    @property
    def anmc_changes(self) -> str:
        return self._n("anmc.changes")

    @property
    def anmc_identities(self) -> str:
        return self._n("anmc.identities")

    @property
    def anmc_report(self) -> str:
        return self._n("anmc.report")

    # Engagement scores (streams.scores)
    @property
    def scores_activities(self) -> str:
        return self._n("scores.activities")

    @property
    def scores_state(self) -> str:
        return self._n("scores.state")

    @property
    def member_scores(self) -> str:
        return self._n("member.scores")

    # Community lists (streams.lists) and the Online Community Connection
    @property
    def lists_activities(self) -> str:
        return self._n("lists.activities")

    @property
    def lists_state(self) -> str:
        return self._n("lists.state")

    @property
    def list_members(self) -> str:
        return self._n("list.members")

    def retry(self, tier: str) -> str:
        return self._n(f"activity.retry.{tier}")

    @property
    def retries(self) -> list[str]:
        return [self.retry(t) for t, _ in RETRY_TIERS]

    def specs(self, partitions: int) -> list[TopicSpec]:
        big = {"max.message.bytes": str(MAX_EVENT_TOPIC_BYTES)}
        specs = [
            TopicSpec(self.raw, partitions, {**big, "retention.ms": str(7 * 24 * 3600 * 1000)}),
            # Enrichment makes a record larger than its raw event: room for the largest accepted one.
            TopicSpec(self.enriched, partitions, {**big, "retention.ms": str(TWO_WEEKS_MS)}),
            # Dead letters are never dropped by time: an operator replays or deletes them.
            TopicSpec(self.dead, partitions, {**big, "retention.ms": "-1"}),
            TopicSpec(self.config, 1, {"cleanup.policy": "compact", "min.compaction.lag.ms": "0",
                                       "segment.ms": str(3600 * 1000)}),
            # Which dead letters were replayed (keyed by their position), so no replay happens twice.
            TopicSpec(self.replays, 1, {"cleanup.policy": "compact"}),
            # Endpoint-wide holds (a Retry-After shared by every worker of an endpoint), keyed by endpoint.
            TopicSpec(self.control, 1, {"cleanup.policy": "compact", "min.compaction.lag.ms": "0",
                                        "segment.ms": str(3600 * 1000)}),
            # Every change made through the admin API: who (which key), when, what changed. Kept.
            TopicSpec(self.audit, 1, {"retention.ms": "-1"}),
        ]
        specs += [TopicSpec(name, partitions, {**big, "retention.ms": str(TWO_WEEKS_MS)}) for name in self.retries]
        compact = {"cleanup.policy": "compact", "min.compaction.lag.ms": "0", "segment.ms": str(3600 * 1000)}
        specs += [
            # The Push API's contacts: the full current record per tenant|ContactId (a soft delete is a
            # record, never a tombstone), so the topic is the contacts' latest state forever.
            TopicSpec(self.push_contacts, partitions, {**compact, "max.message.bytes": str(MAX_EVENT_TOPIC_BYTES)}),
            # List operations (Add and Remove are partial): kept, applied in order by the directory.
            TopicSpec(self.push_lists, partitions, {"retention.ms": "-1", "max.message.bytes": str(MAX_EVENT_TOPIC_BYTES)}),
            # One contact's list changes, keyed tenant|ContactId: read with push.contacts (co-partitioned).
            TopicSpec(self.push_memberships, partitions, {"retention.ms": "-1"}),
            # The directory's tables' changelogs (Faust writes them; every reader follows push.directory).
            TopicSpec(self.push_directory, partitions, {**compact, "max.message.bytes": str(MAX_EVENT_TOPIC_BYTES)}),
            TopicSpec(self.push_list_state, partitions, {**compact, "max.message.bytes": str(MAX_EVENT_TOPIC_BYTES)}),
            TopicSpec(self.push_keys, 1, compact),
            # Each polling source's cursor (lastUpdateDate + id), keyed by source name: the latest wins.
            TopicSpec(self.source_offsets, 1, {**compact, "max.message.bytes": str(MAX_EVENT_TOPIC_BYTES)}),
            # The sync: both pollers' people and profiles keyed by mobile number; its identity table's
            # changelog (the same keys: co-partitioned); its synchronization report, one line a profile.
            TopicSpec(self.anmc_changes, partitions, {**big, "retention.ms": str(TWO_WEEKS_MS)}),
            TopicSpec(self.anmc_identities, partitions, compact),
            TopicSpec(self.anmc_report, 1, {"retention.ms": str(90 * 24 * 3600 * 1000)}),
            # Scores: activities re-keyed by tenant|member for the scoring agent; its table's changelog;
            # the public result (Avro, schemas/member_score.avsc), compacted: each member's latest.
            TopicSpec(self.scores_activities, partitions, {"retention.ms": str(TWO_WEEKS_MS)}),
            TopicSpec(self.scores_state, partitions, {**compact, "max.message.bytes": str(MAX_EVENT_TOPIC_BYTES)}),
            TopicSpec(self.member_scores, partitions, {**compact, "max.message.bytes": str(MAX_EVENT_TOPIC_BYTES)}),
            # Lists: activities and scores re-keyed tenant|member (and the timer's ticks); the members'
            # states (the table's changelog); each list's members, compacted (key tenant|list|member, a
            # tombstone when a member leaves, kept a week so a feed's change token can say so), each
            # list in one partition (its offset is the feed's change token).
            TopicSpec(self.lists_activities, partitions, {"retention.ms": str(TWO_WEEKS_MS)}),
            TopicSpec(self.lists_state, partitions, {**compact, "max.message.bytes": str(MAX_EVENT_TOPIC_BYTES)}),
            TopicSpec(self.list_members, partitions, {**compact, "delete.retention.ms": str(7 * 24 * 3600 * 1000)}),
        ]
        return specs


async def ensure_topics(kafka: KafkaSettings, specs: list[TopicSpec]) -> dict[str, str]:
    """Create the topics that do not exist; answer ``{name: "created" | "exists"}``.

    An existing topic with fewer partitions than declared is an error (tables and consumer
    groups are sized by the declaration); any other creation error is raised with its message.
    """
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    rf, min_isr = replication()
    admin = AIOKafkaAdminClient(**kafka.aiokafka_kwargs())
    await admin.start()
    try:
        brokers = len((await admin.describe_cluster())["brokers"])
        if rf > brokers:
            raise TopicConfigError(f"ACTIVITY_SYNC_REPLICATION_FACTOR={rf} needs at least {rf} brokers; "
                                   f"{kafka.bootstrap_servers} has {brokers}")
        extra = {"min.insync.replicas": str(min_isr)} if rf > 1 else {}
        resp = await admin.create_topics(
            [NewTopic(s.name, s.partitions, rf, topic_configs={**s.config, **extra}) for s in specs]
        )
        out: dict[str, str] = {}
        for name, code, message in resp.topic_errors:
            if code == 0:
                out[name] = "created"
            elif code == 36:  # TOPIC_ALREADY_EXISTS
                out[name] = "exists"
            else:
                raise RuntimeError(f"creating topic {name} failed: error {code}: {message}")
        await _wait_for_leaders(admin, [s.name for s in specs])
        existing = [n for n, v in out.items() if v == "exists"]
        if existing:
            meta = await admin.describe_topics(existing)
            want = {s.name: s.partitions for s in specs}
            for t in meta:
                have = len(t["partitions"])
                if have < want[t["topic"]]:
                    raise RuntimeError(f"topic {t['topic']} exists with {have} partitions, {want[t['topic']]} declared")
        return out
    finally:
        await admin.close()


async def _wait_for_leaders(admin, names: list[str], timeout: float = 30.0) -> None:
    """A new topic refuses produce requests until each partition has a leader: wait for that."""
    import asyncio
    import time

    deadline = time.monotonic() + timeout
    while True:
        meta = await admin.describe_topics(names)
        missing = [t["topic"] for t in meta
                   if t.get("error_code") or not t["partitions"] or any(p["leader"] < 0 for p in t["partitions"])]
        if not missing:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"topics without partition leaders after {timeout:.0f}s: {missing}")
        await asyncio.sleep(0.2)


async def partition_ids(kafka: KafkaSettings, topic: str) -> list[int]:
    """The topic's partition numbers (empty if it does not exist)."""
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(**kafka.aiokafka_kwargs())
    await admin.start()
    try:
        meta = await admin.describe_topics([topic])
        return sorted(p["partition"] for t in meta if not t.get("error_code") for p in t["partitions"])
    finally:
        await admin.close()


class TopicConfigError(ValueError):
    """The topics cannot be declared as configured (a replication factor the cluster cannot give)."""


def replication() -> tuple[int, int]:
    """``(replication factor, min.insync.replicas)`` from ``ACTIVITY_SYNC_REPLICATION_FACTOR`` (default 1)
    and ``ACTIVITY_SYNC_MIN_INSYNC_REPLICAS`` (default 2 with three or more replicas, else 1), as given."""
    import os

    raw = os.environ.get("ACTIVITY_SYNC_REPLICATION_FACTOR", "1").strip()
    if not raw.isdigit() or not 1 <= int(raw) <= 16:
        raise TopicConfigError(f"ACTIVITY_SYNC_REPLICATION_FACTOR={raw!r}: a whole number from 1 to 16")
    rf = int(raw)
    mi_raw = os.environ.get("ACTIVITY_SYNC_MIN_INSYNC_REPLICAS", "").strip()
    if mi_raw and (not mi_raw.isdigit() or not 1 <= int(mi_raw) <= rf):
        raise TopicConfigError(f"ACTIVITY_SYNC_MIN_INSYNC_REPLICAS={mi_raw!r}: a whole number from 1 to the "
                               f"replication factor ({rf})")
    return rf, int(mi_raw) if mi_raw else (2 if rf >= 3 else 1)


async def describe_topic_configs(kafka: KafkaSettings, names: list[str]) -> dict[str, dict[str, str]]:
    """Read topic configs back from the broker: ``{topic: {config: value}}``."""
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

    admin = AIOKafkaAdminClient(**kafka.aiokafka_kwargs())
    await admin.start()
    try:
        responses = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, n) for n in names])
        out: dict[str, dict[str, str]] = {}
        for resp in responses:
            for res in resp.resources:
                error_code, _msg, _type, name, entries = res[:5]
                if error_code:
                    raise RuntimeError(f"describe_configs {name}: error {error_code}")
                out[name] = {e[0]: e[1] for e in entries}
        return out
    finally:
        await admin.close()
