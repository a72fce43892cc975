"""The one place that reads faust-streaming's and aiokafka's private consumer state.

An interval-scheduled endpoint ends a bulk run only once its worker has fetched and delivered
everything its partitions held. Neither library says so publicly: aiokafka keeps each assigned
partition's fetch position and high watermark in its subscription state, Faust the offset of the
last record it handed to an agent in ``_read_offset``. :func:`read_progress` reads them, and
:func:`check_internals` says in one line which attribute an upgrade moved (a test calls it against
a running consumer, so an upgrade breaks there and only there).
"""

from __future__ import annotations

#: (topic, partition) -> (fetch position, offset of the last record handed to the agents, high watermark)
Progress = dict[tuple[str, int], tuple[int | None, int | None, int | None]]


class InternalsChanged(RuntimeError):
    """faust-streaming or aiokafka no longer keep their consumer state where this module reads it."""


def _aiokafka_consumer(app):
    thread = getattr(app.consumer, "_thread", None)
    if thread is None or not hasattr(thread, "_ensure_consumer"):
        raise InternalsChanged("faust Consumer._thread._ensure_consumer() is gone (faust-streaming changed)")
    return thread._ensure_consumer()


def set_fetch_max_wait(app, ms: int) -> None:
    """How long the broker may hold a fetch that finds nothing new (Faust fixes it at 1,500 ms).

    aiokafka sends one fetch per broker at a time. When Faust's flow control pauses the busy
    partitions (a full stream buffer), the fetch under way holds only idle ones (a sink's empty
    retry tiers) and the broker keeps it the whole wait: a sink with a backlog stood idle 0.2 to
    0.8 s in every few batches. Data that arrives is answered at once whatever this is.
    """
    fetcher = getattr(_aiokafka_consumer(app), "_fetcher", None)
    if not isinstance(getattr(fetcher, "_fetch_max_wait_ms", None), int):
        raise InternalsChanged("AIOKafkaConsumer._fetcher._fetch_max_wait_ms is gone (aiokafka changed)")
    fetcher._fetch_max_wait_ms = ms


def check_internals(app) -> None:
    """Raise :class:`InternalsChanged` naming the attribute an upgrade moved."""
    consumer = _aiokafka_consumer(app)
    if not isinstance(getattr(getattr(consumer, "_fetcher", None), "_fetch_max_wait_ms", None), int):
        raise InternalsChanged("AIOKafkaConsumer._fetcher._fetch_max_wait_ms is gone (aiokafka changed)")
    subscription = getattr(getattr(consumer, "_subscription", None), "subscription", "missing")
    if subscription == "missing":
        raise InternalsChanged("AIOKafkaConsumer._subscription.subscription is gone (aiokafka changed)")
    if not isinstance(getattr(app.consumer, "_read_offset", None), dict):
        raise InternalsChanged("faust Consumer._read_offset is gone (faust-streaming changed)")
    assignment = getattr(subscription, "assignment", None) if subscription is not None else None
    if assignment is not None:
        for tp in assignment.tps:
            state = assignment.state_value(tp)
            for name in ("has_valid_position", "position", "highwater"):
                if not hasattr(state, name):
                    raise InternalsChanged(f"aiokafka's partition state has no {name} (aiokafka changed)")


def read_progress(app, topic: str) -> Progress:
    """Per partition of ``topic`` assigned to this worker: (fetch position, offset of the last record
    Faust handed to the agents, high watermark), None where not known yet."""
    consumer = _aiokafka_consumer(app)
    assignment = consumer._subscription.subscription.assignment
    if assignment is None:
        return {("?", -1): (None, None, None)}
    out: Progress = {}
    for tp in assignment.tps:
        if tp.topic == topic:
            state = assignment.state_value(tp)
            position = state.position if state.has_valid_position else None
            out[(tp.topic, tp.partition)] = (position, app.consumer._read_offset.get(tp), state.highwater)
    return out
