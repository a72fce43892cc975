"""Operator tooling for the command line, the embedded run and tests: topics, config, producing, tailing."""


from __future__ import annotations

import asyncio
import datetime as dt
import json
import sys
import time
from importlib import resources
from pathlib import Path

from core.config import ConfigError, parse_config, read_config_file
from core.errors import UsageError
from core.settings import Settings
from core.topics import MAX_EVENT_TOPIC_BYTES, Topics, describe_topic_configs, ensure_topics, partition_ids


def bundled(name: str) -> Path:
    return Path(str(resources.files("activity_sync").joinpath(f"data/{name}")))


def seed_lines() -> list[bytes]:
    return [line.encode() for line in bundled("seed_activities.jsonl").read_text().splitlines() if line.strip()]


def raw_key(line: bytes) -> bytes | None:
    """The member's contact key for a raw event (the key producers are asked to use), if it has one."""
    from core.catalog import load_catalog
    from streams.enrich import choose_customer, contact_key_of

    try:
        ev = json.loads(line)
    except ValueError:
        return None
    if not isinstance(ev, dict):
        return None
    cat = load_catalog()
    _, field = choose_customer(ev, cat.customer_key(str(ev.get("ActivityCode"))))
    ck = contact_key_of(field, ev)
    return ck.encode() if ck else None


# --------------------------------------------------------------------------- commands

async def cmd_topics(settings: Settings, describe: bool) -> None:
    topics = Topics(settings.topic_prefix)
    specs = topics.specs(settings.partitions)
    result = await ensure_topics(settings.kafka, specs)
    for s in specs:
        print(f"{s.name:32} {result[s.name]:8} partitions={s.partitions} {s.config}")
    if describe:
        cfgs = await describe_topic_configs(settings.kafka, [s.name for s in specs])
        for name, cfg in cfgs.items():
            keys = ("cleanup.policy", "retention.ms", "max.message.bytes")
            print(name, {k: cfg.get(k) for k in keys})


async def publish_config(settings: Settings, path: str | Path) -> int:
    from aiokafka import AIOKafkaProducer

    cfg = parse_config(read_config_file(path))
    producer = AIOKafkaProducer(acks="all", **settings.kafka.aiokafka_kwargs())
    await producer.start()
    try:
        for key, value in cfg.records():
            await producer.send(Topics(settings.topic_prefix).config, key=key.encode(), value=value)
        await producer.flush()
    finally:
        await producer.stop()
    return len(cfg.records())


async def produce_lines(settings: Settings, lines: list[bytes]) -> int:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(acks="all", max_request_size=MAX_EVENT_TOPIC_BYTES, linger_ms=5,
                                **settings.kafka.aiokafka_kwargs())
    await producer.start()
    try:
        topic = Topics(settings.topic_prefix).raw
        futs = [await producer.send(topic, key=raw_key(line), value=line) for line in lines]
        await asyncio.gather(*futs)
    finally:
        await producer.stop()
    return len(lines)


def _jsonable(record: dict) -> dict:
    out = dict(record)
    for k, v in out.items():
        if isinstance(v, dt.datetime):
            out[k] = v.astimezone(dt.timezone.utc).isoformat().replace("+00:00", "Z")
    return out


def format_message(msg, kind: str, registry_url: str | None) -> dict:
    from core.avro import CONFLUENT_MAGIC, SINGLE_OBJECT_MARKER, DecodeError, decode_any

    base = {"partition": msg.partition, "offset": msg.offset,
            "key": msg.key.decode("utf-8", "replace") if msg.key else None}
    if kind == "scores":
        from core.avro import decode_member_score

        try:
            base["value"] = _jsonable(decode_member_score(msg.value)) if msg.value else None
        except DecodeError as exc:
            base["error"] = str(exc)
        return base
    if kind == "enriched":
        try:
            base["value"] = _jsonable(decode_any(msg.value, registry_url))
        except DecodeError as exc:
            base["error"] = str(exc)
    else:
        headers = {k: v.decode("utf-8", "replace") for k, v in (msg.headers or [])}
        if headers:
            base["headers"] = headers
        value = msg.value or b""
        if value[:2] == SINGLE_OBJECT_MARKER or (value[:1] == CONFLUENT_MAGIC and registry_url):
            # the delivery stage's dead letters and retries carry the enriched record: decode it
            try:
                base["value"] = _jsonable(decode_any(value, registry_url))
                return base
            except DecodeError as exc:
                base["error"] = str(exc)
        if kind == "dead" and value[:1] in (b"{", b"["):
            try:
                base["value"] = json.loads(value)  # the stream stage's dead letters: the raw event
                return base
            except ValueError:
                pass
        text = value[:2000].decode("utf-8", "replace")
        base["value"] = text + (f"... ({len(value)} bytes)" if len(value) > 2000 else "")
    return base


