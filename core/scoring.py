"""Engagement scores: the scoring model, a member's state, and the report card. Pure: no Kafka.

- **The model** (``scoring:`` in a config document, ``scoring:<tenant>`` on ``activity.config``):
  points per activity code and per category (a code's own value wins), an optional cap of points
  per code per member per day, an optional decay (a half-life in days), the periods it reports on
  (month, quarter, year), and whether members' score changes become ``EngagementScoreChanged``
  activities. ``generation`` moves on each ``activity-sync scores rebuild``.
- **A member's state** (:func:`apply`): the score (decayed: each activity's points halve every
  ``half_life_days``, counted from the start of its UTC day, so a day's cap cuts the same points
  whatever order its activities come in), activities and points by period and category, first and
  last activity, the keys of the activities of the last :data:`DEDUPE_DAYS` days (an activity
  delivered twice counts once), and the score at the end of each of the last 400 days.
- **The report card** (:func:`report_card`): for one period of a tenant, from its members' states.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from .settingsmodel import parse_strict

#: how long an activity's key is remembered for the dedupe (longer than activity.enriched's 14 days)
DEDUPE_DAYS = 15
HISTORY_DAYS = 400
PERIODS = ("month", "quarter", "year")
SCORE_CODE = "EngagementScoreChanged"


class ScoringModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    tenant: str = Field(min_length=1, max_length=100)
    points: dict[str, float] = Field(default_factory=dict, description="points per activity code")
    categories: dict[str, float] = Field(default_factory=dict, description="points per category (a code's own wins)")
    daily_cap: dict[str, float] = Field(default_factory=dict, description="points per code per member per day at most")
    half_life_days: float | None = Field(None, gt=0, le=36_500, description="decay: points halve every this many days")
    periods: tuple[Literal["month", "quarter", "year"], ...] = Field(PERIODS, min_length=1)
    score_activity: bool = Field(False, description="a member's changed score becomes an EngagementScoreChanged "
                                                   "activity, at most one per member per day")
    generation: int = Field(0, ge=0, description="moved on by `activity-sync scores rebuild`")

    @field_validator("points", "categories", "daily_cap")
    @classmethod
    def _finite(cls, v):
        for k, x in v.items():
            if not math.isfinite(x) or abs(x) > 1e9:
                raise ValueError(f"{k}: a finite number")
        return v

    def key(self) -> str:
        return f"scoring:{self.tenant}"

    def record(self) -> dict:
        return self.model_dump(mode="json")

    def points_for(self, code: str, category: str) -> float:
        if code in self.points:
            return self.points[code]
        return self.categories.get(category, 0.0)


class ScoringError(ValueError):
    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


def parse_model(d: dict) -> ScoringModel:
    from .secrets import find_inline_secrets

    if not isinstance(d, dict):
        raise ScoringError("a scoring model must be a mapping")
    parsed, problems = parse_strict(ScoringModel, d, find_inline_secrets(d, "scoring"))
    if problems:
        fix = [(w.replace("settings.", "", 1), why) for w, why in problems]
        raise ScoringError(f"scoring {d.get('tenant', '?')}: " + "; ".join(f"{w}: {why}" for w, why in fix), fix[0][0])
    return parsed


# ----------------------------------------------------------------------------- periods and decay

def day_of(t: dt.datetime) -> dt.date:
    return t.astimezone(dt.timezone.utc).date()


def period_key(kind: str, d: dt.date) -> str:
    if kind == "month":
        return f"{d.year}-{d.month:02d}"
    if kind == "quarter":
        return f"{d.year}-Q{(d.month - 1) // 3 + 1}"
    return f"{d.year}"


def period_bounds(key: str) -> tuple[dt.date, dt.date]:
    """A period key's first day and the first day after it."""
    if "-Q" in key:
        y, q = key.split("-Q")
        start = dt.date(int(y), 3 * (int(q) - 1) + 1, 1)
        end = dt.date(int(y) + (q == "4"), 1 if q == "4" else 3 * int(q) + 1, 1)
    elif "-" in key:
        y, m = map(int, key.split("-"))
        start, end = dt.date(y, m, 1), dt.date(y + (m == 12), 1 if m == 12 else m + 1, 1)
    else:
        start, end = dt.date(int(key), 1, 1), dt.date(int(key) + 1, 1, 1)
    return start, end


