"""The scoring stage on the real broker: activities through the stream worker into member.scores,
equal to the model's own computation; killed with SIGKILL mid-stream and restarted, the same scores
(nothing counted twice, nothing lost); a rebuild after a model change re-scores from the history."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import random

import yaml

from conftest import consume, produce, publish_config_file, seed_events, worker_env
from core.avro import decode_member_score as decode_any
from core.scoring import apply, new_state, parse_model
from core.topics import Topics

MODEL = {"tenant": "DEMO", "points": {"DiscussionMessageCreate": 5, "LibraryEntryView": 1},
         "daily_cap": {"LibraryEntryView": 3}, "half_life_days": 30, "score_activity": True}


def events(n=600, members=30, seed=11):
    rnd = random.Random(seed)
    seeds = {e["ActivityCode"]: e for e in seed_events()}
    post, view = seeds["DiscussionMessageCreate"], seeds["LibraryEntryView"]
    start = dt.datetime(2026, 11, 1, tzinfo=dt.timezone.utc)
    out = []
    for i in range(n):
        m = f"C{rnd.randrange(members):04d}"
        when = (start + dt.timedelta(minutes=rnd.randrange(0, 20 * 24 * 60))).strftime("%Y-%m-%dT%H:%M:%S.000Z")
        if rnd.random() < 0.3:
            e = dict(post, ActivityKey=f"score-{i}", ActivityDate=when, AuthorExternalKey=m, TenantCode="DEMO")
        else:
            e = dict(view, ActivityKey=f"score-{i}", ActivityDate=when, AccessedByExternalKey=m, TenantCode="DEMO")
        out.append(e)
    return out


def expected(evs, model):
    states = {}
    for e in sorted(evs, key=lambda e: e["ActivityDate"]):
        m = e.get("AuthorExternalKey") or e.get("AccessedByExternalKey")
        cat = "Discussions" if e["ActivityCode"] == "DiscussionMessageCreate" else "Resource Libraries"
        when = dt.datetime.fromisoformat(e["ActivityDate"].replace("Z", "+00:00"))
        states[m], _ = apply(states.get(m) or new_state("DEMO", m), model, e["ActivityKey"], e["ActivityCode"], cat,
                             when)
    return states


async def configure(settings, tmp_path, model=MODEL):
    path = tmp_path / "scores.yaml"
    doc = yaml.safe_load(open("activity_sync/data/embedded.yaml"))
    doc["scoring"] = [model]
    path.write_text(yaml.safe_dump(doc))
    object.__setattr__(settings, "config_path", str(path))
    await publish_config_file(settings, path)


async def latest_scores(settings, want_members: int, want_total: int, timeout=120.0):
    def done(msgs):
        latest = {}
        for m in msgs:
            latest[m.key] = m
        recs = [decode_any(m.value) for m in latest.values()]
        return len(recs) >= want_members and sum(r["activities"] for r in recs) >= want_total

    msgs = await consume(settings, Topics(settings.topic_prefix).member_scores, done, timeout=timeout, settle=2.0)
    latest = {}
    for m in msgs:
        latest[m.key.decode()] = decode_any(m.value)
    return latest


def raw(evs):
    return [(e["ActivityKey"].encode(), json.dumps(e).encode()) for e in evs]


async def test_scores_in_the_stream_equal_the_models_computation_and_survive_a_kill(settings, tmp_path, spawn):
    model = parse_model(MODEL)
    evs = events()
    want = expected(evs, model)
    await configure(settings, tmp_path)
    env = worker_env(settings, tmp_path)
    spawn(["-m", "streams.app"], env, "stream")
    scorer = spawn(["-m", "streams.scores"], dict(env, ACTIVITY_SYNC_DATADIR=str(tmp_path / "scores-data")), "scores")
    topics = Topics(settings.topic_prefix)
    await produce(settings, topics.raw, raw(evs[:300]))
    await consume(settings, topics.member_scores, lambda m: len(m) >= 150, timeout=120)
    scorer.kill()  # SIGKILL mid-stream: what it had not committed is read again
    await produce(settings, topics.raw, raw(evs[300:]) + raw(evs[:50]))  # and 50 delivered twice
    spawn(["-m", "streams.scores"], dict(env, ACTIVITY_SYNC_DATADIR=str(tmp_path / "scores-data")), "scores")
    got = await latest_scores(settings, len(want), len(evs))
    assert set(got) == {f"DEMO|{m}" for m in want}
    for m, st in want.items():
        r = got[f"DEMO|{m}"]
        assert r["activities"] == st["activities"] and abs(r["points"] - st["points"]) < 1e-9, m
        assert abs(r["score"] - st["score"]) < 1e-9 and r["score_as_of"] == st["ref_day"], m
    # EngagementScoreChanged: at most one a member a day, on activity.raw for endpoints that subscribe
    changed = await consume(settings, topics.raw, lambda m: True, timeout=10, settle=1.0)
    keys = [json.loads(m.value)["ActivityKey"] for m in changed
            if json.loads(m.value).get("ActivityCode") == "EngagementScoreChanged"]
    assert keys and len(keys) == len(set(keys))
    # the report card on the command line, from member.scores
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "activity_sync.cli", "scores", "report", "--tenant", "DEMO",
                          "--period", "2026-11"], env=env, capture_output=True, text=True, timeout=60)
    card = json.loads(out.stdout)
    assert card["activities"]["now"] == len(evs) and card["active_members"]["now"] == len(want)
    # an analyst reads member.scores decoded
    out = subprocess.run([sys.executable, "-m", "activity_sync.cli", "tail", "--topic", "scores", "--from-beginning",
                          "--max", "3", "--summary"], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert len([line for line in out.stdout.splitlines() if line.startswith("DEMO C") and ": score " in line]) == 3


async def test_a_rebuild_rescores_a_tenant_under_its_changed_model(settings, tmp_path, spawn):
    evs = events(200, 10, seed=5)
    await configure(settings, tmp_path)
    env = worker_env(settings, tmp_path)
    spawn(["-m", "streams.app"], env, "stream")
    spawn(["-m", "streams.scores"], dict(env, ACTIVITY_SYNC_DATADIR=str(tmp_path / "scores-data")), "scores")
    topics = Topics(settings.topic_prefix)
    await produce(settings, topics.raw, raw(evs))
    await latest_scores(settings, 10, len(evs))
    changed = {**MODEL, "points": {"DiscussionMessageCreate": 50, "LibraryEntryView": 1}}
    await configure(settings, tmp_path, changed)  # a new model is not applied silently to the past
    await asyncio.sleep(2)
    from activity_sync.scorecmd import rebuild

    r = await rebuild(settings, "DEMO")
    assert r["generation"] == 1 and r["members_reset"] == 10 and r["activities"] == len(evs)
    want = expected(evs, parse_model({**changed, "generation": 1}))

    def rebuilt(msgs):
        latest = {}
        for m in msgs:
            latest[m.key] = decode_any(m.value)
        return all(x["generation"] == 1 for x in latest.values()) and \
            sum(x["activities"] for x in latest.values()) >= len(evs)

    msgs = await consume(settings, topics.member_scores, rebuilt, timeout=120, settle=2.0)
    latest = {}
    for m in msgs:
        latest[m.key.decode()] = decode_any(m.value)
    for m, st in want.items():
        assert abs(latest[f"DEMO|{m}"]["points"] - st["points"]) < 1e-9, m
