"""Fixtures: one real Kafka broker per test session (or the cluster in KAFKA_BOOTSTRAP_SERVERS),
a fresh topic prefix per test, and worker subprocesses that tests can SIGKILL and restart.

A test that needs Kafka gets it or fails loudly: nothing here skips.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from activity_sync.devtools.broker import LocalKafka
from core.settings import KafkaSettings, Settings
from core.topics import MAX_EVENT_TOPIC_BYTES, Topics, ensure_topics, partition_ids

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"


@pytest.fixture(scope="session")
def kafka(tmp_path_factory) -> KafkaSettings:
    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        yield KafkaSettings.from_env()
        return
    broker = LocalKafka(tmp_path_factory.mktemp("kafka"))
    broker.start()  # raises BrokerError with the reason if it cannot start
    try:
        yield KafkaSettings(bootstrap_servers=broker.bootstrap)
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def postgres():
    """One real PostgreSQL server (Debian's package, installed if missing) per test session."""
    from activity_sync.devtools.postgres import LocalPostgres

    server = LocalPostgres().start()  # raises PostgresError with the reason if it cannot start
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def settings(kafka, tmp_path) -> Settings:
    """Settings with a topic prefix and app id of this test's own, topics created."""
    prefix = f"t{uuid.uuid4().hex[:8]}."
    s = Settings(kafka=kafka, topic_prefix=prefix, partitions=3, app_id=f"{prefix}streams",
                 config_path=str(FIXTURES / "config.yaml"), metrics_port=0)
    asyncio.run(ensure_topics(kafka, Topics(prefix).specs(s.partitions)))
    return s


def worker_env(settings: Settings, tmp_path: Path, **extra) -> dict:
    env = dict(os.environ)
    env.update({
        "KAFKA_BOOTSTRAP_SERVERS": settings.kafka.bootstrap_servers,
        "ACTIVITY_SYNC_TOPIC_PREFIX": settings.topic_prefix,
        "ACTIVITY_SYNC_PARTITIONS": str(settings.partitions),
        "ACTIVITY_SYNC_APP_ID": settings.app_id,
        "ACTIVITY_SYNC_CONFIG": settings.config_path or "",
        "ACTIVITY_SYNC_DATADIR": str(tmp_path / f"datadir-{uuid.uuid4().hex[:6]}"),
        "ACTIVITY_SYNC_LOG_LEVEL": "INFO",
        "PYTHONUNBUFFERED": "1",
        "ACTIVITY_SYNC_METRICS_PORT": "0",  # off unless a test asks for a port
    })
    env.update({k: str(v) for k, v in extra.items()})
    return env


class Proc:
    """A worker subprocess whose output goes to a log file in the test's tmp dir."""

    def __init__(self, args: list[str], env: dict, log: Path) -> None:
        self.args, self.env, self.log = args, env, log
        self.p: subprocess.Popen | None = None

    def start(self) -> "Proc":
        out = open(self.log, "ab")
        self.p = subprocess.Popen([sys.executable, *self.args], env=self.env, stdout=out,
                                  stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True)
        return self

    def kill(self, sig=signal.SIGKILL) -> None:
        if self.p and self.p.poll() is None:
            os.killpg(self.p.pid, sig)
            try:
                self.p.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.p.pid, signal.SIGKILL)
                self.p.wait(5)

    def stop(self) -> None:
        self.kill(signal.SIGTERM)

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


@pytest.fixture
def spawn(tmp_path):
    procs: list[Proc] = []

    def _spawn(args: list[str], env: dict, name: str = "proc") -> Proc:
        p = Proc(args, env, tmp_path / f"{name}-{len(procs)}.log").start()
        procs.append(p)
        return p

    yield _spawn
    for p in procs:
        p.stop()


@pytest.fixture
def stream_worker(settings, tmp_path, spawn):
    """Start a stream worker for this test's topics; call again for a second one."""

    def _start(**extra) -> Proc:
        return spawn(["-m", "streams.app"], worker_env(settings, tmp_path, **extra), "stream-worker")

    return _start


async def publish_config_file(settings: Settings, path: Path) -> None:
    from activity_sync.tools import publish_config

    await publish_config(settings, path)


async def produce(settings: Settings, topic: str, messages: list[tuple[bytes | None, bytes]],
                  headers=None) -> None:
    producer = AIOKafkaProducer(acks="all", max_request_size=MAX_EVENT_TOPIC_BYTES, linger_ms=5,
                                **settings.kafka.aiokafka_kwargs())
    await producer.start()
    try:
        futs = [await producer.send(topic, key=k, value=v, headers=headers) for k, v in messages]
        await asyncio.gather(*futs)
    finally:
        await producer.stop()


async def consume(settings: Settings, topic: str, until, timeout: float = 60.0, settle: float = 0.0):
    """Read ``topic`` from the beginning until ``until(messages)`` is true (then ``settle`` more seconds).

    Fails with what was read if the timeout passes first.
    """
    consumer = AIOKafkaConsumer(enable_auto_commit=False, auto_offset_reset="earliest",
                                max_partition_fetch_bytes=MAX_EVENT_TOPIC_BYTES + 65536,
                                **settings.kafka.aiokafka_kwargs())
    await consumer.start()
    msgs: list = []
    try:
        parts = [TopicPartition(topic, p) for p in await partition_ids(settings.kafka, topic)]
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        deadline = time.monotonic() + timeout
        done_at = None
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=200)
            for ms in batch.values():
                msgs.extend(ms)
            if done_at is None and until(msgs):
                done_at = time.monotonic()
            if done_at is not None and time.monotonic() - done_at >= settle:
                return msgs
        raise AssertionError(f"timed out after {timeout}s on {topic} with {len(msgs)} messages")
    finally:
        await consumer.stop()


def seed_events() -> list[dict]:
    from activity_sync.tools import seed_lines

    return [json.loads(line) for line in seed_lines()]
