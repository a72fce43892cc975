"""One endpoint's delivery (what the sink worker's agents hand their batches to), without Kafka."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from types import SimpleNamespace

import pytest

from sinks.delivery import EndpointDelivery
from sinks.providers.webhook.fake import FakeCRM
from activity_sync.devtools.sink_testing import Recorder
from core.avro import SingleObjectCodec
from core.catalog import load_catalog
from streams.enrich import Enricher
from core.config import Subscription
from core.routing import Routing
from activity_sync.tools import seed_lines


def endpoint_record(url: str, **kw) -> bytes:
    d = {"name": "crm", "provider": "webhook", "enabled": kw.pop("enabled", True), "tenant": kw.pop("tenant", "DEMO"),
         "settings": {"url": url, "linger_ms": 5, **kw}}
    return json.dumps(d).encode()


@pytest.fixture
async def world():
    a, b = await FakeCRM().start(), await FakeCRM().start()
    routing = Routing(load_catalog())
    routing.apply_record("endpoint:crm", endpoint_record(a.url))
    for code in {json.loads(x)["ActivityCode"] for x in seed_lines()}:
        routing.put_subscription(Subscription(code, "crm", "{ActivityCode}", True, "W1", "W2"))
    deleted = []
    d = EndpointDelivery("crm", routing, Recorder(), SingleObjectCodec().decode, on_deleted=lambda: deleted.append(1),
                         poll_s=0.05)
    yield SimpleNamespace(a=a, b=b, routing=routing, d=d, deleted=deleted)
    await d.stop()
    await a.stop()
    await b.stop()


def messages(routing: Routing, start: int, n: int) -> list:
    enricher, codec = Enricher(load_catalog(), routing), SingleObjectCodec()
    seeds = [json.loads(x) for x in seed_lines()]
    out = []
    for i in range(start, start + n):
        ev = dict(seeds[i % 5], ActivityKey=f"act-{i:06d}")
        r = enricher.enrich(json.dumps(ev).encode(), b"k", "raw", 0, i, 0)
        out.append(SimpleNamespace(key=r.key, value=codec.encode(r.record), topic="activity.enriched", partition=0,
                                   offset=i, headers=[("endpoints", b"crm")], timestamp=None))
    return out


async def test_settings_change_between_batches_reaches_the_next_batch(world):
    w = world
    await w.d.deliver(messages(w.routing, 0, 10))
    w.routing.apply_record("endpoint:crm", endpoint_record(w.b.url, batch_size=3))
    await w.d.deliver(messages(w.routing, 10, 10))
    assert sorted(w.a.stored) == [f"act-{i:06d}" for i in range(10)]
    assert sorted(w.b.stored) == [f"act-{i:06d}" for i in range(10, 20)]
    assert max(r["records"] for r in w.b.requests) == 3  # the new batch size


async def test_disabled_endpoint_holds_its_batch_until_enabled(world, caplog):
    w = world
    caplog.set_level(logging.INFO)
    batch = messages(w.routing, 0, 5)  # addressed to crm while it was enabled
    w.routing.apply_record("endpoint:crm", endpoint_record(w.a.url, enabled=False))
    task = asyncio.ensure_future(w.d.deliver(batch))
    await asyncio.sleep(0.5)
    assert not task.done() and w.a.stored == {} and w.d.publisher.deads == [] and w.d.publisher.retries == []
    assert "disabled: deliveries wait in Kafka" in caplog.text
    w.routing.apply_record("endpoint:crm", endpoint_record(w.a.url))
    await asyncio.wait_for(task, 5)
    assert len(w.a.stored) == 5


async def test_unusable_settings_pause_with_one_line_then_a_fix_resumes(world, caplog):
    w = world
    w.routing.apply_record("endpoint:crm", endpoint_record(w.a.url, batch_size=99999))
    task = asyncio.ensure_future(w.d.deliver(messages(w.routing, 0, 3)))
    await asyncio.sleep(0.5)
    assert not task.done()
    lines = [r.message for r in caplog.records if "settings cannot be used" in r.message]
    assert len(lines) == 1 and "settings.batch_size" in lines[0]
    w.routing.apply_record("endpoint:crm", endpoint_record(w.a.url))
    await asyncio.wait_for(task, 5)
    assert len(w.a.stored) == 3


async def test_deleted_endpoint_stops_the_worker(world):
    w = world
    await w.d.deliver(messages(w.routing, 0, 1))
    w.routing.apply_record("endpoint:crm", None)
    task = asyncio.ensure_future(w.d.deliver(messages(w.routing, 1, 1)))
    await asyncio.sleep(0.3)
    assert w.deleted == [1] and not task.done()
    task.cancel()


async def test_records_for_other_endpoints_are_skipped_undecoded(world):
    w = world
    msgs = messages(w.routing, 0, 3)
    msgs[1].headers = [("endpoints", b"other")]
    msgs[1].value = b"not avro at all"
    await w.d.deliver(msgs)
    assert sorted(w.a.stored) == ["act-000000", "act-000002"] and w.d.publisher.deads == []


async def test_interval_schedule_delivers_in_runs(world):
    w = world
    w.routing.apply_record("endpoint:crm", endpoint_record(w.a.url, schedule={"every": "2s"}))
    await w.d.deliver(messages(w.routing, 0, 5))  # the first run starts at once
    await w.d.deliver(messages(w.routing, 5, 2))  # a short batch: the run ends
    first = [r["at"] for r in w.a.requests]
    assert len(w.a.stored) == 7
    await asyncio.sleep(1.6)  # past the idle gap: what comes now belongs to the next run
    await w.d.deliver(messages(w.routing, 7, 3))
    second = w.a.requests[len(first):]
    assert len(w.a.stored) == 10
    assert second[0]["at"] >= first[0] + 2 - 0.05, "the next run started before its interval"
    assert w.d.endpoint and w.d.settings.interval_s == 2


async def test_another_tenants_record_is_dead_lettered_never_written(world):
    w = world
    batch = messages(w.routing, 0, 3)  # tenant DEMO, addressed to crm
    w.routing.apply_record("endpoint:crm", endpoint_record(w.a.url, tenant="ACME"))  # crm now serves ACME only
    await w.d.deliver(batch)
    assert w.a.stored == {} and len(w.d.publisher.deads) == 3
    h = {k: v.decode() for k, v in w.d.publisher.deads[0].items()}
    assert h["error.class"] == "TenantMismatch" and h["error.tenant"] == "DEMO" and h["error.endpoint"] == "crm"
    assert "of tenant 'DEMO' reached endpoint crm, which serves ACME" in h["error.message"]


async def test_records_read_again_after_a_rebalance_are_not_sent_twice(world):
    """The group re-read from its committed offsets while a request was under way: what this process
    delivered already is skipped, not sent again."""
    w = world
    batch = messages(w.routing, 0, 6)
    assert await w.d.deliver(batch) is True
    requests = len(w.a.requests)
    assert await w.d.deliver(batch[2:] + messages(w.routing, 6, 2)) is True
    assert len(w.a.stored) == 8 and w.a.stats()["duplicates"] == 0
    assert sum(r["records"] for r in w.a.requests[requests:]) == 2  # only the two new ones


async def test_a_stop_leaves_the_batch_unsent(world):
    w = world
    w.d.stopping = True
    assert await w.d.deliver(messages(w.routing, 0, 3)) is False
    assert w.a.stored == {} and w.a.requests == []


async def test_retries_due_close_together_go_in_one_request(world):
    from core import headers as H

    w = world
    now = time.time()
    msgs = []
    for i, m in enumerate(messages(w.routing, 0, 20)):
        m.headers = H.retry("crm", "DEMO", f"act-{i:06d}", ("activity.enriched", 0, i), attempts=1,
                            first_failure=now - 60, due=now + 0.3 + i * 0.02, tier="1m", error_class="RetriableError",
                            error="503")
        m.topic = "activity.retry.1m"
        msgs.append(m)
    assert await w.d.retry(msgs) is True
    assert len(w.a.stored) == 20 and len(w.a.requests) == 1, [r["records"] for r in w.a.requests]


async def test_the_drain_budget_covers_the_request_in_flight(world, monkeypatch):
    """A CRM taking 8 s a request: a stop waits for the request in flight for its whole timeout (two
    request timeouts and 5 s, the runner's write budget) rather than abandoning it after 20 s."""
    monkeypatch.setenv("ACTIVITY_SYNC_DRAIN_S", "20")
    w = world
    assert w.d.drain_budget() == 20  # nothing started yet
    w.routing.apply_record("endpoint:crm", endpoint_record(w.a.url, timeout_s=12))
    await w.d.deliver(messages(w.routing, 0, 1))
    assert w.d.drain_budget() == 12 * 2 + 5 + 1
