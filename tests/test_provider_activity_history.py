"""The Activity History provider: the shared contract (it has no remote API to fake), plus its queries."""

from __future__ import annotations

import asyncio
import sqlite3

import pytest

from sinks.contract import SinkContext
from sinks.providers.activity_history.settings import HistorySettings
from sinks.providers.activity_history.sink import ActivityHistorySink, query
from activity_sync.devtools.sink_testing import ProviderContract, opt_out, sample_deliveries

NO_REMOTE = "a local SQLite file: there is no remote API to throttle, fail, time out, refuse a record or expire a token"


class TestActivityHistoryContract(ProviderContract):
    provider = "activity-history"

    def settings(self, fake, tmp_path) -> dict:
        return {"path": str(tmp_path / "history.db")}

    def stored_keys(self, fake, tmp_path) -> list[str]:
        db = tmp_path / "history.db"
        return [r["activity_key"] for r in query(db, limit=100_000)] if db.exists() else []

    @opt_out("the history keeps every activity, a member known only by contact key too: it needs no customer ID")
    async def test_record_without_customer_is_a_mapping_error(self, fake, tmp_path):
        await super().test_record_without_customer_is_a_mapping_error(fake, tmp_path)

    @opt_out(NO_REMOTE)
    async def test_throttle_holds_back_every_later_request(self, fake, tmp_path):
        await super().test_throttle_holds_back_every_later_request(fake, tmp_path)

    @opt_out(NO_REMOTE)
    async def test_5xx_and_timeouts_are_retried(self, fake, tmp_path):
        await super().test_5xx_and_timeouts_are_retried(fake, tmp_path)

    @opt_out(NO_REMOTE)
    async def test_one_invalid_record_fails_alone(self, fake, tmp_path):
        await super().test_one_invalid_record_fails_alone(fake, tmp_path)

    @opt_out(NO_REMOTE)
    async def test_expired_token_is_refreshed_once(self, fake, tmp_path):
        await super().test_expired_token_is_refreshed_once(fake, tmp_path)


def test_history_is_append_only_and_queryable(tmp_path):
    async def go():
        sink = ActivityHistorySink()
        await sink.start(SinkContext("history", HistorySettings(path=str(tmp_path / "h.db"))))
        await sink.write(sample_deliveries(5, "history", customer=lambda i: f"member-{i % 3}"))
        await sink.stop()

    asyncio.run(go())
    db = tmp_path / "h.db"
    assert [r["activity_code"] for r in query(db, member="member-0")] == ["CommunityMemberJoin",
                                                                           "DiscussionMessageCreate"]
    assert [r["customer_id"] for r in query(db, code="LibraryEntryView")] == ["member-2"]
    assert len(query(db, since="2016-06-13T21:00:00", until="2016-06-14")) == 2
    conn = sqlite3.connect(db)
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        conn.execute("DELETE FROM activity_history")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        conn.execute("UPDATE activity_history SET description = 'x'")
