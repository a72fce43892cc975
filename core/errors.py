"""One-line errors, never a traceback, for what a user gets wrong.

:func:`describe` turns an exception into an exit status and one line: 2 for a usage error (a bad
option, environment value, config or file, a port already in use), 1 for a runtime failure (Kafka
unreachable, a server refusing). Commands and workers print ``error: <line>`` and exit with that
status; ``--verbose`` (or ACTIVITY_SYNC_LOG_LEVEL=DEBUG) prints the traceback as well.
"""

from __future__ import annotations

import errno
import logging
import os
import sys
import traceback


class UsageError(Exception):
    """Something the user gave cannot be used; the message says what and where."""


class KafkaUnreachable(RuntimeError):
    """No broker of the configured cluster answered."""


USAGE_CLASSES = ("UsageError", "EnvError", "TopicConfigError", "SettingsError", "ProviderUnavailable",
                 "ValidationError")


def describe(exc: BaseException) -> tuple[int, str]:
    name = type(exc).__name__
    if name in USAGE_CLASSES or any(c.__name__ in USAGE_CLASSES for c in type(exc).__mro__):
        return 2, str(exc)
    if isinstance(exc, OSError) and exc.errno == errno.EADDRINUSE:
        return 2, f"a port is already in use ({exc.strerror}); choose another (ACTIVITY_SYNC_METRICS_PORT, --port)"
    if isinstance(exc, (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError)):
        return 2, f"{exc.filename or ''}: {exc.strerror}".lstrip(": ")
    if isinstance(exc, KafkaUnreachable) or name in ("KafkaConnectionError", "NoBrokersAvailable") or \
            (name == "KafkaTimeoutError"):
        where = os.environ.get("KAFKA_BOOTSTRAP_SERVERS") or "127.0.0.1:9092"
        detail = str(exc) if isinstance(exc, KafkaUnreachable) else f"{name}"
        return 1, f"cannot reach Kafka at {where} ({detail}); is the broker running? (-b/--bootstrap-server " \
                  f"or KAFKA_BOOTSTRAP_SERVERS names another)"
    if name.startswith("Kafka") or type(exc).__module__.startswith("aiokafka"):
        return 1, f"Kafka: {name}: {exc}"
    return 1, f"{name}: {exc}" if str(exc) else name


def report(exc: BaseException, verbose: bool) -> int:
    """Print the one-line error (and the traceback when verbose); the exit status."""
    code, line = describe(exc)
    if verbose:
        traceback.print_exception(exc)
    logging.getLogger("asyncio").setLevel(logging.CRITICAL)  # no "Unclosed consumer" noise after the line
    print(f"error: {line}" + ("" if verbose or code == 2 else "  (--verbose shows the traceback)"), file=sys.stderr)
    return code


def verbose_wanted(argv: list[str] | None = None) -> bool:
    argv = sys.argv[1:] if argv is None else argv
    return "-v" in argv or "--verbose" in argv or os.environ.get("ACTIVITY_SYNC_LOG_LEVEL", "").upper() == "DEBUG"


def guarded(fn, argv: list[str] | None = None) -> int:
    """Run a command or worker entry point: its errors become one line and an exit status."""
    try:
        rc = fn()
        return rc if isinstance(rc, int) else 0
    except KeyboardInterrupt:
        return 130
    except SystemExit:
        raise
    except Exception as exc:  # noqa: BLE001 - every error a user can cause ends here as one line
        return report(exc, verbose_wanted(argv))


def kafka_reachable(kafka, timeout: float = 15.0) -> None:
    """Raise :class:`KafkaUnreachable` unless a broker answers within ``timeout`` (a worker checks before
    it starts, rather than retrying quietly forever)."""
    import asyncio

    async def probe() -> None:
        from aiokafka.admin import AIOKafkaAdminClient

        admin = AIOKafkaAdminClient(**kafka.aiokafka_kwargs(), request_timeout_ms=int(timeout * 1000))
        try:
            await asyncio.wait_for(admin.start(), timeout)
        finally:
            try:
                await admin.close()
            except Exception:  # noqa: BLE001
                pass

    quiet = logging.getLogger("aiokafka")
    level = quiet.level
    quiet.setLevel(logging.CRITICAL)  # its "Unable connect" lines would come before our one line
    try:
        asyncio.run(probe())
    except Exception as exc:  # noqa: BLE001
        raise KafkaUnreachable(type(exc).__name__) from None
    finally:
        quiet.setLevel(level)