def previous_period(key: str) -> str:
    start, _ = period_bounds(key)
    before = start - dt.timedelta(days=1)
    kind = "quarter" if "-Q" in key else "month" if "-" in key else "year"
    return period_key(kind, before)


def decay(points: float, from_day: dt.date, to_day: dt.date, half_life: float | None) -> float:
    if not half_life:
        return points
    return points * 0.5 ** ((to_day - from_day).days / half_life)


def score_on(state: dict, day: dt.date, half_life: float | None) -> float:
    """The member's score at the end of ``day`` (their activities of that day and before): from the
    score itself when ``day`` is after the newest activity, else from the daily history."""
    ref = dt.date.fromisoformat(state["ref_day"]) if state.get("ref_day") else None
    if ref is None:
        return 0.0
    if day >= ref:
        return decay(state.get("score", 0.0), ref, day, half_life)
    iso = day.isoformat()
    before = [d for d in state.get("history", {}) if d <= iso]
    if not before:
        return 0.0
    d = max(before)
    return decay(state["history"][d], dt.date.fromisoformat(d), day, half_life)


# ----------------------------------------------------------------------------- a member's state

def new_state(tenant: str, member: str, generation: int = 0) -> dict:
    return {"tenant": tenant, "member": member, "generation": generation, "score": 0.0, "ref_day": None,
            "activities": 0, "points": 0.0, "first_seen": None, "last_activity": None, "periods": {},
            "capped": {}, "seen": {}, "history": {}, "emitted_day": None, "emitted_score": None}


def apply(state: dict, model: ScoringModel, activity_key: str, code: str, category: str,
          when: dt.datetime) -> tuple[dict, float | None]:
    """One activity: the new state and the points it counted (None: a repeat, counted before)."""
    day = day_of(when)
    today = day.isoformat()
    if activity_key in state["seen"]:
        return state, None
    s = dict(state)
    s["seen"] = {**state["seen"], activity_key: today}
    newest = max(day, dt.date.fromisoformat(state["last_activity"])) if state.get("last_activity") else day
    horizon = (newest - dt.timedelta(days=DEDUPE_DAYS)).isoformat()
    if len(s["seen"]) > 64:
        s["seen"] = {k: v for k, v in s["seen"].items() if v >= horizon}
    p = model.points_for(code, category)
    cap = model.daily_cap.get(code)
    if cap is not None:
        ck = f"{code}|{today}"
        used = state["capped"].get(ck, 0.0)
        p = max(0.0, min(p, cap - used))
        s["capped"] = {k: v for k, v in {**state["capped"], ck: used + p}.items() if k.split("|")[1] >= horizon}
    # the decayed score, kept as of its newest day (an older activity decays to it on the way in)
    hl = model.half_life_days
    ref = dt.date.fromisoformat(state["ref_day"]) if state.get("ref_day") else day
    if day >= ref:
        s["score"] = decay(state["score"], ref, day, hl) + p
        s["ref_day"] = today
    else:
        s["score"] = state["score"] + decay(p, day, ref, hl)
        s["ref_day"] = ref.isoformat()
    s["activities"] = state["activities"] + 1
    s["points"] = state["points"] + p
    s["first_seen"] = min(filter(None, (state["first_seen"], today)))
    s["last_activity"] = max(filter(None, (state["last_activity"], today)))
    periods = {k: dict(v) for k, v in state["periods"].items()}
    for kind in model.periods:
        pk = period_key(kind, day)
        bucket = dict(periods.get(pk, {}))
        a, pts = bucket.get(category, (0, 0.0))
        bucket[category] = (a + 1, pts + p)
        periods[pk] = bucket
    s["periods"] = periods
    history = dict(state["history"])
    for d, v in list(history.items()):  # a late activity raises every day's score from its day on
        if d >= today:
            history[d] = v + decay(p, day, dt.date.fromisoformat(d), hl)
    if today not in history:
        if day >= ref:
            history[today] = s["score"]
        else:  # a late activity on a day with no entry yet: that day's score, from the day before it
            earlier = [d for d in history if d < today]
            base = decay(history[max(earlier)], dt.date.fromisoformat(max(earlier)), day, hl) if earlier else 0.0
            history[today] = base + p
    if len(history) > HISTORY_DAYS:
        history = dict(sorted(history.items())[-HISTORY_DAYS:])
    s["history"] = history
    return s, p


