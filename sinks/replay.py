"""Replay: put chosen dead letters of the delivery stage back into delivery.

Selection: by endpoint, by the time they were dead-lettered (``--since``/``--until``), by
ActivityKey. Only the newest dead letter of an (endpoint, ActivityKey) counts: an older one has
been superseded. A replayed record goes to the first retry tier, due at once, with a fresh
two-week window and ``replay.count`` one higher; a record already replayed ``max_replays`` times
is refused (and said so). Each replay is remembered in the compacted ``activity.replays`` topic,
keyed by the dead letter's position, so running the same command twice replays nothing twice.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from core import headers as H
from core.envvars import env_int
from core.settings import Settings
from core.topics import MAX_EVENT_TOPIC_BYTES, Topics, partition_ids


DEFAULT_MAX_REPLAYS = 3


def max_replays() -> int:
    """How often the same dead letter may be put back (``ACTIVITY_SYNC_MAX_REPLAYS``, default 3)."""
    return env_int("ACTIVITY_SYNC_MAX_REPLAYS", DEFAULT_MAX_REPLAYS, 0, 1000)


@dataclass
class Candidate:
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    info: H.DeadInfo

    @property
    def marker(self) -> str:
        return f"{self.partition}:{self.offset}"

    @property
    def activity_key(self) -> str:
        return self.info.activity_key

    @property
    def replay_count(self) -> int:
        return self.info.replay_count


@dataclass
class Decision:
    candidate: Candidate
    action: str   # replay, refused, already-replayed
    reason: str = ""


def parse_time(text: str | None) -> float | None:
    if not text:
        return None
    from core.envelope import parse_date

    if len(text) == 10:  # a date alone: midnight UTC
        text += "T00:00:00Z"
    return parse_date(text, "time").timestamp()


async def read_topic(settings: Settings, topic: str) -> list:
    consumer = AIOKafkaConsumer(enable_auto_commit=False, max_partition_fetch_bytes=MAX_EVENT_TOPIC_BYTES + 65536,
                                **settings.kafka.aiokafka_kwargs())
    await consumer.start()
    out = []
    try:
        parts = [TopicPartition(topic, p) for p in await partition_ids(settings.kafka, topic)]
        if not parts:
            return out
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        end = await consumer.end_offsets(parts)
        while any([await consumer.position(tp) < end[tp] for tp in parts]):
            for msgs in (await consumer.getmany(timeout_ms=500)).values():
                out.extend(m for m in msgs if m.offset < end[TopicPartition(m.topic, m.partition)])
        return out
    finally:
        await consumer.stop()


async def plan(settings: Settings, endpoint: str | None, since: float | None, until: float | None,
               keys: set[str] | None, max_replays: int, tenant: str | None = None) -> list[Decision]:
    t = Topics(settings.topic_prefix)
    replayed = {m.key.decode() for m in await read_topic(settings, t.replays) if m.key and m.value is not None}
    newest: dict[tuple[str, str], Candidate] = {}
    for m in await read_topic(settings, t.dead):
        info = H.parse_dead(m.headers, m.timestamp)
        if info.stage != "deliver" or not info.endpoint:
            continue
        if (endpoint and info.endpoint != endpoint) or (tenant and info.tenant != tenant):
            continue
        when = info.timestamp or 0
        if (since is not None and when < since) or (until is not None and when >= until):
            continue
        c = Candidate(m.partition, m.offset, m.key, m.value, info)
        if keys and c.activity_key not in keys:
            continue
        newest[(info.endpoint, c.activity_key)] = c  # read in offset order per partition
    decisions = []
    for c in sorted(newest.values(), key=lambda c: (c.partition, c.offset)):
        if c.marker in replayed:
            decisions.append(Decision(c, "already-replayed", "this dead letter was replayed before"))
        elif c.replay_count >= max_replays:
            decisions.append(Decision(c, "refused", f"replayed {c.replay_count} times already (limit {max_replays})"))
        else:
            decisions.append(Decision(c, "replay"))
    return decisions


async def execute(settings: Settings, decisions: list[Decision]) -> int:
    t = Topics(settings.topic_prefix)
    producer = AIOKafkaProducer(acks="all", max_request_size=MAX_EVENT_TOPIC_BYTES + 65536,
                                **settings.kafka.aiokafka_kwargs())
    await producer.start()
    n = 0
    try:
        for d in decisions:
            if d.action != "replay":
                continue
            c = d.candidate
            now = time.time()
            headers = H.retry(c.info.endpoint, c.info.tenant, c.activity_key, (t.dead, c.partition, c.offset),
                              attempts=0, first_failure=now,  # a fresh two-week window
                              due=now, tier=H.FIRST_TIER, error_class=c.info.error_class, error=c.info.message,
                              replay_count=c.replay_count + 1, replay_from=f"{t.dead}:{c.marker}")
            await producer.send_and_wait(t.retry(H.FIRST_TIER), key=c.key, value=c.value, headers=headers)
            await producer.send_and_wait(t.replays, key=c.marker.encode(), value=json.dumps(
                {"endpoint": c.info.endpoint, "tenant": c.info.tenant, "activity_key": c.activity_key,
                 "replay_count": c.replay_count + 1, "at": dt.datetime.now(dt.timezone.utc).isoformat()}).encode())
            n += 1
    finally:
        await producer.stop()
    return n
