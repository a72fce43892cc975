"""Engagement scores without Kafka: a synthetic history of known activities (a fixed seed) scored
by the model, checked against an independent computation written here: points, daily caps,
decay, dedupe, periods; and the report card's numbers over the same data."""

from __future__ import annotations

import datetime as dt
import random
import statistics

import pytest

from core.config import ConfigError, parse_config
from core.scoring import (ScoringError, apply, new_state, parse_model, period_key, report_card, report_csv,
                          report_html, score_on, score_record, state_of_record)

MODEL = {"tenant": "DEMO", "points": {"DiscussionMessageCreate": 5, "LibraryEntryView": 1, "EventRegister": 8},
         "categories": {"Discussions": 3, "Communities": 2}, "daily_cap": {"LibraryEntryView": 3},
         "half_life_days": 30}
CODES = [("DiscussionMessageCreate", "Discussions"), ("DiscussionMessageReply", "Discussions"),
         ("LibraryEntryView", "Resource Libraries"), ("CommunityMemberJoin", "Communities"),
         ("EventRegister", "Events"), ("BlogPostView", "Blogs")]


def synthetic(seed=7, members=40, n=3000):
    rnd = random.Random(seed)
    start = dt.datetime(2026, 7, 1, tzinfo=dt.timezone.utc)
    out = []
    for i in range(n):
        code, cat = rnd.choice(CODES)
        when = start + dt.timedelta(minutes=rnd.randrange(0, 150 * 24 * 60))
        out.append((f"k{i}", f"M{rnd.randrange(members):03d}", code, cat, when))
    return out


def independent(events, model, day):
    """The same rules, computed another way: group by member and day, cap per code per day, then decay."""
    hl = model["half_life_days"]
    per = {}
    for key, member, code, cat, when in events:
        per.setdefault(member, {}).setdefault(when.date(), []).append((code, cat))
    scores, points = {}, {}
    for member, days in per.items():
        total = decayed = 0.0
        for d, acts in days.items():
            used = {}
            for code, cat in acts:
                p = model["points"].get(code, model["categories"].get(cat, 0))
                cap = model["daily_cap"].get(code)
                if cap is not None:
                    p = max(0, min(p, cap - used.get(code, 0)))
                    used[code] = used.get(code, 0) + p
                total += p
                decayed += p * 0.5 ** ((day - d).days / hl)
        scores[member], points[member] = decayed, total
    return scores, points


def score_all(events, model, shuffle=None):
    """In time order; with ``shuffle``, out of order by up to three days (late deliveries, repeats):
    within the dedupe window, the order does not change a score."""
    states = {}
    evs = sorted(events, key=lambda e: e[4])
    if shuffle is not None:
        rnd = random.Random(shuffle)
        evs = sorted(evs, key=lambda e: e[4] + dt.timedelta(hours=rnd.uniform(0, 72)))
    for key, member, code, cat, when in evs:
        s = states.get(member) or new_state("DEMO", member)
        states[member], _ = apply(s, model, key, code, cat, when)
    return states


def test_scores_caps_and_decay_match_an_independent_computation_in_any_order_and_repeats_count_once():
    model = parse_model(MODEL)
    events = synthetic()
    day = dt.date(2026, 12, 1)
    want, want_points = independent(events, MODEL, day)
    for shuffle in (None, 1, 2):  # at least once, out of order: the same scores
        got = score_all(events + [e for e in events if e[0] < "k5"] if shuffle else events, model, shuffle)
        for member, s in got.items():
            assert score_on(s, day, model.half_life_days) == pytest.approx(want[member], rel=1e-9), member
            assert s["points"] == pytest.approx(want_points[member]), member
            mid = dt.date(2026, 9, 15)  # the daily history gives the score on an earlier day, late arrivals included
            want_mid, _ = independent([e for e in events if e[1] == member and e[4].date() <= mid], MODEL, mid)
            assert score_on(s, mid, model.half_life_days) == pytest.approx(want_mid.get(member, 0.0), rel=1e-9)
    one = got["M001"]
    assert one["activities"] == sum(1 for e in events if e[1] == "M001")


