"""Debian's Chromium for the admin page's browser tests (Playwright drives it by ``executable_path``).

    python -m activity_sync.devtools.browser install    # what `make test` runs first
"""

from __future__ import annotations

import os
import shutil
import sys

CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser")


class BrowserError(RuntimeError):
    pass


def chromium() -> str | None:
    found = os.environ.get("ACTIVITY_SYNC_CHROMIUM")
    if found and os.path.exists(found):
        return found
    return next((c for c in CANDIDATES if os.path.exists(c)), None) or shutil.which("chromium")


def install() -> str:
    """Debian's Chromium, installed first if it is missing."""
    from .debian import apt_install

    return apt_install("chromium", chromium, BrowserError)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] != ["install"]:
        print("usage: python -m activity_sync.devtools.browser install", file=sys.stderr)
        return 2
    try:
        print(f"Chromium: {install()}")
    except BrowserError as exc:
        print(f"browser: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
