"""The one reach into faust-streaming's and aiokafka's private consumer state (core.consumer_state),
read from a real Faust worker on the real broker: after an upgrade that moves it, this fails here."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap

from conftest import ROOT, produce

from core.topics import Topics

WORKER = textwrap.dedent('''
    import asyncio, json, os, sys
    from core.consumer_state import _aiokafka_consumer, check_internals, read_progress
    from core.faustapp import make_app
    from core.settings import Settings

    settings = Settings.from_env()
    topic_name = os.environ["PROBE_TOPIC"]
    app = make_app("probe-" + topic_name, settings, "probe")
    topic = app.topic(topic_name, key_serializer="raw", value_serializer="raw", internal=False)
    seen = []

    @app.agent(topic)
    async def read(stream):
        async for event in stream.events():
            seen.append(event.message.offset)

    @app.timer(0.5)
    async def report():
        if len(seen) >= 3:
            check_internals(app)
            progress = read_progress(app, topic_name)
            state = {f"{t}:{p}": v for (t, p), v in progress.items()}
            state["fetch_max_wait_ms"] = _aiokafka_consumer(app)._fetcher._fetch_max_wait_ms
            line = json.dumps(state) + "\\n"
            os.write(1, line.encode())  # Faust sends print() to its log
            os._exit(0)

    app.main()
''')


async def test_progress_is_read_from_a_running_faust_consumer(settings, tmp_path):
    topic = Topics(settings.topic_prefix).raw
    await produce(settings, topic, [(b"k", b"one"), (b"k", b"two"), (b"k", b"three")])
    env = {"KAFKA_BOOTSTRAP_SERVERS": settings.kafka.bootstrap_servers, "ACTIVITY_SYNC_DATADIR": str(tmp_path),
           "PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "PROBE_TOPIC": topic}
    script = tmp_path / "probe.py"
    script.write_text(WORKER)
    proc = await asyncio.to_thread(subprocess.run, [sys.executable, str(script), "worker", "-l", "warn"],
                                   env=env, capture_output=True, text=True, timeout=90, cwd=ROOT)
    lines = [ln[ln.index('{"'):] for ln in proc.stdout.splitlines() if '{"' in ln]  # after Faust's terminal codes
    assert proc.returncode == 0 and lines, proc.stdout + proc.stderr
    progress = json.loads(lines[-1])
    # Faust fixes the wait at 1,500 ms: a sink's fetch of its idle retry tiers held the busy partitions
    # that long (the sink delivered at less than half its rate without this)
    from core.faustapp import FETCH_MAX_WAIT_MS
    assert progress.pop("fetch_max_wait_ms") == FETCH_MAX_WAIT_MS == 100
    assert len(progress) == settings.partitions, progress
    # every partition fetched to its end; the one holding the three records read to its last offset
    assert all(pos == hw for pos, _, hw in progress.values()), progress
    assert sorted(hw for _, _, hw in progress.values()) == [0] * (settings.partitions - 1) + [3], progress
    assert [read for _, read, hw in progress.values() if hw == 3] == [2], progress


SKIPPED_WORKER = textwrap.dedent('''
    import json, os, time
    from faust.transport.consumer import ThreadDelegateConsumer
    from core.faustapp import make_app
    from core.settings import Settings

    settings = Settings.from_env()
    topic_name = os.environ["PROBE_TOPIC"]
    ends = json.loads(os.environ["PROBE_ENDS"])
    # What Faust does while a worker recovers its tables: it resumes the stream partitions, drops what
    # the fetcher returns for them, then seeks back to the committed offsets. Here the drop is made
    # certain: each partition's position is moved to its end before that seek.
    mended_seek = ThreadDelegateConsumer.seek_to_committed

    async def seek_after_a_dropped_fetch(self):
        for tp in self.assignment():
            if tp.topic == topic_name:
                self._thread.seek(tp, ends[str(tp.partition)])
        return await mended_seek(self)

    ThreadDelegateConsumer.seek_to_committed = seek_after_a_dropped_fetch
    app = make_app("probe-skip-" + topic_name, settings, "probe")
    topic = app.topic(topic_name, key_serializer="raw", value_serializer="raw", internal=False)
    seen = []

    @app.agent(topic)
    async def read(stream):
        async for event in stream.events():
            seen.append(event.value.decode())

    started = time.monotonic()

    @app.timer(0.5)
    async def report():
        if len(seen) >= int(os.environ["PROBE_WANT"]) or time.monotonic() - started > 20:
            os.write(1, ("SEEN " + json.dumps(sorted(seen)) + "\\n").encode())
            os._exit(0)

    app.main()
''')


async def test_a_partition_never_committed_is_read_from_its_start_after_faust_drops_a_fetch(settings, tmp_path):
    """A stage killed before its first commit: restarted, Faust seeks "to the committed offsets", of
    which there are none. Whatever its fetcher read and dropped meanwhile must be read again (it was
    skipped for good: core.faustapp mends the seek)."""
    topic = Topics(settings.topic_prefix).raw
    values = [f"v{i}".encode() for i in range(12)]
    await produce(settings, topic, [(f"k{i}".encode(), v) for i, v in enumerate(values)])
    from aiokafka import AIOKafkaConsumer, TopicPartition

    probe = AIOKafkaConsumer(**settings.kafka.aiokafka_kwargs())
    await probe.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(settings.partitions)]
        ends = {str(tp.partition): off for tp, off in (await probe.end_offsets(tps)).items()}
    finally:
        await probe.stop()
    env = {"KAFKA_BOOTSTRAP_SERVERS": settings.kafka.bootstrap_servers, "ACTIVITY_SYNC_DATADIR": str(tmp_path),
           "PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "PROBE_TOPIC": topic, "PROBE_ENDS": json.dumps(ends),
           "PROBE_WANT": str(len(values))}
    script = tmp_path / "probe.py"
    script.write_text(SKIPPED_WORKER)
    proc = await asyncio.to_thread(subprocess.run, [sys.executable, str(script), "worker", "-l", "warn"],
                                   env=env, capture_output=True, text=True, timeout=90, cwd=ROOT)
    lines = [ln[ln.index("SEEN ") + 5:] for ln in proc.stdout.splitlines() if "SEEN " in ln]
    assert proc.returncode == 0 and lines, proc.stdout + proc.stderr
    assert json.loads(lines[-1]) == sorted(v.decode() for v in values)
