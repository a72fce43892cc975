"""Faust's consumer hands a message to its stream without creating tasks when the hand-off finishes at
once, and as before when it waits (core.faustapp._message_handoff_without_tasks)."""

from __future__ import annotations

import asyncio

import pytest
from faust.transport.consumer import Consumer
from mode import Service

from core import faustapp  # importing it applies the patch


class Probe(Service):
    """A service with the patched ``wait_first`` (what Faust's Consumer has), without a Kafka client."""

    wait_first = Consumer.wait_first


def test_the_patch_is_applied():
    assert faustapp.make_app and getattr(Consumer.wait_first, "_activity_sync", False)


async def test_a_hand_off_that_yields_to_the_loop_goes_on():
    probe, suspended = Probe(), asyncio.Event()

    async def polite():
        await asyncio.sleep(0)  # a bare yield: None, not a future
        await asyncio.sleep(0.01)
        return "done"

    assert (await probe.wait_first(polite(), suspended.wait())).results == ["done"]


async def test_a_hand_off_that_finishes_at_once_creates_no_task():
    probe, suspended = Probe(), asyncio.Event()
    created = []
    loop = asyncio.get_running_loop()
    factory = loop.get_task_factory()
    loop.set_task_factory(lambda lp, coro, **kw: created.append(coro) or asyncio.Task(coro, loop=lp, **kw))
    try:
        async def put(x):
            return x * 2

        res = await probe.wait_first(put(21), suspended.wait())
    finally:
        loop.set_task_factory(factory)
    assert res.done and res.results == [42] and not res.stopped
    assert created == []


async def test_a_hand_off_that_waits_goes_on_until_it_finishes():
    probe, suspended = Probe(), asyncio.Event()
    queue: asyncio.Queue = asyncio.Queue(maxsize=1)
    queue.put_nowait("first")

    async def consume_later():
        await asyncio.sleep(0.05)
        return await queue.get()

    reader = asyncio.ensure_future(consume_later())
    res = await probe.wait_first(queue.put("second"), suspended.wait())  # full: waits for the reader
    assert not res.stopped and await reader == "first" and queue.get_nowait() == "second"


async def test_a_waiting_hand_off_loses_to_a_suspended_flow_and_leaves_nothing_behind():
    probe, suspended = Probe(), asyncio.Event()
    queue: asyncio.Queue = asyncio.Queue(maxsize=1)
    queue.put_nowait("first")
    cleaned = []

    async def put():
        try:
            await queue.put("second")
        finally:
            cleaned.append(True)

    asyncio.get_running_loop().call_later(0.05, suspended.set)
    await probe.wait_first(put(), suspended.wait())
    await asyncio.sleep(0.01)
    assert cleaned == [True]  # cancelled inside, as a task would be
    assert queue.qsize() == 1 and not queue._putters  # noqa: SLF001 - its putter is gone
    queue.get_nowait()
    queue.put_nowait("third")  # the queue works on


async def test_errors_propagate_at_once_and_after_a_wait():
    probe, suspended = Probe(), asyncio.Event()

    async def fails_now():
        raise ValueError("now")

    async def fails_later():
        await asyncio.sleep(0.01)
        raise ValueError("later")

    with pytest.raises(ValueError, match="now"):
        await probe.wait_first(fails_now(), suspended.wait())
    with pytest.raises(ValueError, match="later"):
        await probe.wait_first(fails_later(), suspended.wait())


async def test_a_stopped_service_is_said_so():
    probe, suspended = Probe(), asyncio.Event()
    probe._stopped.set()  # noqa: SLF001

    async def put():
        return 1

    assert (await probe.wait_first(put(), suspended.wait())).stopped
