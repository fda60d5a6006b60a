"""Which process owns a container: `host:pid:start` in its owner label, and whether that process still runs.

The start time (the kernel's, from /proc/PID/stat) tells a reused pid from the process that made the container.
"""

from __future__ import annotations

import os
import socket
from functools import lru_cache

OWNER_LABEL = "cwm-eval.owner"


def _stat(pid: int) -> tuple[str, str]:
    """The process's state letter and start time in clock ticks since boot ("" where /proc cannot tell)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        return fields[0], fields[19]
    except (OSError, IndexError):
        return "", ""


def process_start(pid: int) -> str:
    return _stat(pid)[1]


@lru_cache(maxsize=1)
def _owner(pid: int) -> str:
    return f"{socket.gethostname()}:{pid}:{process_start(pid)}"


def owner_id() -> str:
    """This process, as an owner label value (a forked child is its own owner)."""
    return _owner(os.getpid())


def parse_owner(value: str) -> tuple[str, int, str] | None:
    host, _, rest = value.rpartition(":")
    host, _, pid = host.rpartition(":")
    try:
        return host, int(pid), rest
    except ValueError:
        return None


def owner_alive(value: str | None) -> bool | None:
    """True: the owning process runs; False: it is gone; None: unknown (no label, or another host's process)."""
    parsed = parse_owner(value) if value else None
    if parsed is None:
        return None
    host, pid, start = parsed
    if host != socket.gethostname():
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's process: it exists
    state, started = _stat(pid)
    return state != "Z" and (not start or started in (start, ""))  # a zombie has ended
