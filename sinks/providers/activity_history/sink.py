"""The Activity History provider: an append-only store an operator queries by member, code and time.

The seed's "Activity History" provider type writes activities to a history table, "primarily
used for debugging". Here that table is SQLite (Python's own ``sqlite3``, WAL mode, so several
sink workers of the endpoint can share one file, and ``activity-sync history`` can read while
they write). Rows are only ever inserted; a redelivered activity (same endpoint and ActivityKey)
is ignored, so at-least-once delivery shows no duplicate.

Settings: :class:`~sinks.providers.activity_history.settings.HistorySettings` (``path``, the
database file; default ``var/activity-history.db``).
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path
from typing import Sequence

from sinks.contract import Delivery, RecordFailure, RetriableError, Sink, SinkContext

SCHEMA = """
CREATE TABLE IF NOT EXISTS activity_history (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    endpoint        TEXT NOT NULL,
    activity_key    TEXT NOT NULL,
    customer_id     TEXT,
    contact_key     TEXT,
    activity_code   TEXT NOT NULL,
    category        TEXT NOT NULL,
    activity_date   TEXT NOT NULL,   -- ISO 8601 UTC, sortable
    description     TEXT NOT NULL,
    writeback_code1 TEXT,
    writeback_code2 TEXT,
    link_url        TEXT,
    tenant_code     TEXT,
    details_json    TEXT NOT NULL,
    written_at      TEXT NOT NULL,
    UNIQUE (endpoint, activity_key)
);
CREATE INDEX IF NOT EXISTS activity_history_member ON activity_history (customer_id, activity_date);
CREATE INDEX IF NOT EXISTS activity_history_code ON activity_history (activity_code, activity_date);
CREATE TRIGGER IF NOT EXISTS activity_history_append_only_u BEFORE UPDATE ON activity_history
BEGIN SELECT RAISE(ABORT, 'activity_history is append-only'); END;
CREATE TRIGGER IF NOT EXISTS activity_history_append_only_d BEFORE DELETE ON activity_history
BEGIN SELECT RAISE(ABORT, 'activity_history is append-only'); END;
"""

COLUMNS = ("endpoint", "activity_key", "customer_id", "contact_key", "activity_code", "category", "activity_date",
           "description", "writeback_code1", "writeback_code2", "link_url", "tenant_code", "details_json",
           "written_at")


def connect(path: str | Path) -> sqlite3.Connection:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(str(path), timeout=30, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.executescript(SCHEMA)
    return conn


def query(path: str | Path, member: str | None = None, code: str | None = None, since: str | None = None,
          until: str | None = None, endpoint: str | None = None, limit: int = 100,
          tenant: str | None = None) -> list[dict]:
    """Rows by member (customer ID or contact key), activity code, activity-date range, endpoint and
    tenant, newest first."""
    filters = [("(customer_id = ? OR contact_key = ?)", member, 2), ("activity_code = ?", code, 1),
               ("activity_date >= ?", since, 1), ("activity_date < ?", until, 1), ("endpoint = ?", endpoint, 1),
               ("tenant_code = ?", tenant, 1)]
    where = [cond for cond, value, _ in filters if value]
    args = [value for _, value, n in filters if value for _ in range(n)]
    sql = f"SELECT {', '.join(COLUMNS)} FROM activity_history"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY activity_date DESC, id DESC LIMIT ?"
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    try:
        return [dict(zip(COLUMNS, row)) for row in conn.execute(sql, [*args, limit])]
    finally:
        conn.close()


class ActivityHistorySink(Sink):
    provider = "activity-history"
    member_noun = None  # the history keeps a member known only by contact key too

    async def start(self, ctx: SinkContext) -> None:
        await super().start(ctx)
        self.path = ctx.settings.path
        self.conn = await asyncio.to_thread(connect, self.path)

    def _insert(self, batch: Sequence[Delivery]) -> None:
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        rows = [(d.endpoint, d.activity_key, d.customer_id, d.contact_key, d.activity_code, d.category,
                 d.activity_date_iso, d.description, d.writeback_code1, d.writeback_code2, d.link_url,
                 d.tenant_code, d.details_json, now) for d in batch]
        with self.conn:
            self.conn.executemany(f"INSERT OR IGNORE INTO activity_history ({', '.join(COLUMNS)}) "
                                  f"VALUES ({', '.join('?' * len(COLUMNS))})", rows)

    async def write(self, batch: Sequence[Delivery]) -> list[RecordFailure]:
        if not batch:
            return []
        try:
            await asyncio.to_thread(self._insert, batch)
        except sqlite3.OperationalError as exc:  # locked, disk full: worth another try
            raise RetriableError(f"sqlite: {exc}") from None
        return []

    async def stop(self) -> None:
        conn = getattr(self, "conn", None)
        if conn is not None:
            conn.close()