def summary(rec: dict) -> str:
    """A few lines a person reads: what happened, who, when, where it goes and how it is described."""
    v = rec.get("value")
    if not isinstance(v, dict):
        return json.dumps(rec, ensure_ascii=False)
    if "member" in v and "score" in v:  # a member.scores record
        return (f"{v['tenant_code']} {v['member']}: score {v['score']:.2f} as of {v['score_as_of']}, "
                f"{v['activities']} activities, {v['points']:g} points (first {v['first_seen']}, last "
                f"{v['last_activity']})")
    lines = [f"{v['activity_code']} [{v['category']}] {v['activity_date']}  customer {v['customer_id']} "
             f"(from {v['customer_key_field']})  key {v['activity_key']}"]
    if v.get("link_url"):
        lines.append(f"  link: {v['link_url']}")
    lines.append(f"  details: {len(v['details'])} properties (details_xml {len(v['details_xml'])} chars)")
    for d in v["deliveries"]:
        codes = "/".join(c for c in (d["writeback_code1"], d["writeback_code2"]) if c)
        lines.append(f"  -> {d['endpoint']} ({d['provider_type']}) [{codes}]: {d['description']}")
    if not v["deliveries"]:
        lines.append("  -> no enabled subscription: enriched, delivered nowhere")
    return "\n".join(lines)


def tenant_of(msg, rec: dict) -> str | None:
    """The tenant a message belongs to: its ``tenant`` / ``error.tenant`` / ``retry.tenant`` header, else
    the decoded record's ``tenant_code``, else a raw event's ``TenantCode``."""
    from core import headers as H

    h = H.text(msg.headers)
    for name in (H.TENANT, H.ERROR_TENANT, H.RETRY_TENANT):
        if h.get(name):
            return h[name]
    v = rec.get("value")
    if isinstance(v, dict):
        return v.get("tenant_code")
    try:
        ev = json.loads(msg.value or b"")
        return ev.get("TenantCode") if isinstance(ev, dict) else None
    except ValueError:
        return None


async def tail(settings: Settings, topic_name: str, from_beginning: bool, max_records: int | None,
               idle: float | None, pretty: bool, out=sys.stdout, brief: bool = False,
               tenant: str | None = None) -> int:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    topics = Topics(settings.topic_prefix)
    names = {"enriched": topics.enriched, "dead": topics.dead, "raw": topics.raw, "config": topics.config,
             "scores": topics.member_scores, "anmc-report": topics.anmc_report}
    topic = names.get(topic_name, topic_name)
    kind = "enriched" if topic == topics.enriched else "dead" if topic == topics.dead else \
        "scores" if topic == topics.member_scores else "other"
    consumer = AIOKafkaConsumer(enable_auto_commit=False, auto_offset_reset="earliest",
                                max_partition_fetch_bytes=MAX_EVENT_TOPIC_BYTES + 65536,
                                fetch_max_bytes=4 * MAX_EVENT_TOPIC_BYTES, **settings.kafka.aiokafka_kwargs())
    await consumer.start()
    count = 0
    try:
        parts = [TopicPartition(topic, p) for p in await partition_ids(settings.kafka, topic)]
        if not parts:
            raise SystemExit(f"topic {topic} does not exist")
        consumer.assign(parts)
        if from_beginning:
            await consumer.seek_to_beginning(*parts)
        else:
            await consumer.seek_to_end(*parts)
        last = time.monotonic()
        while max_records is None or count < max_records:
            batch = await consumer.getmany(timeout_ms=500)
            if not batch:
                if idle is not None and time.monotonic() - last > idle:
                    break
                continue
            last = time.monotonic()
            for m in (m for msgs in batch.values() for m in msgs):  # --max counts across partitions
                rec = format_message(m, kind, settings.schema_registry_url)
                if tenant is not None and tenant_of(m, rec) != tenant:
                    continue
                if brief:
                    out.write(summary(rec) + "\n\n")
                else:
                    out.write((json.dumps(rec, indent=2, ensure_ascii=False) if pretty
                               else json.dumps(rec, ensure_ascii=False)) + "\n")
                out.flush()
                count += 1
                if max_records is not None and count >= max_records:
                    break
    finally:
        await consumer.stop()
    return count


def check_config_file(path) -> None:
    """Everything a config can be refused for, before any of it is published: the file itself (YAML,
    size, anchors, tags), templates, names (core.config), and each endpoint's provider and
    settings (sinks.registry, the one parse path). Raises UsageError naming file, endpoint and field."""
    from sinks.registry import SettingsError, parse_endpoint
    from sources.registry import SourceSettingsError, parse_source

    try:
        doc = read_config_file(path)
    except ConfigError as exc:
        raise UsageError(str(exc)) from None
    try:
        cfg = parse_config(doc)
        for ep in cfg.endpoints:
            parse_endpoint(ep)
        for src in cfg.sources:
            parse_source(src)
    except (ConfigError, SettingsError, SourceSettingsError) as exc:
        where = f" (field {exc.field})" if exc.field and exc.field not in str(exc) else ""
        raise UsageError(f"{path}: {exc}{where}") from None


def check_and_read(path) -> dict:
    check_config_file(path)
    return read_config_file(path)
