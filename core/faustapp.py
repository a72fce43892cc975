"""The Kafka core both stages share: how a Faust app is built and run, and how a worker stops at once.

Every Faust keyword argument the project sets is here, once, with the reason beside it. Each
worker's Kafka ``client_id`` names its role (and endpoint), host and pid, so
``kafka-consumer-groups --describe --members`` tells the workers apart.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import tempfile

import faust

from .consumer_state import set_fetch_max_wait
from .partitioner import MemoPartitioner
from .envvars import EnvError
from .settings import Settings
from .topics import MAX_EVENT_TOPIC_BYTES, replication

log = logging.getLogger("activity_sync.worker")


def client_id(role: str) -> str:
    """``activity-sync-<role>-<host>-<pid>``, e.g. ``activity-sync-sink-crm-web1-4242``."""
    return f"activity-sync-{role}-{socket.gethostname()}-{os.getpid()}"


#: the longest a fetch that finds nothing new waits at the broker (see core.consumer_state.set_fetch_max_wait)
FETCH_MAX_WAIT_MS = 100


def _seek_uncommitted_to_the_start() -> None:
    """Mend Faust's seek to committed offsets for partitions the group never committed.

    While a worker recovers its tables, Faust resumes the stream partitions, drops what the fetcher
    returns for them until the flow resumes, and then seeks every partition back to its committed
    offset. A partition with no committed offset (a stage killed before its first commit, or a group
    whose offsets expired) was not sought at all (aiokafka seeks only to an offset above 0), so the
    records dropped meanwhile were skipped for good: a scoring stage SIGKILLed a second after it
    started never scored the activities it had read. Such a stream partition now goes back to its
    first offset, as ``consumer_auto_offset_reset="earliest"`` reads a new group; a table's changelog
    partition is left to Faust's recovery, which positions those itself.
    """
    from faust.transport.consumer import ThreadDelegateConsumer

    if getattr(ThreadDelegateConsumer.seek_to_committed, "_activity_sync", False):
        return
    seek_to_committed = ThreadDelegateConsumer.seek_to_committed

    async def seek(self):
        committed = await seek_to_committed(self)
        if self.app.conf.consumer_auto_offset_reset == "earliest":
            changelogs = self.app.tables.changelog_topics
            fresh = [tp for tp, offset in committed.items() if not offset and tp.topic not in changelogs]
            if fresh:
                logging.getLogger("activity_sync.faust").debug(
                    "no committed offset for %s: read from the first offset", ", ".join(sorted(
                        f"{tp.topic}[{tp.partition}]" for tp in fresh)))
                await self._thread.seek_to_beginning(*fresh)
        return committed

    seek._activity_sync = True
    ThreadDelegateConsumer.seek_to_committed = seek


_seek_uncommitted_to_the_start()


async def _resume(coro, yielded):
    """Go on with a coroutine already stepped once, as a Task would: ``yielded`` is what it waits on
    (a future, or None for a bare yield). Cancelled, it cancels what it waits on and throws the
    cancellation into the coroutine."""
    while True:
        if yielded is not None and not asyncio.isfuture(yielded):
            coro.close()
            raise RuntimeError(f"a coroutine yielded {yielded!r}, not a future")
        try:
            try:
                if yielded is None:
                    await asyncio.sleep(0)
                else:
                    yielded._asyncio_future_blocking = False  # taken over, as Task.__step takes it
                    await yielded
            except asyncio.CancelledError as exc:
                if yielded is not None and yielded.cancelled() and not asyncio.current_task().cancelling():
                    yielded = coro.send(None)  # what it waited on was cancelled: its own await raises that
                    continue
                if yielded is not None:
                    yielded.cancel()
                yielded = coro.throw(exc)
                continue
            except Exception:  # noqa: BLE001 - the coroutine's own await raises it when resumed
                pass
            yielded = coro.send(None)
        except StopIteration as stop:
            return stop.value


def _message_handoff_without_tasks() -> None:
    """Faust's consumer hands each fetched message to its stream through ``wait_first(callback(message),
    suspend_flow.wait())``, which wraps four awaitables in tasks and waits on them: 42 µs a message here,
    a sixth of a sink worker's CPU. The callback nearly always finishes at once (the message is put in
    a stream buffer with room), so it is stepped once first: finished, nothing else is created; waiting
    (a full buffer), it goes on as a task under Faust's ``wait_first``, as before."""
    from faust.transport.consumer import Consumer
    from mode.services import WaitResults

    if getattr(Consumer.wait_first, "_activity_sync", False):
        return
    wait_first = Consumer.wait_first

    async def first(self, *coros, timeout=None):
        head = coros[0] if coros else None
        if not asyncio.iscoroutine(head):
            return await wait_first(self, *coros, timeout=timeout)
        try:
            yielded = head.send(None)
        except StopIteration as stop:
            for c in coros[1:]:
                if asyncio.iscoroutine(c):
                    c.close()  # never started: no "was never awaited" warning
            if self._stopped.is_set() or self._crashed.is_set():
                return WaitResults([], [], True)
            return WaitResults([head], [stop.value], False)
        except BaseException:
            for c in coros[1:]:
                if asyncio.iscoroutine(c):
                    c.close()
            raise
        return await wait_first(self, _resume(head, yielded), *coros[1:], timeout=timeout)

    first._activity_sync = True
    Consumer.wait_first = first


