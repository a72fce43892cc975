"""The PostgreSQL activity table against a real PostgreSQL server: the shared contract (faults
injected by triggers on the table, a refused row by a CHECK constraint), the upsert, the schema
an analyst queries, and errors classified."""

from __future__ import annotations

import uuid

import asyncpg
import pytest

from sinks.contract import BatchRefused, Delivery, RetriableError
from sinks.providers.postgresql.sink import ddl
from sinks.registry import SettingsError, parse_settings
from activity_sync.devtools.sink_testing import ProviderContract, opt_out, sample_deliveries


class Table:
    """The 'fake' of the contract harness for a real server: a fresh table, and faults injected
    into it by a statement trigger (counters are sequences, so a failed statement still counts)."""

    def __init__(self, server) -> None:
        self.server = server
        self.table = f"t_{uuid.uuid4().hex[:10]}"
        self.requests: list = []  # the harness looks here for requests made; the server keeps no such log

    async def conn(self):
        return await asyncpg.connect(self.server.dsn, password=self.server.password)

    async def start(self) -> "Table":
        c = await self.conn()
        try:
            for stmt in ddl("public", self.table):
                await c.execute(stmt)
            t = self.table
            await c.execute(f"""
                CREATE SEQUENCE {t}_fail_seq; CREATE SEQUENCE {t}_slow_seq;
                CREATE TABLE {t}_faults (fail int NOT NULL DEFAULT 0, slow int NOT NULL DEFAULT 0,
                                         slow_s float NOT NULL DEFAULT 0);
                INSERT INTO {t}_faults DEFAULT VALUES;
                CREATE FUNCTION {t}_fault() RETURNS trigger LANGUAGE plpgsql AS $$
                DECLARE f record;
                BEGIN
                  SELECT * INTO f FROM {t}_faults;
                  IF f.slow > 0 AND nextval('{t}_slow_seq') <= f.slow THEN PERFORM pg_sleep(f.slow_s); END IF;
                  IF f.fail > 0 AND nextval('{t}_fail_seq') <= f.fail THEN
                    RAISE EXCEPTION 'injected fault' USING ERRCODE = '53000';
                  END IF;
                  RETURN NULL;
                END $$;
                CREATE TRIGGER {t}_fault BEFORE INSERT ON {t} FOR EACH STATEMENT EXECUTE FUNCTION {t}_fault();""")
        finally:
            await c.close()
        return self

    async def control_async(self, spec: dict) -> None:
        t = self.table
        c = await self.conn()
        try:
            if "fail" in spec:
                await c.execute(f"SELECT setval('{t}_fail_seq', 1, false); UPDATE {t}_faults SET fail = "
                                f"{int(spec['fail'].get('count', 1))}")
            if "slow" in spec:
                await c.execute(f"SELECT setval('{t}_slow_seq', 1, false); UPDATE {t}_faults SET slow = "
                                f"{int(spec['slow'].get('count', 1))}, slow_s = {float(spec['slow']['ms']) / 1000}")
            if "reject_customers" in spec:
                names = ", ".join("'" + x.replace("'", "''") + "'" for x in spec["reject_customers"])
                await c.execute(f"ALTER TABLE {t} ADD CONSTRAINT {t}_known_member CHECK (customer_id NOT IN ({names}))")
        finally:
            await c.close()

    async def keys(self) -> list[str]:
        c = await self.conn()
        try:
            return [r[0] for r in await c.fetch(f"SELECT activity_key FROM {self.table}")]
        finally:
            await c.close()

    async def stop(self) -> None:
        pass


