"""The Action Network ↔ Mobile Commons sync's stream stage: a Faust app whose agent applies the rules.

The two pollers (``sources/actionnetwork``, ``sources/mobilecommons``) put every person and profile
they read on ``anmc.changes``, keyed by mobile number. The agent ``apply`` keeps the identity table
``anmc-identities`` (changelog ``anmc.identities``, co-partitioned with its input): per mobile
number, the Action Network id, the Mobile Commons profile id, the last status seen on each side and
what the sync last wrote to each side. For each record it runs :func:`core.anmc.an_change` or
:func:`core.anmc.mc_change` with the sync's settings (``anmc:<name>`` on ``activity.config``) and
sends:

- the writes, as raw activities (``AnmcProfileUpdate``, ``AnmcPersonUpsert``, ``AnmcPersonUpdate``)
  on ``activity.raw``: the stream stage enriches them and the sync's subscriptions route them to its
  ``mobilecommons`` and ``actionnetwork`` endpoints, whose sink workers write them with the delivery
  runner's retries, rate limits, dead letters and replay;
- one report line per profile on ``anmc.report``.

Every send is acknowledged before the table is written, and Faust flushes the changelog before it
commits the input offset: a crash repeats a record (the same ActivityKeys: the writes are
idempotent at both vendors), never loses one. A deactivated sync (``enabled: false``) is skipped.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys

import faust

from core import metrics as core_metrics
from core.anmc import SyncError, an_change, mc_change, parse_sync
from core.compacted import CompactedTopic
from core.errors import guarded
from core.faustapp import faust_role_main, make_app
from core.health import Health
from core.settings import Settings
from core.topics import Topics

from . import anmcmetrics as metrics

log = logging.getLogger("activity_sync.anmc")


class Syncs:
    """The syncs ``activity.config`` holds, by name and by the sources they read."""

    def __init__(self) -> None:
        self.by_name: dict = {}

    def apply(self, key: bytes, value: bytes | None) -> None:
        k = key.decode(errors="replace")
        if not k.startswith("anmc:"):
            return
        name = k.split(":", 1)[1]
        if value is None:
            self.by_name.pop(name, None)
            return
        try:
            self.by_name[name] = parse_sync(json.loads(value))
        except (ValueError, SyncError) as exc:
            log.error("activity.config %s refused: %s", k, exc)

    def for_source(self, source: str):
        return next((s for s in self.by_name.values()
                     if source in (s.action_network_source, s.mobile_commons_source)), None)


def create_app(settings: Settings | None = None, health: Health | None = None) -> faust.App:
    settings = settings or Settings.from_env()
    topics = Topics(settings.topic_prefix)
    n = settings.partitions
    app = make_app(f"{settings.app_id}-anmc", settings, "anmc", topic_partitions=n)
    raw = dict(key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")
    changes_in = app.topic(topics.anmc_changes, **raw)
    raw_out = app.topic(topics.raw, **raw)
    report_out = app.topic(topics.anmc_report, **raw)
    identities = app.Table("anmc-identities", default=None, partitions=n, key_type=bytes, value_type=bytes,
                           changelog_topic=app.topic(topics.anmc_identities, partitions=n, **raw))
    syncs = Syncs()
    config = CompactedTopic(settings.kafka, topics.config, syncs.apply)
    app.service(config)
    if health is not None:
        health.check("config_loaded", config.ready.is_set)

        @app.task
        async def _bind_loop() -> None:
            health.bind_loop(asyncio.get_running_loop())

    @app.agent(changes_in)
    async def apply(stream):
        await config.wait_ready()  # no record is judged before the syncs' settings are loaded
        async for event in stream.events():
            msg = event.message
            log.debug("anmc.changes %s@%s key %s", msg.partition, msg.offset, msg.key)
            try:
                change = json.loads(msg.value)
                sync = syncs.for_source(change["source"])
            except (ValueError, KeyError, TypeError) as exc:
                log.error("anmc.changes %s@%s unreadable: %s", msg.partition, msg.offset, exc)
                continue
            if sync is None or not sync.enabled:
                metrics.ANMC_SKIPPED.inc()
                continue
            old = identities.get(msg.key)
            entry = json.loads(old) if old else None
            rule = an_change if change.get("side") == "action_network" else mc_change
            try:
                new, acts, lines = rule(entry, change["record"], sync, change.get("run", ""), change["when"])
            except Exception as exc:  # noqa: BLE001 - one odd record is reported, never stops the sync
                log.error("anmc: %s %s: %s: %s", change.get("side"), msg.key, type(exc).__name__, exc)
                new, acts, lines = entry, [], [{"sync": sync.name, "side": change.get("side"),
                                                "run": change.get("run"), "profile": "-", "outcome": "error",
                                                "detail": f"{type(exc).__name__}: {exc}"[:300]}]
            futures = [await raw_out.send(key=a["ActivityKey"].encode(), value=json.dumps(a).encode()) for a in acts]
            futures += [await report_out.send(key=sync.name.encode(), value=json.dumps(line).encode())
                        for line in lines]
            await asyncio.gather(*futures)
            for line in lines:
                metrics.ANMC_OUTCOMES.labels(sync.name, line["outcome"]).inc()
            if new is not None and new != entry:
                identities[msg.key] = json.dumps(new, sort_keys=True).encode()

    return app


def main() -> None:
    sys.exit(guarded(_main))


def _main() -> int:
    return faust_role_main("anmc", create_app, (core_metrics, metrics))


if __name__ == "__main__":
    main()