def score_now(state: dict, model: ScoringModel, today: dt.date | None = None) -> float:
    return score_on(state, today or dt.datetime.now(dt.timezone.utc).date(), model.half_life_days)


# ----------------------------------------------------------------------------- the report card

def _percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    v = sorted(values)
    k = (len(v) - 1) * q
    lo, hi = math.floor(k), math.ceil(k)
    return v[lo] if lo == hi else v[lo] + (v[hi] - v[lo]) * (k - lo)


def _period_totals(states: list[dict], key: str):
    by_cat: dict[str, list[float]] = {}
    active = []
    for st in states:
        bucket = st["periods"].get(key)
        if not bucket:
            continue
        acts = sum(a for a, _ in bucket.values())
        pts = sum(p for _, p in bucket.values())
        if acts:
            active.append((st, acts, pts))
        for cat, (a, p) in bucket.items():
            c = by_cat.setdefault(cat, [0, 0.0])
            c[0] += a
            c[1] += p
    return active, by_cat


def report_card(states: list[dict], key: str, model: ScoringModel | None = None, top: int = 10,
                today: dt.date | None = None) -> dict:
    """One tenant's report card for a period key (``2026-11``, ``2026-Q4``, ``2026``)."""
    start, end = period_bounds(key)
    active, by_cat = _period_totals(states, key)
    prev_key = previous_period(key)
    prev_active, prev_cat = _period_totals(states, prev_key)
    hl = model.half_life_days if model else None
    as_of = min(end - dt.timedelta(days=1), today or dt.datetime.now(dt.timezone.utc).date())
    scores = [score_on(st, as_of, hl) for st in states if st.get("first_seen") and st["first_seen"] < end.isoformat()]
    new = sum(1 for st, _, _ in active if st["first_seen"] >= start.isoformat())
    total_acts = sum(a for _, a, _ in active)
    total_pts = sum(p for _, _, p in active)
    prev_acts = sum(a for _, a, _ in prev_active)
    prev_pts = sum(p for _, _, p in prev_active)

    def change(now, before):
        return {"now": now, "previous": before, "change": now - before,
                "change_pct": None if not before else round(100.0 * (now - before) / before, 1)}

    return {
        "tenant": states[0]["tenant"] if states else (model.tenant if model else None), "period": key,
        "from": start.isoformat(), "to": (end - dt.timedelta(days=1)).isoformat(), "previous_period": prev_key,
        "active_members": change(len(active), len(prev_active)),
        "activities": change(total_acts, prev_acts), "points": change(round(total_pts, 4), round(prev_pts, 4)),
        "new_members": new, "returning_members": len(active) - new,
        "by_category": [{"category": c, "activities": a, "points": round(p, 4),
                         "previous_activities": prev_cat.get(c, [0, 0.0])[0]}
                        for c, (a, p) in sorted(by_cat.items(), key=lambda kv: (-kv[1][1], kv[0]))],
        "top_members": [{"member": st["member"], "points": round(p, 4), "activities": a}
                        for st, a, p in sorted(active, key=lambda x: (-x[2], x[0]["member"]))[:top]],
        "score_distribution": {"members": len(scores), "as_of": as_of.isoformat(),
                               **{f"p{int(q * 100)}": round(_percentile(scores, q), 4)
                                  for q in (0.1, 0.25, 0.5, 0.75, 0.9, 0.99)},
                               "max": round(max(scores), 4) if scores else 0.0},
    }


def report_csv(card: dict) -> str:
    import csv
    import io

    out = io.StringIO()
    w = csv.writer(out)
    w.writerow(["tenant", card["tenant"], "period", card["period"], "from", card["from"], "to", card["to"]])
    w.writerow(["measure", "this period", "previous period", "change"])
    for m in ("active_members", "activities", "points"):
        w.writerow([m, card[m]["now"], card[m]["previous"], card[m]["change"]])
    w.writerow(["new_members", card["new_members"]])
    w.writerow(["returning_members", card["returning_members"]])
    w.writerow([])
    w.writerow(["category", "activities", "points", "previous activities"])
    for c in card["by_category"]:
        w.writerow([c["category"], c["activities"], c["points"], c["previous_activities"]])
    w.writerow([])
    w.writerow(["top member", "points", "activities"])
    for t in card["top_members"]:
        w.writerow([t["member"], t["points"], t["activities"]])
    w.writerow([])
    w.writerow(["score percentile", "score"])
    for k, v in card["score_distribution"].items():
        if k.startswith("p") or k == "max":
            w.writerow([k, v])
    return out.getvalue()