_message_handoff_without_tasks()


def make_app(app_id: str, settings: Settings, role: str, **overrides) -> faust.App:
    """A Faust app with the project's settings; ``overrides`` are the few a stage sets differently."""
    broker, creds = settings.kafka.faust_broker()
    conf = dict(
        broker=broker,
        broker_credentials=creds,
        broker_client_id=client_id(role),
        store="memory://",
        datadir=os.environ.get("ACTIVITY_SYNC_DATADIR") or tempfile.mkdtemp(prefix=f"activity-sync-{role}-"),
        web_enabled=False,  # our own /metrics server instead
        topic_disable_leader=True,
        consumer_auto_offset_reset="earliest",
        broker_commit_interval=1.0,
        producer_acks=-1,
        producer_partitioner=MemoPartitioner(),  # the default's choice, each key's murmur2 remembered
        topic_replication_factor=replication()[0],  # Faust's own topics, as ours
        # A crashed worker's partitions move to the others after this long (Faust's default is 60 s).
        broker_session_timeout=settings.session_timeout_s,
        broker_heartbeat_interval=max(1.0, settings.session_timeout_s / 3),
        producer_max_request_size=MAX_EVENT_TOPIC_BYTES + 65536,
        producer_max_batch_size=256 * 1024,  # Faust's 16 KB default holds ~4 enriched records
        # Per partition per fetch. Kafka returns a record batch larger than this whole (KIP-74), so 16 MiB
        # events still flow; a 16 MiB limit let a worker buffer 16 MiB for every partition it reads
        # (30 partitions for a sink worker: the 600 MB seen with a long retry backlog).
        consumer_max_fetch_size=1024 * 1024,
    )
    conf.update(overrides)
    app = faust.App(app_id, **conf)

    @app.on_partitions_assigned.connect
    async def _short_fetch_wait(app, assigned, **kwargs) -> None:
        set_fetch_max_wait(app, FETCH_MAX_WAIT_MS)

    return app


def bind_config_health(app: faust.App, health, config_table) -> None:
    """A stage's readiness (``activity.config`` loaded) and its loop handed to ``/healthz``; ``health``
    None: nothing to do."""
    if health is None:
        return
    health.check("config_loaded", config_table.ready.is_set)

    @app.task
    async def _bind_loop() -> None:
        health.bind_loop(asyncio.get_running_loop())


def decode_enriched(msg, settings: Settings, reader, wanted, log_) -> dict | None:
    """One ``activity.enriched`` message decoded with ``reader`` when its tenant ``wanted(tenant)``
    accepts it (a record of another tenant is not even decoded: its ``tenant`` header says whose it
    is); None otherwise, or when it is unreadable (logged)."""
    from .avro import DecodeError, decode_any, decode_single_object

    try:
        hint = dict(msg.headers or []).get("tenant")
        if hint is not None and not wanted(hint.decode(errors="replace")):
            return None
        record = (decode_single_object(msg.value, reader) if settings.schema_registry_url is None
                  else decode_any(msg.value, settings.schema_registry_url))
    except (DecodeError, ValueError) as exc:
        log_.warning("activity.enriched %s@%s unreadable: %s", msg.partition, msg.offset, exc)
        return None
    return record if wanted(record.get("tenant_code")) else None


