"""``core.faustapp.commit`` commits what was acknowledged even while Faust's own commit (its timer's) is
under way: Faust's ``Consumer.commit`` would only wait for that one and return, and a crash then
repeated a batch more than was in flight (a CI find in the sink's SIGKILL test)."""

from __future__ import annotations

import asyncio
import types

from faust.transport.consumer import Consumer

from core import faustapp


class Stub:
    """Faust's real ``commit`` and ``maybe_wait_for_commit_to_finish`` over a recording ``force_commit``:
    each commit takes the offsets acknowledged when it starts, and takes a while."""

    commit = Consumer.commit
    maybe_wait_for_commit_to_finish = Consumer.maybe_wait_for_commit_to_finish
    _commit_fut = None

    def __init__(self) -> None:
        self.app = types.SimpleNamespace(client_only=False)
        self.loop = asyncio.get_running_loop()
        self.acked = 0
        self.committed: list[int] = []

    async def force_commit(self, topics=None, start_new_transaction=True) -> bool:
        offsets = self.acked
        await asyncio.sleep(0.05)
        self.committed.append(offsets)
        return True


async def test_faust_alone_skips_what_was_acknowledged_during_its_timers_commit():
    c, _, timer = await timer_commit_then_a_delivered_batch()
    assert await c.commit() is False  # Faust waited for the timer's commit and committed nothing more
    await timer
    assert c.committed == [0]


async def timer_commit_then_a_delivered_batch() -> tuple[Stub, types.SimpleNamespace, asyncio.Future]:
    c = Stub()
    timer = asyncio.ensure_future(c.commit())  # Faust's periodic commit, nothing acknowledged yet
    await asyncio.sleep(0.01)
    c.acked = 50  # a batch delivered meanwhile
    return c, types.SimpleNamespace(consumer=c), timer


async def test_commit_waits_out_a_commit_under_way_and_then_commits():
    c, app, timer = await timer_commit_then_a_delivered_batch()
    await faustapp.commit(app)
    await timer
    assert c.committed == [0, 50]


async def test_several_waiting_commits_each_commit_once_the_previous_ends():
    c, app, timer = await timer_commit_then_a_delivered_batch()
    await asyncio.gather(faustapp.commit(app), faustapp.commit(app))
    await timer
    assert c.committed[0] == 0 and c.committed[-1] == 50 and len(c.committed) >= 2
