"""Installing a Debian package the tests need (PostgreSQL, Chromium) when it is missing."""

from __future__ import annotations

import os
import shutil
import subprocess
from typing import Callable


def apt_install(package: str, found: Callable[[], object], error: type[Exception]):
    """``found()`` if it finds the program, else install ``package`` with apt-get (as root) and look again."""
    got = found()
    if got:
        return got
    if not shutil.which("apt-get"):
        raise error(f"{package} is not installed and there is no apt-get: install {package}")
    if os.geteuid() != 0:
        raise error(f"{package} is not installed: run `sudo apt-get install -y {package}`")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "--no-install-recommends", package]):
        r = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if r.returncode:
            raise error(f"{' '.join(cmd)} failed: {(r.stderr or r.stdout).strip()[-500:]}")
    got = found()
    if not got:
        raise error(f"apt-get installed {package} but it is still not found")
    return got