def direct_send(app: faust.App):
    """``send(topic, key, value, partition=None)``: straight to the app's aiokafka producer, answering the
    future of the broker's acknowledgement. Faust's own per-message buffer (``topic.send``) cost the list
    stage more than its own work; Faust still flushes this producer before it commits."""
    async def send(topic: str, key: bytes | None, value: bytes | None, partition: int | None = None):
        return await app.producer.send(topic, key, value, partition, None, None)

    return send


def as_current(event) -> None:
    """Make ``event`` Faust's current event: a table read or written while handling one event of a
    ``take_events`` batch then uses that event's partition (its store and changelog partition), as it
    does when events come one at a time. Faust sets the same context variable for each event of
    ``stream.events()``."""
    import weakref

    from faust.streams import _current_event

    _current_event.set(weakref.ref(event))


def install_health(app: faust.App, health, config_table, joined=None) -> None:
    """Readiness checks every worker has (joined its consumer group, ``activity.config`` loaded), and
    the worker's loop handed to ``/healthz``. ``health`` is a :class:`core.health.Health` or None;
    ``joined``: whether the worker's own consumer is in its group (by default, Faust's consumer)."""
    if health is None:
        return
    if joined is None:
        state = {"joined": False}

        @app.on_partitions_assigned.connect
        async def _joined(app, assigned, **kwargs) -> None:
            state["joined"] = True  # a member of the group now, with or without partitions

        @app.on_partitions_revoked.connect
        async def _rebalancing(app, revoked, **kwargs) -> None:
            state["joined"] = False

        def joined() -> bool:
            return state["joined"]

    @app.task
    async def _bind_loop() -> None:
        health.bind_loop(asyncio.get_running_loop())

    health.check("consumer_group_joined", joined)
    health.check("config_loaded", config_table.ready.is_set)


def stop_now(reason: str) -> None:
    """Crash-only: end the process before Faust can commit offsets past a record not safely written.

    Faust acknowledges a batch's events even when its loop body fails, and commits what is
    acknowledged; only a process that is gone commits nothing. The restarted worker re-reads
    from the last commit: at-least-once, nothing lost.
    """
    log.critical("stopping at once, offsets left uncommitted: %s", reason)
    logging.shutdown()
    os._exit(70)


EVENT_LOOPS = ("uvloop", "asyncio")
_WORKERS: dict[int, faust.Worker] = {}  # app -> the worker running it (GracefulStop hands over to its stop)


def use_event_loop() -> str:
    """Install the event loop ``ACTIVITY_SYNC_EVENT_LOOP`` names (``uvloop``, the default, or
    ``asyncio``) before anything binds one: uvloop's callbacks, futures and sockets are C, which
    bought about 15% of the stream worker's throughput. Answers the loop in use."""
    raw = os.environ.get("ACTIVITY_SYNC_EVENT_LOOP", "")
    choice = raw.strip().lower() or "uvloop"
    if choice not in EVENT_LOOPS:
        raise EnvError(f"ACTIVITY_SYNC_EVENT_LOOP={raw!r}: one of {', '.join(EVENT_LOOPS)}")
    if choice == "uvloop":
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    asyncio.set_event_loop(asyncio.new_event_loop())
    return choice


def run_worker(app: faust.App, loglevel: str) -> None:
    """Run a Faust app as a worker, without the terminal spinner.

    Faust's spinner sets the root logger to DEBUG (so it can spin on every record) whenever the
    level is WARN or above; every ``log.debug`` in aiokafka's send path then builds a record:
    about 8% of the stream worker's CPU.
    """
    from .logs import current_config

    worker = faust.Worker(app, loglevel=loglevel, quiet=True, logging_config=current_config())
    worker.spinner = None
    _WORKERS[id(app)] = worker
    worker.execute_from_commandline()


async def hold_batch() -> None:
    """For an agent that is stopping: never returns. Moving on to the next batch would let Faust
    acknowledge the batch in hand, which was not processed; it stays for the partition's next owner."""
    await asyncio.Event().wait()


async def commit(app: faust.App) -> None:
    """Commit what the agents acknowledged (at most 10 s; what is not committed is processed again).

    Faust's ``Consumer.commit`` returns without committing when another commit is under way (its own
    timer's, every ``broker_commit_interval``): it waits for that one, which may have computed its offsets
    before these acknowledgements. A crash then repeated one batch more than was in flight (a CI find).
    So a commit under way is waited out first and this one is then made."""
    try:
        await asyncio.wait_for(_commit_after_any_under_way(app.consumer), 10)
    except Exception as exc:  # noqa: BLE001 - at least once: a missed commit means a repeat, not a loss
        log.warning("commit failed: %s: %s", type(exc).__name__, exc)


