"""What a running process has spent: CPU time and resident memory (Linux /proc)."""

from __future__ import annotations

import os
from pathlib import Path


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a running process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def broker_pids() -> list[int]:
    """The Kafka brokers running on this machine (Java processes whose main class is ``kafka.Kafka``)."""
    pids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if b"\0kafka.Kafka\0" in (d / "cmdline").read_bytes():
                    pids.append(int(d.name))
            except OSError:
                continue
    return pids


class MachineLoad:
    """How busy the machine was over a span: the load average at its end, and the share of the cores'
    time the host took away (steal) and other work used, from /proc/stat. A virtual machine whose host
    is oversubscribed runs every contender slower, and its CPU time per event reads higher too."""

    def __init__(self) -> None:
        self.start = self._ticks()

    @staticmethod
    def _ticks() -> list[int]:
        return [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:9]]

    def summary(self) -> str:
        now = self._ticks()
        d = [b - a for a, b in zip(self.start, now)]
        total = sum(d) or 1
        busy = total - d[3] - d[4] - d[7]  # all but idle, iowait and steal
        return (f"load average {os.getloadavg()[0]:.2f}; of the cores' time: busy {busy / total:.0%}, "
                f"taken by the host (steal) {d[7] / total:.0%}")


def stop_processes(procs, timeout: float = 20) -> None:
    """SIGTERM every process, then wait for each (SIGKILL after ``timeout`` seconds)."""
    import subprocess

    for p in procs:
        p.terminate()
    for p in procs:
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            p.kill()