def test_a_hand_computed_member():
    model = parse_model(MODEL)
    d0 = dt.datetime(2026, 11, 1, 9, tzinfo=dt.timezone.utc)
    s = new_state("DEMO", "M1")
    for i, (code, cat, days) in enumerate([("LibraryEntryView", "Resource Libraries", 0)] * 5 +
                                          [("DiscussionMessageReply", "Discussions", 0),
                                           ("EventRegister", "Events", 30)]):
        s, _ = apply(s, model, f"k{i}", code, cat, d0 + dt.timedelta(days=days))
    # day 0: five views capped at 3 points, a reply by its category 3: 6; day 30: an event 8
    assert s["points"] == 14
    assert s["score"] == pytest.approx(6 * 0.5 + 8)  # 30 days is one half-life
    assert score_on(s, dt.date(2026, 12, 31), 30) == pytest.approx((6 * 0.5 + 8) * 0.5)
    assert s["periods"]["2026-11"]["Resource Libraries"] == (5, 3)
    assert s["periods"]["2026-Q4"]["Events"] == (1, 8)
    s2, counted = apply(s, model, "k0", "LibraryEntryView", "Resource Libraries", d0)
    assert counted is None and s2 == s
    back = state_of_record(score_record(s, model, 0))
    assert back["score"] == s["score"] and back["periods"]["2026-11"]["Discussions"] == (1, 3)


def test_the_report_card_matches_an_independent_computation():
    model = parse_model(MODEL)
    events = synthetic()
    states = list(score_all(events, model).values())
    card = report_card(states, "2026-10", model, today=dt.date(2026, 12, 1))
    octo = [e for e in events if period_key("month", e[4].date()) == "2026-10"]
    sept = [e for e in events if period_key("month", e[4].date()) == "2026-09"]
    assert card["active_members"]["now"] == len({e[1] for e in octo})
    assert card["active_members"]["previous"] == len({e[1] for e in sept})
    assert card["activities"]["now"] == len(octo)
    cats = {c["category"]: c for c in card["by_category"]}
    for cat in {e[3] for e in octo}:
        assert cats[cat]["activities"] == sum(1 for e in octo if e[3] == cat)
    # points in the month: the independent computation over the month's events alone (caps are per day)
    _, month_points = independent(octo, {**MODEL, "half_life_days": 1e9}, dt.date(2026, 10, 31))
    assert card["points"]["now"] == pytest.approx(sum(month_points.values()))
    top = max(month_points.items(), key=lambda kv: (kv[1], [-ord(c) for c in kv[0]]))
    assert card["top_members"][0]["points"] == pytest.approx(top[1])
    first = {}
    for e in events:
        first[e[1]] = min(first.get(e[1], e[4].date()), e[4].date())
    new = {m for m in {e[1] for e in octo} if first[m] >= dt.date(2026, 10, 1)}
    assert card["new_members"] == len(new) and card["returning_members"] == len({e[1] for e in octo}) - len(new)
    scores, _ = independent([e for e in events if e[4].date() <= dt.date(2026, 10, 31)], MODEL, dt.date(2026, 10, 31))
    assert card["score_distribution"]["p50"] == pytest.approx(statistics.median(scores.values()), abs=1e-4)
    assert card["score_distribution"]["members"] == len(scores)
    csv_text, html = report_csv(card), report_html(card)
    assert f"activities,{len(octo)}," in csv_text and f"<td>{len(octo)}</td>" in html and "<script" not in html


def test_the_model_is_validated_and_lives_in_the_config():
    cfg = parse_config({"scoring": [MODEL]})
    assert [k for k, _ in cfg.records()] == ["scoring:DEMO"]
    for bad, field in [({"half_life_days": 0}, "half_life_days"), ({"periods": ["week"]}, "periods"),
                       ({"points": {"X": "five"}}, "points"), ({"colour": 1}, "colour")]:
        with pytest.raises(ScoringError) as e:
            parse_model({**MODEL, **bad})
        assert e.value.field.startswith(field), (bad, e.value.field)
    with pytest.raises(ConfigError, match="one scoring model per tenant"):
        parse_config({"scoring": [MODEL, MODEL]})