async def _commit_after_any_under_way(consumer) -> bool:
    while (fut := getattr(consumer, "_commit_fut", None)) is not None:
        try:
            await asyncio.shield(fut)
        except asyncio.CancelledError:
            if not fut.cancelled():
                raise  # this commit itself was cancelled, not the one waited for
    # no await between the check and Faust's own: no other commit can start in between
    return await consumer.commit()


class Committer:
    """Commits in the background, one at a time; a commit asked for while one runs follows it.

    An agent that awaited each commit spent a broker round trip (through Faust's consumer thread)
    per batch, per request for a sink: about half of a sink's time at 20 ms a request. What a
    commit covers is only what was acknowledged before it started, so nothing unfinished is ever
    committed; a crash repeats at most what was acknowledged since the last commit finished.
    """

    def __init__(self, app: faust.App) -> None:
        self.app = app
        self._task: asyncio.Future | None = None
        self._again = False

    def request(self) -> None:
        if self._task is not None and not self._task.done():
            self._again = True
            return
        self._task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        while True:
            self._again = False
            await commit(self.app)
            if not self._again:
                return

    async def wait(self) -> None:
        """Until no commit is under way or asked for (a stop and a rebalance wait for this)."""
        while self._task is not None and not self._task.done():
            await asyncio.shield(self._task)


class GracefulStop:
    """SIGTERM and Ctrl-C for a worker: take no new batch (``stopping()``), let the batch under way finish
    (``drain()``), commit it, then stop as Faust does, with commits disabled from then on.

    Faust's own stop would cancel the batch under way, and cancelling an agent's ``take_events``
    acknowledges the events it holds, which Faust's last commit then skips over although they were
    never processed. If Faust's stop hangs after the commit, the process exits anyway (everything it
    finished is committed by then).
    """

    grace_s = 8.0

    def __init__(self, app: faust.App, what: str, stopping, drain, faust_commits: bool = True) -> None:
        """``faust_commits``: whether Faust's consumer holds what to commit (False: the worker's own
        consumer commits in ``drain()``, and Faust's is not started)."""
        self.app, self.what, self.stopping, self.drain = app, what, stopping, drain
        self.faust_commits = faust_commits
        self.started = False

    def install(self) -> None:
        loop = asyncio.get_running_loop()
        worker = _WORKERS.get(id(self.app))
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous = getattr(loop, "_signal_handlers", {}).get(sig)  # Faust's (mode's) handler, on asyncio's loop
            if previous is None and worker is not None:  # uvloop keeps its handlers out of reach: mode's own
                previous = asyncio.Handle(worker._on_sigterm if sig == signal.SIGTERM else worker._on_sigint,
                                          (), loop)
            loop.add_signal_handler(sig, self.trigger, previous)

    def trigger(self, previous) -> None:
        if not self.started:
            self.started = True
            self.stopping()
            asyncio.ensure_future(self.run(previous))

    async def run(self, previous) -> None:
        log.info("%s: stopping: finishing the batch under way", self.what)
        await self.drain()
        if self.faust_commits:
            await commit(self.app)  # waits for a commit under way ...
            await commit(self.app)  # ... then commits everything acknowledged
            consumer = self.app.consumer

            async def no_commit(*args, **kwargs) -> bool:
                return False

            consumer.commit = consumer.force_commit = consumer.commit_and_end_transactions = no_commit
        log.info("%s: what was finished is committed; stopping", self.what)
        asyncio.get_running_loop().call_later(self.grace_s, os._exit, 0)
        if previous is not None:
            previous._run()  # Faust's own stop
        else:
            os._exit(0)


def faust_role_main(role: str, create_app, modules: tuple) -> int:
    """A Faust stage's ``python -m`` body: loop, logging, its health port, Kafka reachable, then the worker."""
    from .errors import kafka_reachable
    from .health import Health, metric_names
    from .logs import configure_logging
    from .settings import Settings

    settings = Settings.from_env()
    use_event_loop()
    configure_logging(role)
    health = Health(role, metric_names(*modules))
    health.serve(settings.metrics_host, settings.metrics_port)
    kafka_reachable(settings.kafka)
    app = create_app(settings, health)
    run_worker(app, os.environ.get("ACTIVITY_SYNC_LOG_LEVEL", "info").lower())
    return 0