def report_html(card: dict) -> str:
    """The report card as a printable page (no scripts, no external resources: print or save as PDF)."""
    from html import escape as e

    def row(*cells, tag="td"):
        return "<tr>" + "".join(f"<{tag}>{e(str(c))}</{tag}>" for c in cells) + "</tr>"

    summary = "".join(row(m.replace("_", " "), card[m]["now"], card[m]["previous"], card[m]["change"])
                      for m in ("active_members", "activities", "points"))
    cats = "".join(row(c["category"], c["activities"], c["points"], c["previous_activities"])
                   for c in card["by_category"])
    tops = "".join(row(i + 1, t["member"], t["points"], t["activities"]) for i, t in enumerate(card["top_members"]))
    dist = "".join(row(k, v) for k, v in card["score_distribution"].items() if k.startswith("p") or k == "max")
    bars = "".join(f'<div class="bar"><span>{e(c["category"])}</span><i style="width:'
                   f'{100 * c["points"] / max(1e-9, max(x["points"] for x in card["by_category"])):.1f}%"></i>'
                   f'<b>{e(str(c["points"]))}</b></div>' for c in card["by_category"])
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>Engagement report card {e(card["tenant"] or "")} {e(card["period"])}</title>
<style>body{{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#222}}table{{border-collapse:collapse;margin:1em 0}}
td,th{{border:1px solid #ccc;padding:4px 10px;text-align:left}}th{{background:#f3f3f3}}
.bar{{display:flex;align-items:center;gap:8px;margin:2px 0}}.bar span{{width:12em}}
.bar i{{display:block;height:12px;background:#3b6ea8}}@media print{{body{{margin:0}}}}</style></head><body>
<h1>Engagement report card</h1>
<p>Tenant <b>{e(card["tenant"] or "")}</b>, {e(card["period"])} ({e(card["from"])} to {e(card["to"])}),
compared with {e(card["previous_period"])}. New members {card["new_members"]}, returning {card["returning_members"]}.</p>
<table><tr><th>Measure</th><th>This period</th><th>Previous</th><th>Change</th></tr>{summary}</table>
<h2>By category</h2>{bars}
<table><tr><th>Category</th><th>Activities</th><th>Points</th><th>Previous activities</th></tr>{cats}</table>
<h2>Top members</h2><table><tr><th>#</th><th>Member</th><th>Points</th><th>Activities</th></tr>{tops}</table>
<h2>Score distribution</h2><p>{card["score_distribution"]["members"]} members, as of {e(card["score_distribution"]["as_of"])}</p>
<table><tr><th>Percentile</th><th>Score</th></tr>{dist}</table></body></html>"""


def score_record(state: dict, model: ScoringModel, now_ms: int) -> dict:
    """A member's state as its ``member.scores`` record (schemas/member_score.avsc)."""
    return {"tenant_code": state["tenant"], "member": state["member"], "score": float(state["score"]),
            "score_as_of": state["ref_day"] or "", "half_life_days": model.half_life_days,
            "activities": state["activities"], "points": float(state["points"]), "first_seen": state["first_seen"],
            "last_activity": state["last_activity"], "generation": state["generation"],
            "periods": [{"period": pk, "category": c, "activities": a, "points": float(p)}
                        for pk, bucket in sorted(state["periods"].items()) for c, (a, p) in sorted(bucket.items())],
            "history": [{"day": d, "score": float(v)} for d, v in sorted(state["history"].items())],
            "updated_at": now_ms}


def state_of_record(r: dict) -> dict:
    """A ``member.scores`` record back as the state the report card reads (no dedupe keys, no caps)."""
    s = new_state(r["tenant_code"], r["member"], r["generation"])
    s.update(score=r["score"], ref_day=r["score_as_of"] or None, activities=r["activities"], points=r["points"],
             first_seen=r["first_seen"], last_activity=r["last_activity"])
    for p in r["periods"]:
        s["periods"].setdefault(p["period"], {})[p["category"]] = (p["activities"], p["points"])
    s["history"] = {h["day"]: h["score"] for h in r["history"]}
    return s
