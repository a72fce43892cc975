"""The pool sink worker: every endpoint it is told to serve gets delivered, as ``activity.config`` says.

``activity-sync sink --pool`` (``python -m sinks.pool``) follows ``activity.config`` and runs one
dedicated sink worker (:mod:`sinks.worker`, unchanged) as a child process for every **enabled**
endpoint it serves:

- which endpoints: ``--match PATTERN`` (shell-style, repeatable, comma-separated; the default ``*``:
  all; exact names make a list), less ``--exclude PATTERN``, and with ``--tenant T`` only endpoints
  naming tenant T (an endpoint of every tenant, ``*``, only with ``--tenant '*'``);
- an endpoint saved (on the admin page, by ``load-config``) gets its worker within
  :data:`POLL_S`; a disabled or deleted one has its worker stopped as on SIGTERM (the batch in hand
  finishes and is committed);
- each endpoint keeps its own consumer group, so its own offsets, retries, limits and isolation: a
  CRM that hangs holds only its own worker. A child that dies is started again (1 s, doubling to
  30 s while it keeps dying);
- several pool workers share the work: each runs a child for each endpoint, so an endpoint's group
  has one member per pool worker and its partitions spread over them. An endpoint that needs its
  own scaling can still have dedicated workers (``sink --endpoint NAME``, in the same group), and be
  left out of the pools with ``--exclude``.

Why processes and not one Faust app per endpoint in one process: the dedicated worker is the
kill-tested unit (graceful stop, rebalances, memory trim, crash-only failures), Faust runs one app
per event loop, and a provider that blocks, leaks or crashes stays inside its own process. The cost
is memory: one Python process per served endpoint (``make bench --only pool`` prints it).

The pool's port (``ACTIVITY_SYNC_METRICS_PORT``) serves ``/metrics`` with its own families and every
child's, each sample labelled with its ``endpoint``; ``/readyz`` is ready once ``activity.config`` is
loaded and every endpoint served has a running worker. Children's own ports are picked free, on
127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import asyncio
import fnmatch
import http.client
import logging
import os
import signal
import socket
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field

from core.config import Endpoint, catalog_for
from core.configtable import ConfigTable
from core.errors import UsageError, guarded, kafka_reachable
from core.health import serve_process
from core.routing import Routing
from core.settings import Settings
from core.topics import Topics

from . import poolmetrics as metrics

log = logging.getLogger("activity_sync.pool")

POLL_S = 0.5             # how often the served set is compared with activity.config
RESTART_S = (1.0, 30.0)  # a dead child's first and longest wait before it is started again
STOP_GRACE_S = 60.0      # a child stopping (SIGTERM) gets this long before SIGKILL


@dataclass(frozen=True)
class Selection:
    """Which endpoints a pool serves."""

    match: tuple[str, ...] = ("*",)
    exclude: tuple[str, ...] = ()
    tenants: tuple[str, ...] = ()

    def serves(self, ep: Endpoint) -> bool:
        if not ep.enabled or not any(fnmatch.fnmatchcase(ep.name, p) for p in self.match):
            return False
        if any(fnmatch.fnmatchcase(ep.name, p) for p in self.exclude):
            return False
        return not self.tenants or any(t in ep.tenants for t in self.tenants)

    def describe(self) -> str:
        out = "endpoints " + ",".join(self.match)
        if self.exclude:
            out += " except " + ",".join(self.exclude)
        if self.tenants:
            out += " of tenants " + ",".join(self.tenants)
        return out


def _patterns(values: list[str] | None) -> tuple[str, ...]:
    return tuple(p.strip() for v in values or () for p in v.split(",") if p.strip())


def selection_from_args(args) -> Selection:
    return Selection(match=_patterns(args.match) or ("*",), exclude=_patterns(args.exclude),
                     tenants=_patterns(args.tenant))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop_with_the_pool() -> None:
    """In a child, before it runs: a SIGTERM when the pool dies, even by SIGKILL (Linux), so no
    endpoint worker is left running without its pool (a graceful stop: its batch finishes)."""
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


@dataclass
class Child:
    endpoint: str
    proc: asyncio.subprocess.Process | None = None
    port: int = 0
    started_at: float = 0.0
    failures: int = 0
    not_before: float = 0.0
    stopping: bool = False
    waiter: asyncio.Task | None = field(default=None, repr=False)


class Pool:
    def __init__(self, selection: Selection, settings: Settings, env: dict | None = None,
                 datadir: str | None = None) -> None:
        self.selection, self.settings = selection, settings
        self.env = dict(os.environ if env is None else env)
        self.datadir = datadir or os.environ.get("ACTIVITY_SYNC_DATADIR") or tempfile.mkdtemp(
            prefix="activity-sync-pool-")
        self.routing = Routing(catalog_for(settings))
        self.config = ConfigTable(settings.kafka, Topics(settings.topic_prefix).config, self.routing)
        self.children: dict[str, Child] = {}
        self.closing = False
        self._tasks: set[asyncio.Task] = set()  # watchers and stop timers, referenced until done

    def _background(self, coro) -> asyncio.Task:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # ------------------------------------------------------------------ what to serve
    def wanted(self) -> set[str]:
        return {name for name, ep in list(self.routing.endpoints.items()) if self.selection.serves(ep)}

    def ready(self) -> bool:
        """Read by the health thread: snapshots of what the loop changes."""
        if not self.config.ready.is_set():
            return False
        children = dict(self.children)
        return all(name in children and children[name].proc is not None and children[name].proc.returncode is None
                   for name in self.wanted())

    async def run(self) -> None:
        await self.config.start()
        await self.config.wait_ready()
        log.info("pool serving %s", self.selection.describe())
        try:
            while not self.closing:
                await self.reconcile()
                await asyncio.sleep(POLL_S)
        finally:
            await self.stop_all()
            await self.config.stop()

    async def reconcile(self) -> None:
        wanted = self.wanted()
        for name in sorted(set(self.children) - wanted):
            child = self.children[name]
            if not child.stopping:
                ep = self.routing.endpoints.get(name)
                log.info("endpoint %s %s: stopping its worker", name, "disabled" if ep is not None and not ep.enabled
                         else "deleted" if ep is None else "no longer served by this pool")
                self._stop(child)
        now = time.monotonic()
        for name in sorted(wanted):
            child = self.children.get(name)
            if child is None:
                child = self.children[name] = Child(name)
            if child.proc is None and not child.stopping and now >= child.not_before:
                await self._start(child)
        metrics.ENDPOINTS.set(len(wanted))
        metrics.RUNNING.set(sum(1 for c in self.children.values() if c.proc is not None and c.proc.returncode is None))

    # ------------------------------------------------------------------ children
    async def _start(self, child: Child) -> None:
        child.port = free_port()
        datadir = os.path.join(self.datadir, child.endpoint)
        os.makedirs(datadir, exist_ok=True)
        env = dict(self.env, ACTIVITY_SYNC_METRICS_PORT=str(child.port), ACTIVITY_SYNC_METRICS_HOST="127.0.0.1",
                   ACTIVITY_SYNC_DATADIR=datadir)
        child.proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "sinks.worker", child.endpoint,
                                                          env=env, preexec_fn=_stop_with_the_pool)
        child.started_at = time.monotonic()
        metrics.STARTS.labels(child.endpoint, "restart" if child.failures else "new").inc()
        log.info("endpoint %s: worker started (pid %d)", child.endpoint, child.proc.pid)
        child.waiter = self._background(self._watch(child, child.proc))

    async def _watch(self, child: Child, proc) -> None:
        rc = await proc.wait()
        if child.proc is not proc:
            return
        child.proc = None
        ran = time.monotonic() - child.started_at
        if child.stopping or self.closing:
            metrics.EXITS.labels(child.endpoint, "stopped").inc()
            log.info("endpoint %s: worker stopped (exit %s)", child.endpoint, rc)
            self.children.pop(child.endpoint, None)
            return
        ep = self.routing.endpoints.get(child.endpoint)
        if ep is None or not self.selection.serves(ep):
            metrics.EXITS.labels(child.endpoint, "stopped").inc()
            self.children.pop(child.endpoint, None)  # it stopped itself: deleted or disabled meanwhile
            return
        metrics.EXITS.labels(child.endpoint, "crashed").inc()
        child.failures = 0 if ran > 60 else child.failures + 1
        wait = min(RESTART_S[1], RESTART_S[0] * 2 ** max(0, child.failures - 1))
        child.not_before = time.monotonic() + wait
        log.error("endpoint %s: worker exited (%s) after %.0f s; started again in %.0f s",
                  child.endpoint, rc, ran, wait)

    def _stop(self, child: Child) -> None:
        child.stopping = True
        if child.proc is None or child.proc.returncode is not None:
            self.children.pop(child.endpoint, None)
            return
        child.proc.send_signal(signal.SIGTERM)
        self._background(self._kill_after(child.proc, STOP_GRACE_S))

    @staticmethod
    async def _kill_after(proc, seconds: float) -> None:
        try:
            await asyncio.wait_for(proc.wait(), seconds)
        except asyncio.TimeoutError:
            proc.kill()

    async def stop_all(self) -> None:
        self.closing = True
        procs = [c.proc for c in self.children.values() if c.proc is not None and c.proc.returncode is None]
        for c in list(self.children.values()):
            if c.proc is not None and c.proc.returncode is None:
                c.stopping = True
                c.proc.send_signal(signal.SIGTERM)
        await asyncio.gather(*(self._kill_after(p, STOP_GRACE_S) for p in procs))

    # ------------------------------------------------------------------ metrics of the children
    def child_ports(self) -> dict[str, int]:
        return {name: c.port for name, c in dict(self.children).items()
                if c.proc is not None and c.proc.returncode is None}


class PoolRegistry:
    """The pool's own families, then its children's, merged by name, each sample with its ``endpoint``."""

    def __init__(self, own, pool: Pool) -> None:
        self.own, self.pool = own, pool

    def collect(self):
        from prometheus_client.core import Metric
        from prometheus_client.parser import text_string_to_metric_families

        families: dict[str, Metric] = {}
        for fam in self.own.collect():
            families[fam.name] = fam
        for endpoint, port in self.pool.child_ports().items():
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=1.5) as resp:
                    parsed = list(text_string_to_metric_families(resp.read().decode()))
            except (OSError, http.client.HTTPException, ValueError):
                continue  # starting, or stopping mid-answer: its figures come with the next scrape
            for fam in parsed:
                merged = families.get(fam.name)
                if merged is None:
                    merged = families[fam.name] = Metric(fam.name, fam.documentation, fam.type)
                for s in fam.samples:
                    labels = s.labels if "endpoint" in s.labels else {**s.labels, "endpoint": endpoint}
                    merged.samples.append(s._replace(labels=labels))
        yield from families.values()


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--match", action="append", metavar="PATTERN",
                   help="serve the endpoints whose name matches (shell-style, repeatable or comma-separated; "
                        "default: all)")
    p.add_argument("--exclude", action="append", metavar="PATTERN", help="but not these (same form)")
    p.add_argument("--tenant", action="append", metavar="TENANT",
                   help="only endpoints naming this tenant (repeatable; '*': endpoints of every tenant)")


def main(argv: list[str] | None = None) -> None:
    sys.exit(guarded(lambda: _main(sys.argv[1:] if argv is None else argv)))


def _main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m sinks.pool", description=__doc__.split("\n")[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    return run(selection_from_args(args))


def run(selection: Selection) -> int:
    if not selection.match:
        raise UsageError("--match: at least one pattern")
    settings = Settings.from_env()
    kafka_reachable(settings.kafka)  # before the loop: it runs one of its own
    health = serve_process("sink-pool", (metrics,), settings)
    pool = Pool(selection, settings)
    health.registry = PoolRegistry(health.registry, pool)
    health.check("config_loaded", pool.config.ready.is_set)
    health.check("endpoints_running", pool.ready)
    loop = asyncio.get_event_loop()
    main_task = loop.create_task(pool.run())

    def on_signal() -> None:
        log.info("stopping: the endpoints' workers finish their batches")
        pool.closing = True

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal)
    loop.run_until_complete(main_task)
    return 0


if __name__ == "__main__":
    main()
