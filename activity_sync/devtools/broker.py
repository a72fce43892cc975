"""A real single-node Apache Kafka broker (KRaft) for the embedded default, tests and benchmarks.

The broker is ``org.apache.kafka:kafka_2.13`` resolved from Maven Central with the machine's
Maven into a cache folder, plus the log4j binding its POM leaves out, and run with the
machine's Java 17. Nothing here pretends to be Kafka: when the broker cannot start, the error
says why (no Java, no Maven, port taken, the broker's own last log lines).

Command line (used by the Makefile)::

    python -m activity_sync.devtools.broker fetch                 # resolve the jars only
    python -m activity_sync.devtools.broker start [--port 9092]   # start in the background, wait until ready
    python -m activity_sync.devtools.broker stop | status
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

KAFKA_VERSION = "4.1.1"
LOG4J_VERSION = "2.24.3"  # log4j-slf4j-impl: the slf4j 1.x binding (Kafka uses slf4j-api 1.7.36)

POM = f"""<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>io.activitysync</groupId><artifactId>local-kafka</artifactId><version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId>
      <version>{KAFKA_VERSION}</version></dependency>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka-tools</artifactId>
      <version>{KAFKA_VERSION}</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j-impl</artifactId>
      <version>{LOG4J_VERSION}</version></dependency>
  </dependencies>
</project>
"""

LOG4J2 = """Configuration:
  Appenders:
    File:
      name: F
      fileName: "{log}"
      PatternLayout: {{pattern: "[%d] %p %m (%c)%n"}}
  Loggers:
    Root: {{level: INFO, AppenderRef: [{{ref: F}}]}}
    Logger:
      - {{name: kafka.request.logger, level: WARN}}
      - {{name: org.apache.kafka.controller, level: WARN}}
