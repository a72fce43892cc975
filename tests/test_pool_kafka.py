"""The pool sink worker (sinks.pool) on the real broker: endpoints saved to activity.config get their
deliveries with nothing else started, a disabled or deleted one has its worker stopped, and one
endpoint's hung CRM holds nothing of the others' (each keeps its own consumer group)."""

from __future__ import annotations

import json
import time
import urllib.request

import test_delivery_kafka as delivery
import yaml
from conftest import produce, publish_config_file
from test_delivery_kafka import SECRET, config_doc, metrics_text, wait_for, webhook

from activity_sync.devtools.broker import free_port
from sinks.providers.webhook.fake import FakeCRM
from core.topics import Topics

pipeline = delivery.pipeline  # the fixture: a config published, workers against this test's topics


async def publish(settings, tmp_path, doc: dict) -> None:
    path = tmp_path / "config-now.yaml"
    path.write_text(yaml.safe_dump(doc))
    await publish_config_file(settings, path)


def pool_worker(pipeline, spawn, port: int, *args: str, name: str = "pool"):
    return spawn(["-m", "sinks.pool", *args], pipeline.env(ACTIVITY_SYNC_METRICS_PORT=str(port)), name)


async def test_a_pool_delivers_endpoints_as_they_are_saved_and_stops_them_when_disabled_or_deleted(
        settings, pipeline, tmp_path, spawn):
    a, b = await FakeCRM(secret=SECRET.encode()).start(), await FakeCRM(secret=SECRET.encode()).start()
    try:
        await pipeline.configure({"crm-a": webhook(a)})
        port = free_port()
        pool = pool_worker(pipeline, spawn, port, "--match", "crm-*")
        enriched = Topics(settings.topic_prefix).enriched
        await produce(settings, enriched, pipeline.enriched(50))
        await wait_for(lambda: a.stats()["stored"] >= 50, 60, "crm-a's deliveries through the pool")
        # crm-b saved while the pool runs: delivered with nothing else started
        doc = config_doc({"crm-a": webhook(a), "crm-b": webhook(b)})
        await publish(settings, tmp_path, doc)
        pipeline.doc = doc
        saved = time.monotonic()
        await produce(settings, enriched, pipeline.enriched(40))
        await wait_for(lambda: b.stats()["stored"] >= 1, 30, "crm-b's first delivery")
        first = time.monotonic() - saved
        await wait_for(lambda: b.stats()["stored"] >= 40 and (a.stats()["stored"] + a.stats()["duplicates"]) >= 90, 30, "both delivered")
        assert first < 30
        text = metrics_text(port)
        assert "activity_sync_pool_endpoints 2.0" in text, text[:2000]
        # the children's figures on the pool's port, each labelled with its endpoint
        assert 'activity_sync_deliveries_total{endpoint="crm-b",outcome="delivered"} 40.0' in text
        assert 'process_resident_memory_bytes{endpoint="crm-a"}' in text
        # disabled: its worker stops (and nothing more reaches it); deleted: the same
        doc["endpoints"][0]["enabled"] = False
        await publish(settings, tmp_path, doc)
        await wait_for(lambda: "activity_sync_pool_workers_running 1.0" in metrics_text(port), 60,
                       "crm-a's worker stopped")
        await produce(settings, Topics(settings.topic_prefix).config, [(b"endpoint:crm-b", None)])
        await wait_for(lambda: "activity_sync_pool_workers_running 0.0" in metrics_text(port), 60,
                       "crm-b's worker stopped")
        out = pool.output()
        assert "endpoint crm-a disabled: stopping its worker" in out and "endpoint crm-b deleted" in out, out[-3000:]
        assert (a.stats()["stored"] + a.stats()["duplicates"]) == 90 and b.stats()["stored"] == 40
        assert 'how="crashed"' not in text
    finally:
        await a.stop()
        await b.stop()


async def test_one_endpoints_hung_crm_holds_nothing_of_the_pools_other_endpoints(settings, pipeline, spawn):
    hung, fine = await FakeCRM(secret=SECRET.encode()).start(), await FakeCRM(secret=SECRET.encode()).start()
    try:
        hung.control({"latency_ms": 3_600_000})  # answers nothing for an hour
        await pipeline.configure({"hung": webhook(hung, timeout_s=30), "fine": webhook(fine)})
        port = free_port()
        pool_worker(pipeline, spawn, port)
        enriched = Topics(settings.topic_prefix).enriched
        await produce(settings, enriched, pipeline.enriched(300))
        await wait_for(lambda: fine.stats()["stored"] >= 300, 60, "the fine endpoint's deliveries")
        await wait_for(lambda: hung.serving >= 1, 30, "the hung CRM being asked")
        await produce(settings, enriched, pipeline.enriched(300)[:100])  # the same keys again, later
        await wait_for(lambda: fine.stats()["requests"] >= 4, 30, "the fine endpoint's later requests")
        assert hung.stats()["stored"] == 0 and fine.stats()["stored"] == 300
        text = metrics_text(port)
        assert "activity_sync_pool_workers_running 2.0" in text
        readyz = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5).read())
        assert readyz["ready"] is True and readyz["checks"] == {"config_loaded": True, "endpoints_running": True}
    finally:
        await hung.stop()
        await fine.stop()
