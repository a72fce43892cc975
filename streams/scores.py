"""The scoring stage: engagement scores computed in the stream, seconds after an activity.

A Faust app with two agents:

- ``route`` reads ``activity.enriched``; each activity of a tenant that has a scoring model
  (``scoring:<tenant>`` on ``activity.config``) goes on to ``scores.activities`` as a small JSON
  record keyed ``tenant|member`` (the member: the customer ID, else the contact key), stamped with
  the model's ``generation``. ``EngagementScoreChanged`` activities (this stage's own) are not scored.
- ``score`` reads ``scores.activities`` into the table ``member-scores`` (changelog
  ``scores.state``, on disk with faust's ``rocksdb://`` store, so a restart reads only what the
  store lacks). Each record is applied by :func:`core.scoring.apply`: an activity already counted
  (the pipeline is at least once) counts once within :data:`core.scoring.DEDUPE_DAYS`; a record of an
  older generation than the member's is dropped, of a newer one starts the member afresh (a rebuild).
  The member's record goes to the compacted ``member.scores`` (Avro, ``schemas/member_score.avsc``);
  with ``score_activity``, the first change of a member's score on a day also becomes an
  ``EngagementScoreChanged`` activity on ``activity.raw`` (carrying the score and its change) for
  the endpoints that subscribe to it.

Every send is acknowledged before the table is written, and Faust flushes the changelog before it
commits: a kill repeats records, which the dedupe counts once. A day's ``EngagementScoreChanged`` is
sent with the changelog record of the state that marks it sent, so a repeat does not send it again.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import sys
import time

import faust

from core import metrics as core_metrics
from core.avro import SingleObjectCodec, reader_schema_without
from core.compacted import CompactedTopic
from core.errors import guarded
from core.faustapp import decode_enriched, direct_send, faust_role_main, make_app
from core.health import Health
from core.scoring import SCORE_CODE, ScoringError, apply, new_state, parse_model, score_record
from core.settings import Settings
from core.topics import Topics

from . import scoremetrics as metrics

log = logging.getLogger("activity_sync.scores")


class Models:
    def __init__(self) -> None:
        self.by_tenant: dict = {}

    def apply(self, key: bytes, value: bytes | None) -> None:
        k = key.decode(errors="replace")
        if not k.startswith("scoring:"):
            return
        tenant = k.split(":", 1)[1]
        if value is None:
            self.by_tenant.pop(tenant, None)
            return
        try:
            self.by_tenant[tenant] = parse_model(json.loads(value))
        except (ValueError, ScoringError) as exc:
            log.error("activity.config %s refused: %s", k, exc)


def slim(record: dict, generation: int) -> tuple[bytes, dict] | None:
    """An enriched record as the scoring agent reads it, keyed ``tenant|member``; None without a member."""
    member = record.get("customer_id") or record.get("contact_key")
    if not member or record.get("activity_code") == SCORE_CODE:
        return None
    date = record["activity_date"]
    if isinstance(date, dt.datetime):
        date = date.astimezone(dt.timezone.utc).isoformat()
    tenant = record["tenant_code"]
    return f"{tenant}|{member}".encode(), {"key": record["activity_key"], "code": record["activity_code"],
                                           "category": record["category"], "date": date, "tenant": tenant,
                                           "member": member, "gen": generation}


def step(state: dict | None, r: dict, model) -> tuple[dict | None, dict | None]:
    """One ``scores.activities`` record on a member's state: the new state (None: nothing changes, a
    repeat or an older generation's record) and the ``EngagementScoreChanged`` activity to send, if any."""
    gen = r.get("gen", 0)
    if state is None or gen > state["generation"] or r.get("reset"):
        if state is not None and gen < state["generation"]:
            metrics.STALE.inc()
            return None, None
        state = new_state(r["tenant"], r["member"], gen)
    elif gen < state["generation"]:
        metrics.STALE.inc()
        return None, None
    if r.get("reset"):
        return state, None
    when = dt.datetime.fromisoformat(r["date"].replace("Z", "+00:00"))
    state, counted = apply(state, model, r["key"], r["code"], r["category"], when)
    if counted is None:
        metrics.REPEATS.inc()
        return None, None
    metrics.SCORED.inc()
    day = state["ref_day"]
    if not model.score_activity or state.get("emitted_day") == day:
        return state, None
    change = state["score"] - (state.get("emitted_score") or 0.0)
    state["emitted_day"], state["emitted_score"] = day, state["score"]
    return state, {"ActivityKey": f"score:{r['tenant']}:{r['member']}:{day}", "ActivityCode": SCORE_CODE,
                   "ActivityDate": f"{day}T00:00:00Z", "TenantCode": r["tenant"], "MemberExternalKey": r["member"],
                   "Score": round(state["score"], 4), "ScoreChange": round(change, 4), "ScoreDay": day,
                   "Activities": state["activities"], "Points": round(state["points"], 4),
                   "ActivityDescription": f"Engagement score {state['score']:.1f} ({change:+.1f})"}


