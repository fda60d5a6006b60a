"""The disk bound of a sandbox container: the storage driver's quota where it has one, else a watchdog.

Where the Docker storage driver takes a size (`--storage-opt size=`: overlay2 over xfs with pquota,
devicemapper, btrfs, zfs, windowsfilter) the container is created with it, so writes past the bound fail. Support
is learned by trying: the first refusal (overlay2 over ext4: "--storage-opt is supported only for overlay over
xfs with 'pquota' mount option") is remembered per daemon and later containers are created without it.

Either way a watchdog thread per container measures its writable layer every few seconds:
- `du -sxB1` of the overlay upper dir (`GraphDriver.Data.UpperDir`) when this process can read it (the harness
  runs on the Docker host as root): disk blocks actually used, hard links once, in a separate low-priority
  process so a big layer costs no time under the harness's GIL;
- else the daemon's own `SizeRw` (`GET /containers/ID/json?size=1`: remote or rootless daemons, other drivers).
It polls sooner when the layer grows fast towards the bound and never spends more than 1/COST_SHARE of one core
on a big layer. Past the bound (or at the driver's quota) it sets `exceeded` and kills the container: every
process in it dies, the agent's next command fails, and a container that comes back (a restart) is killed again.
A watchdog never raises: a failed measure is logged and retried; it ends when `stop()` is called (sandbox removal).
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import threading
import time
from functools import lru_cache

import docker.errors
import requests

from harness.errors import UserError

log = logging.getLogger(__name__)

DEFAULT_DISK = "10g"
POLL_SECONDS = 2.0  # the usual interval between two measures
MIN_POLL_SECONDS = 0.25  # the shortest, when the layer grows fast towards the bound
COST_SHARE = 10  # wait at least this many times what the last measure took (at most ~10% of a core)
QUOTA_SLACK = 0.99  # with a driver quota, usage at 99% of it counts as reaching the bound
UNITS = {"b": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}

_quota_refused: dict[str, str] = {}  # daemon id -> why its storage driver refused `size`
_quota_lock = threading.Lock()


def size_bytes(text: str | int, option: str, example: str) -> int:
    """Docker's size notation (10g, 500m, 1.5GiB, 1073741824) in bytes; a one-line error naming `option`."""
    value = str(text).strip().lower().removesuffix("ib").removesuffix("b") or "0"
    number, unit = (value[:-1], value[-1]) if value[-1] in UNITS else (value, "b")
    try:
        return int(float(number) * UNITS[unit])
    except ValueError:
        raise UserError(f"{option} {text!r}: use a size such as {example}") from None


def disk_bytes(text: str | int | None) -> int | None:
    """The disk bound in bytes; None for no bound (0, none, off)."""
    if text is None or str(text).strip().lower() in ("0", "none", "off", "unlimited"):
        return None
    amount = size_bytes(text, "--disk", "10g or 500m (0 for no bound)")
    if amount < 0:
        raise UserError(f"--disk {text!r} must not be negative")
    return amount or None


def quota_refused(exc: docker.errors.APIError) -> bool:
    """Whether the daemon refused to create a container because its storage driver takes no size."""
    text = f"{exc.explanation or ''} {exc}".lower()
    return any(word in text for word in ("storage-opt", "storage opt", "storage option", "quota"))


def _daemon_id(client) -> str:
    return str(client.api.base_url)  # one daemon per address for the life of this process


def create_bounded(client, limit: int | None, image: str, **kwargs) -> tuple[object, str | None]:
    """`client.containers.run(image, **kwargs)` with the driver's size quota where the driver takes one.

    Returns the container and how its disk is bounded: "storage-opt", "watchdog", or None (no bound). The first
    refusal of the size is remembered for this daemon: later containers go straight to the watchdog."""
    if not limit:
        return client.containers.run(image, **kwargs), None
    daemon = _daemon_id(client)
    with _quota_lock:
        refused = daemon in _quota_refused
    if refused:
        return client.containers.run(image, **kwargs), "watchdog"
    try:
        return client.containers.run(image, storage_opt={"size": str(limit)}, **kwargs), "storage-opt"
    except docker.errors.NotFound:
        raise  # no such image (after docker-py's pull): nothing to do with the size
    except docker.errors.APIError as exc:
        refusal = exc
    # the size was the problem if the same container starts without it (any other failure is raised as it comes
    # then); a driver that takes no size at all is remembered, a size it only disliked is tried again next time
    container = client.containers.run(image, **kwargs)
    reason = str(refusal.explanation or refusal)
    if quota_refused(refusal):
        with _quota_lock:
            _quota_refused[daemon] = reason
    log.info("storage driver refused size=%d (%s): disk bounded by a watchdog", limit, reason)
    return container, "watchdog"


def quota_refusal(client) -> str | None:
    """The daemon's reason for refusing a size quota, once one was refused."""
    with _quota_lock:
        return _quota_refused.get(_daemon_id(client))


@lru_cache(maxsize=1)
def _du_argv() -> tuple[str, ...]:
    return ("nice", "-n", "10", "du", "-sxB1") if shutil.which("nice") else ("du", "-sxB1")


def du_bytes(path: str) -> int:
    """Disk blocks used under `path` (one file system, hard links once), by `du` at low priority."""
    done = subprocess.run([*_du_argv(), path], capture_output=True, text=True, timeout=600, check=False)
    # files removed during the walk make du exit 1 after printing its total
    first = done.stdout.split(maxsplit=1)
    if not first or not first[0].isdigit():
        raise RuntimeError(f"du {path}: exit {done.returncode}: {done.stderr.strip()[-300:]}")
    return int(first[0])