class TestPostgresContract(ProviderContract):
    provider = "postgresql"

    @pytest.fixture
    async def fake(self, monkeypatch, postgres):
        monkeypatch.setenv("TEST_PG_PASSWORD", postgres.password)
        self.secrets = (postgres.password,)
        table = await Table(postgres).start()
        self._keys = None
        yield table

    def settings(self, fake, tmp_path) -> dict:
        return {"dsn": fake.server.dsn, "password_env": "TEST_PG_PASSWORD", "table": fake.table, "timeout_s": 1}

    def control(self, fake, spec: dict) -> None:
        raise AssertionError("use await fake.control_async (the harness's sync control is overridden below)")

    def stored_keys(self, fake, tmp_path) -> list[str]:
        import asyncio
        import concurrent.futures

        with concurrent.futures.ThreadPoolExecutor(1) as ex:  # a loop of its own: the test's loop is running
            return ex.submit(asyncio.run, fake.keys()).result()

    # the harness's cases that inject faults, with the faults injected into the table
    async def test_5xx_and_timeouts_are_retried(self, fake, tmp_path):
        """A server-side error (SQLSTATE 53000) and a statement over timeout_s are retried in-process."""
        sink = await self.sink(fake, tmp_path, timeout_s=0.5)
        pub = __import__("activity_sync.devtools.sink_testing", fromlist=["Recorder"]).Recorder()
        batch = sample_deliveries(3)
        try:
            await fake.control_async({"fail": {"count": 1}})
            await self.runner(sink, pub).deliver(self.pending(batch[:1]))
            await fake.control_async({"slow": {"ms": 1500, "count": 1}})
            await self.runner(sink, pub).deliver(self.pending(batch[1:]))
        finally:
            await sink.stop()
        assert pub.retries == [] and pub.deads == []
        assert sorted(await fake.keys()) == sorted(d.activity_key for d in batch)

    async def test_one_invalid_record_fails_alone(self, fake, tmp_path):
        sink = await self.sink(fake, tmp_path)
        batch = sample_deliveries(4, customer=lambda i: "cust-bad" if i == 2 else f"cust-{i}")
        await fake.control_async({"reject_customers": ["cust-bad"]})
        pub = __import__("activity_sync.devtools.sink_testing", fromlist=["Recorder"]).Recorder()
        try:
            await self.runner(sink, pub).deliver(self.pending(batch))
        finally:
            await sink.stop()
        assert pub.retries == [] and [h["activity_key"] for h in pub.deads] == [batch[2].activity_key.encode()]
        assert b"CheckViolation" in pub.deads[0]["error.message"]
        assert sorted(await fake.keys()) == sorted(batch[i].activity_key for i in (0, 1, 3))

    async def test_no_secret_in_logs_errors_or_metrics(self, fake, tmp_path, caplog):
        await fake.control_async({"fail": {"count": 10}})
        self.control = lambda fake, spec: None  # the faults are in place already
        await super().test_no_secret_in_logs_errors_or_metrics(fake, tmp_path, caplog)

    @opt_out("PostgreSQL does not throttle: a busy server answers slowly (timeout_s) or refuses connections")
    async def test_throttle_holds_back_every_later_request(self, fake, tmp_path):
        await super().test_throttle_holds_back_every_later_request(fake, tmp_path)

    @opt_out("the database password authenticates each connection: there is no token to expire")
    async def test_expired_token_is_refreshed_once(self, fake, tmp_path):
        await super().test_expired_token_is_refreshed_once(fake, tmp_path)

    # ------------------------------------------------------------------ the table's own
    async def test_upsert_counts_redeliveries_and_the_row_is_what_an_analyst_reads(self, fake, tmp_path):
        sink = await self.sink(fake, tmp_path)
        batch = sample_deliveries(5, customer=lambda i: f"M{i % 2}")
        try:
            assert await sink.write(batch) == []
            assert await sink.write(batch[:2] + batch[:1]) == []  # a redelivery, and a key twice in one batch
        finally:
            await sink.stop()
        c = await fake.conn()
        try:
            rows = {r["activity_key"]: r for r in await c.fetch(f"SELECT * FROM {fake.table}")}
            by_member = await c.fetchval(f"SELECT count(*) FROM {fake.table} WHERE customer_id = 'M0'")
            subject = await c.fetchval(f"SELECT details->>'Subject' FROM {fake.table} WHERE activity_key = $1",
                                       batch[0].activity_key)
            indexes = {r[0] for r in await c.fetch("SELECT indexname FROM pg_indexes WHERE tablename = $1", fake.table)}
        finally:
            await c.close()
        d = batch[0]
        assert len(rows) == 5 and rows[d.activity_key]["writes"] == 2 and rows[batch[3].activity_key]["writes"] == 1
        assert rows[d.activity_key]["endpoint"] == "crm" and rows[d.activity_key]["activity_date"] == d.activity_date
        assert rows[d.activity_key]["writeback_code1"] == d.writeback_code1 and by_member == 3
        assert subject == dict(d.details)["Subject"]
        assert {f"{fake.table}_member_idx", f"{fake.table}_code_idx", f"{fake.table}_date_idx"} <= indexes

    async def test_nul_characters_and_a_wrong_password(self, fake, tmp_path, monkeypatch):
        sink = await self.sink(fake, tmp_path)
        d = sample_deliveries(1)[0]
        odd = Delivery(**{**d.__dict__, "description": "a\x00b", "details": (("Body", "x\x00y"),)})
        try:
            assert await sink.write([odd]) == []
        finally:
            await sink.stop()
        monkeypatch.setenv("WRONG_PG", "nope")
        with pytest.raises(LookupError, match="cannot connect to PostgreSQL.*password"):
            await self.sink(fake, tmp_path, password_env="WRONG_PG")
        with pytest.raises(SettingsError, match="looks like a URL with a user name and password"):
            parse_settings("postgresql", {"dsn": "postgresql://u:pw@127.0.0.1/db"})
        with pytest.raises(SettingsError, match="table"):
            parse_settings("postgresql", {"dsn": "postgresql://u@h/db", "table": "x; DROP TABLE y"})

    async def test_errors_are_classified(self, fake, tmp_path):
        sink = await self.sink(fake, tmp_path)
        try:
            await fake.control_async({"reject_customers": ["cust-0"]})
            with pytest.raises(BatchRefused, match="23514"):
                await sink.write(sample_deliveries(1))
            await fake.control_async({"fail": {"count": 1}})
            with pytest.raises(RetriableError, match="53000"):
                await sink.write(sample_deliveries(2)[1:])
        finally:
            await sink.stop()


async def test_postgres_migrate_creates_the_table_for_an_endpoint_that_does_not(postgres, tmp_path):
    import asyncio
    import os
    import subprocess
    import sys

    import yaml

    table = f"m_{uuid.uuid4().hex[:8]}"
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({"endpoints": [{"name": "pg", "provider": "postgresql", "tenant": "*", "settings": {
        "dsn": postgres.dsn, "password_env": "MIGRATE_PW", "table": table, "create_table": False}}],
        "subscriptions": []}))
    env = dict(os.environ, MIGRATE_PW=postgres.password)

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "activity_sync.cli", "postgres-migrate", *args, "--config",
                               str(cfg)], env=env, capture_output=True, text=True)

    ok, missing = await asyncio.to_thread(cli, "pg"), await asyncio.to_thread(cli, "other")
    assert ok.returncode == 0 and table in ok.stdout
    assert missing.returncode == 2 and "no postgresql endpoint named 'other'" in missing.stderr
    c = await asyncpg.connect(postgres.dsn, password=postgres.password)
    try:
        indexes = {r[0] for r in await c.fetch("SELECT indexname FROM pg_indexes WHERE tablename = $1", table)}
    finally:
        await c.close()
    assert {f"{table}_pkey", f"{table}_member_idx", f"{table}_code_idx", f"{table}_date_idx"} == indexes