"""


class BrokerError(RuntimeError):
    """The local broker could not be resolved or started; the message says why."""


def cache_dir() -> Path:
    root = os.environ.get("ACTIVITY_SYNC_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "activity-sync"
    )
    return Path(root) / f"kafka-{KAFKA_VERSION}"


def _need(tool: str, hint: str) -> str:
    path = shutil.which(tool)
    if not path:
        raise BrokerError(f"{tool} not found on PATH: {hint}")
    return path


def resolve_jars() -> Path:
    """Resolve the broker's runtime classpath from Maven Central into the cache (once)."""
    libs = cache_dir() / "libs"
    done = cache_dir() / ".resolved"
    if done.exists() and any(libs.glob(f"kafka_2.13-{KAFKA_VERSION}.jar")) and \
            any(libs.glob(f"kafka-tools-{KAFKA_VERSION}.jar")):
        return libs
    mvn = _need("mvn", "install Maven (Debian: apt-get install maven) to fetch the Kafka broker")
    _need("java", "install Java 17 (Debian: apt-get install openjdk-17-jre-headless)")
    cache_dir().mkdir(parents=True, exist_ok=True)
    (cache_dir() / "pom.xml").write_text(POM)
    cmd = [mvn, "-q", "-B", "-f", str(cache_dir() / "pom.xml"), "dependency:copy-dependencies",
           "-DincludeScope=runtime", f"-DoutputDirectory={libs}"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = (proc.stdout + proc.stderr).strip().splitlines()[-15:]
        raise BrokerError("Maven could not resolve org.apache.kafka:kafka_2.13:%s from Maven Central:\n%s"
                          % (KAFKA_VERSION, "\n".join(tail)))
    done.write_text(KAFKA_VERSION)
    return libs


#: Kafka's own command-line tools (the kafka-tools artifact), by the name of their shell script
TOOLS = {
    "console-producer": "org.apache.kafka.tools.ConsoleProducer",
    "console-consumer": "org.apache.kafka.tools.consumer.ConsoleConsumer",
    "consumer-groups": "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand",
    "topics": "org.apache.kafka.tools.TopicCommand",
    "configs": "kafka.admin.ConfigCommand",
    "get-offsets": "org.apache.kafka.tools.GetOffsetShell",
}

TOOLS_LOG4J2 = """Configuration:
  Appenders:
    Console: {name: E, target: SYSTEM_ERR, PatternLayout: {pattern: "%p %m%n"}}
  Loggers:
    Root: {level: WARN, AppenderRef: [{ref: E}]}
"""


def tool_command(tool: str, args: list[str], bootstrap: str | None = None) -> list[str]:
    """The java command line of one of Kafka's tools, with ``--bootstrap-server`` added when the
    arguments do not name one (from ``bootstrap`` or KAFKA_BOOTSTRAP_SERVERS, else 127.0.0.1:9092)."""
    if tool not in TOOLS:
        raise BrokerError(f"unknown Kafka tool {tool!r}; known: {', '.join(TOOLS)}")
    libs = resolve_jars()
    java = _need("java", "install Java 17 (Debian: apt-get install openjdk-17-jre-headless)")
    log_config = cache_dir() / "tools-log4j2.yaml"
    if not log_config.exists():
        log_config.write_text(TOOLS_LOG4J2)
    args = list(args)
    if "--bootstrap-server" not in args and "-h" not in args and "--help" not in args:
        args = ["--bootstrap-server", bootstrap or os.environ.get("KAFKA_BOOTSTRAP_SERVERS") or "127.0.0.1:9092",
                *args]
    return [java, "-Xmx256m", f"-Dlog4j2.configurationFile={log_config}", "-cp", f"{libs}/*", TOOLS[tool], *args]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_taken(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def metadata_round_trip(bootstrap: str, timeout: float = 5.0) -> list[str]:
    """List topics through the admin client: a broker is ready when this answers."""
    from aiokafka.admin import AIOKafkaAdminClient

    async def probe() -> list[str]:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=int(timeout * 1000))
        await asyncio.wait_for(admin.start(), timeout)
        try:
            return await asyncio.wait_for(admin.list_topics(), timeout)
        finally:
            await admin.close()

    host, _, port = bootstrap.split(",")[0].rpartition(":")
    try:  # cheap check first, so a broker still booting does not fill the log with client errors
        socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout).close()
    except OSError as exc:
        raise BrokerError(f"no connection to {bootstrap}: {exc}") from None
    result: dict = {}

    def run() -> None:  # a thread of its own, so callers inside an event loop can use it too
        try:
            result["topics"] = asyncio.run(probe())
        except BaseException as exc:  # noqa: BLE001 - reported to the caller
            result["error"] = exc

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(timeout + 10)
    if "topics" in result:
        return result["topics"]
    raise BrokerError(f"no metadata round-trip with {bootstrap}: {result.get('error')!r}")