def walk_bytes(path: str) -> int:
    """The same in Python (no `du` on this host): blocks of every entry, hard links once, no symlink followed."""
    total, seen, stack = 0, set(), [path]
    while stack:
        try:
            entries = os.scandir(stack.pop())
        except OSError:
            continue  # removed meanwhile, or unreadable
        with entries:
            for entry in entries:
                try:
                    st = entry.stat(follow_symlinks=False)
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(entry.path)
                except OSError:
                    continue
                if st.st_nlink > 1 and not entry.is_dir(follow_symlinks=False):
                    if (st.st_dev, st.st_ino) in seen:
                        continue
                    seen.add((st.st_dev, st.st_ino))
                total += st.st_blocks * 512
    return total


class DiskWatchdog:
    """Measures one container's writable layer in a thread; past `limit` bytes it kills the container."""

    def __init__(self, container, limit: int, enforced_by: str = "watchdog", *, poll_seconds: float = POLL_SECONDS):
        self.container = container
        self.limit = limit
        self.enforced_by = enforced_by  # "storage-opt": the driver's quota holds the bound; else only this thread
        self.poll_seconds = poll_seconds
        self.exceeded = False
        self.usage: int | None = None  # bytes at the last measure
        self.method: str | None = None  # du | walk | api
        self.polls = 0
        self.last_cost = 0.0  # seconds the last measure took
        self.errors = 0
        self._upper: str | None = None
        self._stop = threading.Event()
        self._limit_lock = threading.Lock()
        self.thread = threading.Thread(target=self._loop, name=f"disk-watch-{container.id[:12]}", daemon=True)

    def start(self) -> DiskWatchdog:
        self.thread.start()
        return self

    def stop(self) -> None:
        """Ask the thread to end (it ends within a measure); `join` waits for it."""
        self._stop.set()

    def join(self, timeout: float = 10.0) -> None:
        if self.thread.is_alive() and self.thread is not threading.current_thread():
            self.thread.join(timeout)

    def set_limit(self, limit: int) -> None:
        """A task's own bound (Harbor's storage_mb). Under a driver quota it can only go lower than the quota."""
        with self._limit_lock:
            self.limit = limit

    @property
    def threshold(self) -> int:
        with self._limit_lock:
            limit = self.limit
        return int(limit * QUOTA_SLACK) if self.enforced_by == "storage-opt" else limit

    # -- measuring ---------------------------------------------------------------
    def _choose(self) -> None:
        """du (or a Python walk) of the upper dir when this process can read it; else the daemon's SizeRw."""
        api = self.container.client.api
        data = api.inspect_container(self.container.id).get("GraphDriver", {}).get("Data") or {}
        upper = data.get("UpperDir")
        if upper and os.path.isdir(upper) and os.access(upper, os.R_OK | os.X_OK):
            self._upper = upper
            self.method = "du" if shutil.which("du") else "walk"
        else:
            self.method = "api"

    def measure(self) -> int:
        if self.method is None:
            self._choose()
        if self.method == "du":
            return du_bytes(self._upper)
        if self.method == "walk":
            return walk_bytes(self._upper)
        api = self.container.client.api
        info = api._result(api._get(api._url("/containers/{0}/json", self.container.id), params={"size": 1}), True)
        return int(info.get("SizeRw") or 0)

    def poll(self) -> None:
        """One measure; past the bound, kill the container (again, if it was restarted)."""
        if self.exceeded:
            self._kill()
            return
        started = time.monotonic()
        usage = self.measure()
        self.last_cost = time.monotonic() - started
        self.usage, self.polls = usage, self.polls + 1
        if usage >= self.threshold:
            self.exceeded = True
            log.warning("container %s wrote %d bytes, past its disk bound of %d: killed",
                        self.container.id[:12], usage, self.limit)
            self._kill()

    def _kill(self) -> None:
        try:
            self.container.kill()
        except docker.errors.APIError as exc:
            if exc.status_code != 409:  # 409: not running, nothing left to stop; 404 (gone) ends the watchdog
                raise
            return
        try:  # until Docker says it stopped, so no clean-up sees it running and restarts it
            self.container.wait(condition="not-running", timeout=10)
        except (docker.errors.APIError, requests.exceptions.RequestException):
            pass  # still stopping: killed again at the next poll if it runs

    def _next_wait(self, previous: tuple[float, int] | None) -> float:
        """POLL_SECONDS, sooner when the growth rate would cross the bound before then, never below the cost."""
        wait = self.poll_seconds
        if previous is not None and self.usage is not None:
            elapsed = time.monotonic() - previous[0]
            rate = (self.usage - previous[1]) / elapsed if elapsed > 0 else 0.0
            if rate > 0:
                wait = min(wait, max(MIN_POLL_SECONDS, (self.threshold - self.usage) / rate / 2))
        return max(wait, COST_SHARE * self.last_cost)

    def _loop(self) -> None:
        previous: tuple[float, int] | None = None
        wait = min(self.poll_seconds, 0.5)  # the first measure soon after the start
        while not self._stop.wait(wait):
            try:
                self.poll()
                wait = self._next_wait(previous) if not self.exceeded else self.poll_seconds
                if self.usage is not None:
                    previous = (time.monotonic(), self.usage)
            except Exception as exc:  # noqa: BLE001 - never raised into the trial: logged, retried
                if self._stop.is_set() or isinstance(exc, docker.errors.NotFound):
                    return  # the sandbox was removed (by us, or behind our back): nothing left to watch
                self.errors += 1
                if self.errors in (1, 10) or self.errors % 100 == 0:
                    log.warning("disk watchdog of %s: %s: %s", self.container.id[:12], type(exc).__name__, exc)
                self.method = None  # inspect again next time (the layer may have moved, or the container gone)
                wait = self.poll_seconds
