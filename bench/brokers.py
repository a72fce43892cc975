"""The broker a bench runs against: ``KAFKA_BOOTSTRAP_SERVERS`` when set, else a local one for the run."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from core.settings import KafkaSettings


@contextlib.contextmanager
def bench_broker(log_dir: str):
    """Yields the :class:`KafkaSettings` to use; a broker started here is stopped on the way out."""
    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        yield KafkaSettings.from_env()
        return
    from activity_sync.devtools.broker import LocalKafka

    broker = LocalKafka(Path(log_dir) / "kafka", heap="1g").start()
    try:
        yield KafkaSettings(bootstrap_servers=broker.bootstrap)
    finally:
        broker.stop()