class LocalKafka:
    """One KRaft node (broker + controller) on 127.0.0.1, its data in ``data_dir``.

    Alone by default; :class:`LocalCluster` makes three of them one cluster (``node_id``,
    ``voters``, ``cluster_id`` and ``replication`` say how).
    """

    def __init__(self, data_dir: str | os.PathLike, port: int | None = None,
                 controller_port: int | None = None, heap: str = "768m", *, node_id: int = 1,
                 voters: str | None = None, cluster_id: str | None = None, replication: int = 1) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.port = port or free_port()
        self.controller_port = controller_port or free_port()
        self.heap = heap
        self.node_id = node_id
        self.voters = voters or f"{node_id}@127.0.0.1:{self.controller_port}"
        self.cluster_id = cluster_id
        self.replication = replication
        self.proc: subprocess.Popen | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def log_file(self) -> Path:
        return self.data_dir / "server.log"

    def _write_config(self) -> Path:
        logs = self.data_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        props = self.data_dir / "server.properties"
        props.write_text("\n".join([
            "process.roles=broker,controller",
            f"node.id={self.node_id}",
            f"controller.quorum.voters={self.voters}",
            f"listeners=PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}",
            f"advertised.listeners=PLAINTEXT://127.0.0.1:{self.port}",
            "controller.listener.names=CONTROLLER",
            "inter.broker.listener.name=PLAINTEXT",
            "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            f"log.dirs={logs}",
            "num.partitions=3",
            f"offsets.topic.replication.factor={self.replication}",
            "offsets.topic.num.partitions=10",
            f"transaction.state.log.replication.factor={self.replication}",
            f"transaction.state.log.min.isr={min(2, self.replication)}",
            f"share.coordinator.state.topic.replication.factor={self.replication}",
            f"share.coordinator.state.topic.min.isr={min(2, self.replication)}",
            f"default.replication.factor={self.replication}",
            f"min.insync.replicas={min(2, self.replication)}",
            "group.initial.rebalance.delay.ms=0",
            "auto.create.topics.enable=false",
            # activity.raw and activity.dead carry events up to 16 MiB so oversized input is
            # dead-lettered whole instead of being refused at the producer.
            "message.max.bytes=16777216",
            "replica.fetch.max.bytes=16777216",
            "socket.request.max.bytes=104857600",
            "log.cleaner.backoff.ms=1000",
            "",
        ]))
        (self.data_dir / "log4j2.yaml").write_text(LOG4J2.format(log=self.log_file))
        return props

    def start(self, timeout: float = 90.0) -> "LocalKafka":
        self.launch()
        self.wait_ready(timeout)
        return self

    def launch(self) -> None:
        """Start the JVM without waiting for it (a cluster's nodes must start together to form a quorum)."""
        java = _need("java", "install Java 17 (Debian: apt-get install openjdk-17-jre-headless)")
        libs = resolve_jars()
        for p in (self.port, self.controller_port):
            if port_taken(p):
                raise BrokerError(f"port {p} on 127.0.0.1 is taken: stop what uses it or choose another "
                                  "(ACTIVITY_SYNC_KAFKA_PORT)")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        props = self._write_config()
        cp = f"{libs}/*"
        jvm = [java, f"-Xmx{self.heap}", "-Xms256m", "-XX:+UseG1GC", "-Djava.awt.headless=true",
               f"-Dlog4j2.configurationFile={self.data_dir / 'log4j2.yaml'}",
               f"-Dkafka.logs.dir={self.data_dir}", "-cp", cp]
        if not (self.data_dir / "logs" / "meta.properties").exists():
            cluster_id = self.cluster_id or base64.urlsafe_b64encode(os.urandom(16)).rstrip(b"=").decode()
            fmt = subprocess.run(jvm + ["kafka.tools.StorageTool", "format", f"--cluster-id={cluster_id}", "--config", str(props)],
                                 capture_output=True, text=True)
            if fmt.returncode != 0:
                raise BrokerError("formatting KRaft storage failed:\n" + (fmt.stdout + fmt.stderr)[-2000:])
        out = open(self.data_dir / "stdout.log", "ab")
        self.proc = subprocess.Popen(jvm + ["kafka.Kafka", str(props)], stdout=out, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        (self.data_dir / "broker.pid").write_text(str(self.proc.pid))
        (self.data_dir / "bootstrap").write_text(self.bootstrap)

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise BrokerError(f"the Kafka broker exited with code {self.proc.returncode}:\n{self.log_tail()}")
            try:
                metadata_round_trip(self.bootstrap, timeout=3.0)
                return
            except BrokerError as exc:
                last = exc
                time.sleep(0.5)
        self.stop()
        raise BrokerError(f"the Kafka broker did not answer a metadata request within {timeout:.0f}s "
                          f"({last}):\n{self.log_tail()}")

    def log_tail(self, lines: int = 20) -> str:
        text = ""
        for f in (self.log_file, self.data_dir / "stdout.log"):
            if f.exists():
                text += "\n".join(f.read_text(errors="replace").splitlines()[-lines:]) + "\n"
        return text

    def stop(self, timeout: float = 30.0) -> None:
        pid = self.proc.pid if self.proc else _read_pid(self.data_dir)
        if pid:
            _terminate(pid, timeout)
        if self.proc:
            self.proc.wait(5)
            self.proc = None
        (self.data_dir / "broker.pid").unlink(missing_ok=True)

    def __enter__(self) -> "LocalKafka":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class LocalCluster:
    """Three KRaft nodes (each broker and controller) on 127.0.0.1 as one cluster: internal topics
    replicated three times, ``min.insync.replicas=2``. ``kill(node_id)`` is a ``kill -9`` of one
    node and ``restart(node_id)`` brings it back with its data."""

    def __init__(self, data_dir: str | os.PathLike, nodes: int = 3, heap: str = "512m") -> None:
        self.data_dir = Path(data_dir).resolve()
        ports = [(free_port(), free_port()) for _ in range(nodes)]
        voters = ",".join(f"{i + 1}@127.0.0.1:{c}" for i, (_, c) in enumerate(ports))
        cluster_id = base64.urlsafe_b64encode(os.urandom(16)).rstrip(b"=").decode()
        self.nodes = {i + 1: LocalKafka(self.data_dir / f"node{i + 1}", p, c, heap, node_id=i + 1, voters=voters,
                                        cluster_id=cluster_id, replication=min(3, nodes))
                      for i, (p, c) in enumerate(ports)}

    @property
    def bootstrap(self) -> str:
        return ",".join(n.bootstrap for n in self.nodes.values())

    def start(self, timeout: float = 120.0) -> "LocalCluster":
        for n in self.nodes.values():
            n.launch()
        for n in self.nodes.values():
            n.wait_ready(timeout)
        return self

    def kill(self, node_id: int) -> None:
        node = self.nodes[node_id]
        if node.proc is not None:
            node.proc.kill()
            node.proc.wait(10)
            node.proc = None

    def restart(self, node_id: int, timeout: float = 90.0) -> None:
        self.nodes[node_id].start(timeout)

    def port_of(self, node_id: int) -> int:
        return self.nodes[node_id].port

    def stop(self) -> None:
        for n in self.nodes.values():
            n.stop()

    def __enter__(self) -> "LocalCluster":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _read_pid(data_dir: Path) -> int | None:
    try:
        return int((data_dir / "broker.pid").read_text())
    except (OSError, ValueError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie child of ours counts as gone
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except OSError:
        return True


def _terminate(pid: int, timeout: float) -> None:
    if not _alive(pid):
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(0.2)
    if _alive(pid):
        os.kill(pid, signal.SIGKILL)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m activity_sync.devtools.broker", description=__doc__.split("\n\n")[0])
    ap.add_argument("command", choices=["fetch", "start", "stop", "status"])
    ap.add_argument("--data-dir", default=os.environ.get("ACTIVITY_SYNC_KAFKA_DIR", "var/kafka"))
    ap.add_argument("--port", type=int, default=int(os.environ.get("ACTIVITY_SYNC_KAFKA_PORT", "9092")))
    ap.add_argument("--controller-port", type=int, default=None)
    args = ap.parse_args(argv)
    data_dir = Path(args.data_dir)
    try:
        if args.command == "fetch":
            print(resolve_jars())
        elif args.command == "start":
            pid = _read_pid(data_dir)
            if pid and _alive(pid):
                print(f"already running (pid {pid}) on {(data_dir / 'bootstrap').read_text()}")
                return 0
            broker = LocalKafka(data_dir, args.port, args.controller_port or args.port + 1)
            broker.start()
            broker.proc = None  # leave it running detached
            print(f"Kafka {KAFKA_VERSION} ready on {broker.bootstrap} (data in {data_dir})")
        elif args.command == "stop":
            pid = _read_pid(data_dir)
            if pid:
                _terminate(pid, 30)
                (data_dir / "broker.pid").unlink(missing_ok=True)
            print("stopped")
        else:
            pid = _read_pid(data_dir)
            up = bool(pid and _alive(pid))
            print(f"running (pid {pid})" if up else "not running")
            return 0 if up else 1
    except BrokerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
