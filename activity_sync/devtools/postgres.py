"""A real PostgreSQL server (Debian's package) for the PostgreSQL activity-table sink's tests,
benchmarks and the embedded default.

``install`` puts Debian's ``postgresql`` package on the machine when its server binaries are
missing (``apt-get``, as root; otherwise it says what to run). :class:`LocalPostgres` makes a
cluster in a folder of its own with ``initdb`` (a role ``activity_sync`` with a password, SCRAM
over TCP), starts ``postgres`` on a free loopback port and stops it. Run as root, the server runs
as the ``postgres`` user the package creates (PostgreSQL refuses to run as root).

    python -m activity_sync.devtools.postgres install      # what `make test` runs first
"""

from __future__ import annotations

import argparse
import glob
import os
import pwd
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .broker import free_port, port_taken

ROLE = "activity_sync"
DATABASE = "activity_sync"


class PostgresError(RuntimeError):
    """The server cannot be installed or started; the message says why."""


def bin_dir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"), key=lambda p: int(p.split("/")[4]))
    return Path(found[-1]).parent if found else None


def install() -> Path:
    """The server binaries' folder, installing Debian's package first if they are missing."""
    from .debian import apt_install

    return apt_install("postgresql", bin_dir, PostgresError)


class LocalPostgres:
    """A throwaway cluster: ``start()``, then ``dsn`` (no password in it) and ``password``."""

    def __init__(self, data_dir: str | os.PathLike | None = None, port: int | None = None, keep: bool = False) -> None:
        self.owned = data_dir is None and not keep  # a folder made here is removed at stop
        self.root = Path(data_dir) if data_dir else Path(tempfile.mkdtemp(prefix="activity-sync-pg-"))
        self.port = port or free_port()
        saved = self.root / "password"
        # a kept cluster keeps the password it was made with
        self.password = saved.read_text().strip() if saved.exists() else secrets.token_urlsafe(18)
        self.proc: subprocess.Popen | None = None

    @property
    def dsn(self) -> str:
        return f"postgresql://{ROLE}@127.0.0.1:{self.port}/{DATABASE}"

    @property
    def data(self) -> Path:
        return self.root / "data"

    def _as_server_user(self) -> tuple[list[str], int | None]:
        if os.geteuid() != 0:
            return [], None
        try:
            uid = pwd.getpwnam("postgres").pw_uid
        except KeyError:
            raise PostgresError("running as root, and there is no postgres user to run the server as") from None
        return ["runuser", "-u", "postgres", "--"], uid

    def start(self, timeout: float = 60.0) -> "LocalPostgres":
        bins = install()
        if port_taken(self.port):
            raise PostgresError(f"port {self.port} is already in use")
        prefix, uid = self._as_server_user()
        self.root.mkdir(parents=True, exist_ok=True)
        saved = self.root / "password"
        if not saved.exists():
            saved.touch(mode=0o600)
            saved.write_text(self.password + "\n")
        pwfile = self.root / "pwfile"
        pwfile.write_text(self.password + "\n")
        if uid is not None:
            os.chmod(self.root, 0o755)
            for p in (self.root, pwfile):
                os.chown(p, uid, -1)
        if not (self.data / "PG_VERSION").exists():
            r = subprocess.run([*prefix, str(bins / "initdb"), "-D", str(self.data), "-U", ROLE, "--pwfile",
                                str(pwfile), "--auth-host=scram-sha-256", "--auth-local=trust", "-E", "UTF8",
                                "--locale=C.UTF-8", "--no-sync"], capture_output=True, text=True)
            if r.returncode:
                raise PostgresError(f"initdb failed: {(r.stderr or r.stdout).strip()[-500:]}")
        pwfile.unlink()
        log = open(self.root / "postgres.log", "ab")
        self.proc = subprocess.Popen([*prefix, str(bins / "postgres"), "-D", str(self.data), "-p", str(self.port),
                                      "-k", str(self.root), "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off",
                                      "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
                                      "-c", "max_connections=200"],
                                     stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise PostgresError(f"postgres exited: {self.log_tail()}")
            r = subprocess.run([str(bins / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port), "-U", ROLE],
                               capture_output=True)
            if r.returncode == 0:
                break
            time.sleep(0.2)
        else:
            self.stop()
            raise PostgresError(f"postgres did not accept connections within {timeout:.0f}s: {self.log_tail()}")
        r = subprocess.run([*prefix, str(bins / "createdb"), "-h", str(self.root), "-p", str(self.port), "-U", ROLE,
                            DATABASE], capture_output=True, text=True)
        if r.returncode and "already exists" not in r.stderr:
            raise PostgresError(f"createdb failed: {r.stderr.strip()[-300:]}")
        return self

    def log_tail(self, lines: int = 15) -> str:
        path = self.root / "postgres.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    def stop(self, timeout: float = 20.0) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()  # SIGTERM: smart shutdown
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None
        if self.owned:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> "LocalPostgres":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m activity_sync.devtools.postgres")
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("install", help="install Debian's postgresql package if its server is missing")
    args = ap.parse_args(argv)
    try:
        if args.cmd == "install":
            print(f"PostgreSQL server: {install()}")
    except PostgresError as exc:
        print(f"postgres: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