def create_app(settings: Settings | None = None, health: Health | None = None) -> faust.App:
    settings = settings or Settings.from_env()
    topics = Topics(settings.topic_prefix)
    n = settings.partitions
    app = make_app(f"{settings.app_id}-scores", settings, "scores", topic_partitions=n, store="rocksdb://")
    raw = dict(key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")
    enriched_in = app.topic(topics.enriched, **raw)
    activities = app.topic(topics.scores_activities, partitions=n, **raw)
    # straight to the producer, each send acknowledged before the table moves on (as the list stage's)
    send = direct_send(app)
    table = app.Table("member-scores", default=None, partitions=n, key_type=bytes, value_type=bytes,
                      changelog_topic=app.topic(topics.scores_state, partitions=n, **raw))
    models = Models()
    config = CompactedTopic(settings.kafka, topics.config, models.apply)
    app.service(config)
    codec = SingleObjectCodec(name="member_score")  # single-object encoding, as activity.enriched's default
    # what scoring reads of an enriched record: the envelope, not the details nor the deliveries
    slim_reader = reader_schema_without("details", "details_json", "details_xml", "deliveries", "source")
    if health is not None:
        health.check("config_loaded", config.ready.is_set)

        @app.task
        async def _bind_loop() -> None:
            health.bind_loop(asyncio.get_running_loop())

    @app.agent(enriched_in)
    async def route(stream):
        await config.wait_ready()
        async for event in stream.events():
            # a tenant without a model: not even decoded (its ``tenant`` header says whose it is)
            record = decode_enriched(event.message, settings, slim_reader, models.by_tenant.get, log)
            model = models.by_tenant.get(record["tenant_code"]) if record is not None else None
            out = slim(record, model.generation) if model is not None else None
            if out is None:
                metrics.UNSCORED.inc()
                continue
            key, value = out
            await (await send(topics.scores_activities, key, json.dumps(value).encode()))  # acknowledged, as below

    @app.agent(activities)
    async def score(stream):
        await config.wait_ready()
        # Each record's sends are acknowledged before its table write. (Leaving them to Faust's flush
        # before a commit was 40% faster, but after a SIGKILL the restarted worker's producer buffer
        # stalled in two runs of five: the agents waited on it for good.)
        async for event in stream.events():
            msg = event.message
            try:
                r = json.loads(msg.value)
            except ValueError:
                continue
            model = models.by_tenant.get(r.get("tenant"))
            if model is None:
                continue
            old = table.get(msg.key)
            state, score_activity = step(json.loads(old) if old else None, r, model)
            if state is None:
                continue
            value = json.dumps(state).encode()
            sends = [(topics.member_scores, codec.encode(score_record(state, model, int(time.time() * 1000))), None)]
            if score_activity is not None:
                # The activity and the state that says it was sent go out in the same produce request
                # (neither send yields to the loop, so the producer's sender takes both at once): a SIGKILL once
                # the broker has the activity but before the table write below left a state without
                # it, and the record read again sent the day's activity twice (a CI find). The state
                # goes second: were the request split, a kill repeats the activity, never loses it.
                sends.append((topics.raw, json.dumps(score_activity).encode(), None))
                sends.append((topics.scores_state, value, msg.partition))  # the table's changelog record
            futures = [await send(t, msg.key, v, p) for t, v, p in sends]
            await asyncio.gather(*futures)  # acknowledged before the table moves on
            table[msg.key] = value

    return app


def main() -> None:
    sys.exit(guarded(_main))


def _main() -> int:
    return faust_role_main("scores", create_app, (core_metrics, metrics))


if __name__ == "__main__":
    main()
