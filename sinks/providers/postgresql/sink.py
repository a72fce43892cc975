"""The PostgreSQL activity table: the seed's "separate place for community activities".

Rows are written in batches by one statement, an upsert on ``(endpoint, activity_key)``::

    INSERT INTO community_activities (...) SELECT * FROM unnest($1::text[], ...)
    ON CONFLICT (endpoint, activity_key) DO UPDATE SET ... , writes = writes + 1

so a redelivery updates the row it wrote (and counts it in ``writes``) instead of adding one.
The table is created at start (``create_table``) or by ``activity-sync postgres-migrate``, with
the indexes an analyst needs: by member (``customer_id, activity_date``), by code
(``activity_code, activity_date``) and by date. The details are a ``jsonb`` column (the activity's
properties as an object), queried with ``details->>'Subject'``.

Errors (asyncpg raises the server's SQLSTATE as a class): a row the table refuses (class 22 data
exception, 23 integrity violation, e.g. a CHECK the DBA added) refuses the statement, so the batch
is refused (:class:`BatchRefused`) and the runner halves it until the row stands alone and is
dead-lettered; connection loss, a statement timeout (``timeout_s``), deadlocks, serialization
failures, too many connections, and everything else are retriable (a wrong password or a missing
privilege included: the activities wait in the retry tiers while the operator fixes it).
"""

from __future__ import annotations

import asyncio
import json
from typing import Sequence

from sinks.contract import BatchRefused, Delivery, RecordFailure, RetriableError, Sink, SinkContext

COLUMNS = ("endpoint", "activity_key", "tenant_code", "customer_id", "contact_key", "activity_code", "category",
           "activity_date", "description", "link_url", "writeback_code1", "writeback_code2", "details")


def ddl(schema: str, table: str) -> list[str]:
    t = f'"{schema}"."{table}"'
    return [
        f'CREATE SCHEMA IF NOT EXISTS "{schema}"',
        f"""CREATE TABLE IF NOT EXISTS {t} (
            endpoint         text        NOT NULL,
            activity_key     text        NOT NULL,
            tenant_code      text        NOT NULL,
            customer_id      text,
            contact_key      text,
            activity_code    text        NOT NULL,
            category         text        NOT NULL,
            activity_date    timestamptz NOT NULL,
            description      text        NOT NULL,
            link_url         text,
            writeback_code1  text,
            writeback_code2  text,
            details          jsonb       NOT NULL DEFAULT '{{}}'::jsonb,
            first_written_at timestamptz NOT NULL DEFAULT now(),
            written_at       timestamptz NOT NULL DEFAULT now(),
            writes           integer     NOT NULL DEFAULT 1,
            PRIMARY KEY (endpoint, activity_key))""",
        f'CREATE INDEX IF NOT EXISTS "{table}_member_idx" ON {t} (customer_id, activity_date DESC)',
        f'CREATE INDEX IF NOT EXISTS "{table}_code_idx" ON {t} (activity_code, activity_date DESC)',
        f'CREATE INDEX IF NOT EXISTS "{table}_date_idx" ON {t} (activity_date)',
        f"COMMENT ON TABLE {t} IS 'Community activities written by activity-sync: one row per endpoint and "
        f"ActivityKey (upserted: writes counts redeliveries)'",
    ]


def upsert_sql(schema: str, table: str) -> str:
    t = f'"{schema}"."{table}"'
    types = ["text"] * 7 + ["timestamptz"] + ["text"] * 4 + ["text"]
    params = ", ".join(f"${i + 1}::{ty}[]" for i, ty in enumerate(types))
    select = ", ".join(COLUMNS[:-1]) + ", details::jsonb"
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in COLUMNS[2:])
    return (f"INSERT INTO {t} ({', '.join(COLUMNS)}) SELECT {select} FROM unnest({params}) AS u({', '.join(COLUMNS)}) "
            f"ON CONFLICT (endpoint, activity_key) DO UPDATE SET {updates}, written_at = now(), "
            f"writes = {t}.writes + 1")


def _clean(v):
    return v.replace("\x00", "\ufffd") if isinstance(v, str) else v


def details_object(d: Delivery) -> str:
    return json.dumps({k: v for k, v in d.details}, ensure_ascii=False).replace("\\u0000", "\\ufffd")


class PostgresSink(Sink):
    provider = "postgresql"

    async def start(self, ctx: SinkContext) -> None:
        import asyncpg  # the postgresql extra

        await super().start(ctx)
        s = ctx.settings
        self._asyncpg = asyncpg
        self.sql = upsert_sql(s.schema_name, s.table)
        try:
            self.pool = await asyncpg.create_pool(s.dsn, password=s.secret("password"), min_size=1,
                                                  max_size=s.pool_size, command_timeout=s.timeout_s,
                                                  timeout=s.timeout_s)
        except (OSError, asyncio.TimeoutError, asyncpg.PostgresError) as exc:
            raise LookupError(f"cannot connect to PostgreSQL ({type(exc).__name__}: {exc})") from None
        if s.create_table:
            await migrate(self.pool, s.schema_name, s.table)


    async def stop(self) -> None:
        pool = getattr(self, "pool", None)
        if pool is not None:
            await pool.close()
            self.pool = None

    async def write(self, batch: Sequence[Delivery]) -> list[RecordFailure]:
        if not batch:
            return []
        failures, rows = [], []
        for i, d in enumerate(batch):
            if (error := self.no_customer(d)) is not None:
                failures.append(RecordFailure(i, error))
                continue
            rows.append((d.endpoint if d.endpoint else self.ctx.endpoint, d.activity_key, d.tenant_code, d.customer_id,
                         d.contact_key, d.activity_code, d.category, d.activity_date, d.description, d.link_url,
                         d.writeback_code1, d.writeback_code2, details_object(d)))
        if not rows:
            return failures
        # one statement cannot upsert the same key twice (SQLSTATE 21000): the last copy of a key wins
        rows = list({r[1]: r for r in rows}.values())
        columns = [[_clean(r[c]) for r in rows] for c in range(len(COLUMNS))]
        columns[0] = [self.ctx.endpoint] * len(rows)
        pg = self._asyncpg
        try:
            async with self.pool.acquire() as conn:
                await conn.execute(self.sql, *columns)
        except (pg.exceptions.DataError, pg.exceptions.IntegrityConstraintViolationError) as exc:
            raise BatchRefused(f"PostgreSQL {exc.sqlstate} {type(exc).__name__}: {exc}"[:500]) from None
        except pg.PostgresError as exc:
            raise RetriableError(f"PostgreSQL {getattr(exc, 'sqlstate', '')} {type(exc).__name__}: {exc}"[:500]) \
                from None
        except (OSError, asyncio.TimeoutError, pg.exceptions.InterfaceError) as exc:
            raise RetriableError(f"PostgreSQL connection: {type(exc).__name__}: {exc}"[:500]) from None
        return failures


async def migrate(pool_or_conn, schema: str, table: str) -> None:
    """Create the table and its indexes if they are missing (idempotent)."""
    async with pool_or_conn.acquire() as conn:
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", f"{schema}.{table}")
            for stmt in ddl(schema, table):
                await conn.execute(stmt)
