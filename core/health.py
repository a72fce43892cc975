"""A worker's HTTP port: ``/metrics``, ``/healthz`` (liveness) and ``/readyz`` (readiness).

- ``/healthz`` answers 200 when the worker's event loop runs a callback within 2 s (a worker whose
  loop is blocked or dead answers 503, and Kubernetes restarts it).
- ``/readyz`` answers 200 once every readiness check holds, else 503 with the checks as JSON:
  a stream worker has joined its consumer group and loaded ``activity.config``; a sink worker
  also has its sink started.
- ``/metrics`` is the Prometheus exposition of **this worker's role only**: a sink worker does
  not show the stream worker's counters (both import the same modules), and the other way round.

The server is a thread of its own (``http.server``), so it answers even while the worker's loop
is busy; readiness checks only read flags the loop sets.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable

from prometheus_client import REGISTRY, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.metrics import MetricWrapperBase

log = logging.getLogger("activity_sync.health")


def metric_names(*modules) -> set[str]:
    """The metric family names a module declares (its Counter, Gauge and Histogram objects)."""
    return {v._name for m in modules for v in vars(m).values() if isinstance(v, MetricWrapperBase)}


class RoleRegistry:
    """The default registry, limited to one role's families (plus the process and Python collectors)."""

    def __init__(self, names: set[str]) -> None:
        self.names = names

    def collect(self):
        for family in REGISTRY.collect():
            if family.name in self.names or family.name.startswith(("process_", "python_")):
                yield family


class Health:
    def __init__(self, role: str, names: set[str]) -> None:
        self.role = role
        self.registry = RoleRegistry(names)
        self.loop: asyncio.AbstractEventLoop | None = None
        self.checks: dict[str, Callable[[], bool]] = {}
        self.server: ThreadingHTTPServer | None = None

    def check(self, name: str, fn: Callable[[], bool]) -> None:
        self.checks[name] = fn

    def bind_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop

    def alive(self) -> bool:
        loop = self.loop
        if loop is None or loop.is_closed():
            return False
        try:
            asyncio.run_coroutine_threadsafe(asyncio.sleep(0), loop).result(timeout=2)
            return True
        except Exception:  # noqa: BLE001 - a timeout or a stopped loop: not alive
            return False

    def readiness(self) -> tuple[bool, dict[str, bool]]:
        states = {}
        for name, fn in self.checks.items():
            try:
                states[name] = bool(fn())
            except Exception:  # noqa: BLE001 - a check that cannot tell is not ready
                states[name] = False
        return bool(states) and all(states.values()), states

    def serve(self, host: str, port: int) -> int:
        """Serve in a daemon thread; returns the port (0 or less: off, as ACTIVITY_SYNC_METRICS_PORT=0 says)."""
        if port <= 0:
            return port
        health = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # no access log
                pass

            def reply(self, status: int, body: bytes, ctype: str = "application/json") -> None:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                path = self.path.split("?")[0]
                if path == "/metrics":
                    self.reply(200, generate_latest(health.registry), CONTENT_TYPE_LATEST)
                elif path in ("/healthz", "/livez"):
                    ok = health.alive()
                    self.reply(200 if ok else 503, json.dumps({"role": health.role, "alive": ok}).encode())
                elif path == "/readyz":
                    ok, states = health.readiness()
                    self.reply(200 if ok else 503, json.dumps({"role": health.role, "ready": ok,
                                                              "checks": states}).encode())
                else:
                    self.reply(404, b'{"error": "not found: /metrics, /healthz, /readyz"}')

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, name="health-http", daemon=True).start()
        actual = self.server.server_address[1]
        log.info("%s worker: metrics, /healthz and /readyz on http://%s:%s/", self.role, host, actual)
        return actual


def serve_process(role: str, modules: tuple, settings, port: int | None = None) -> Health:
    """A plain asyncio process's start (not Faust's): the project's event loop and logging, then its
    health port (``port``, else ``ACTIVITY_SYNC_METRICS_PORT``) bound to that loop."""
    from .faustapp import use_event_loop
    from .logs import configure_logging

    use_event_loop()
    configure_logging(role)
    health = Health(role, metric_names(*modules))
    health.serve(settings.metrics_host, port if port is not None else settings.metrics_port)
    health.bind_loop(asyncio.get_event_loop())
    return health
