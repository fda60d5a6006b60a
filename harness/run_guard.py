"""One live process per run: results/<run_id>/.lock, and a resume only with the configuration the run began with.

The lock is an flock held by the run's process for as long as it lives (the kernel drops it when the process
ends, however it ends, so a killed run leaves no stale lock); the file records who holds it. Both checks come
before the runner's first act, which removes the run id's containers.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from harness.errors import UserError
from harness.ownership import OWNER_LABEL, owner_alive, owner_id

LOCK_FILE = ".lock"
# RunConfig fields a resume may change: where and how fast the trials run, which of them, and how many attempts.
# Every other field (agent, sampling, scaffold, limits, grading, dataset, fields added later) must match.
RESUMABLE = {"run_id", "output", "concurrency", "executor", "ray_address", "max_starting_containers",
             "max_model_requests", "model_url", "model", "task_ids", "attempts", "api_key", "cwm.logprobs"}
# what run.json records about a LiveCodeBench run's protocol (its selection may change)
LIVECODEBENCH_KEYS = ("scenario", "samples", "test_timeout", "protocol", "prompt_texts")


def check_writable(path: Path, option: str, folder: bool = True) -> None:
    """Early, creating nothing: `path` (a folder, or a file) can be made or written; one line if not."""
    path = Path(path).expanduser()
    if path.exists():
        if folder != path.is_dir():
            raise UserError(f"{option} {path} is {'a file, not a folder' if folder else 'a folder, not a file'}")
        if not os.access(path, os.W_OK | (os.X_OK if folder else 0)):
            raise UserError(f"{option} {path} is not writable")
        return
    parent = path.absolute().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise UserError(f"{option} {path} cannot be created: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UserError(f"{option} {path} cannot be created: {parent} is not writable")


def writable_folder(path: Path, option: str) -> None:
    """Create `path` if needed; one line if it cannot be written."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".write-test-{os.getpid()}"
        probe.touch()
        probe.unlink()
    except OSError as exc:
        raise UserError(f"{option} {path} is not a writable folder: {exc.strerror or exc}") from None


class RunLock:
    def __init__(self, run_dir: Path):
        self.run_dir = run_dir
        self.path = run_dir / LOCK_FILE
        self.fd: int | None = None

    def acquire(self, wait: float = 1.0) -> None:
        """Take the lock, or refuse in one line naming the process that holds it."""
        writable_folder(self.run_dir, "--output")
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + wait  # `cwm-eval clean` may hold it for an instant while it looks
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    holder = read_holder(self.path)
                    os.close(fd)
                    raise UserError(f"run {self.run_dir.name} is live ({describe(holder)} holds {self.path}): "
                                    "wait for it to end, or choose another --run-id") from None
                time.sleep(0.05)
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "owner": owner_id(),
                                 "started_at": time.time()}).encode() + b"\n")
        self.fd = fd

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing drops the flock; the file stays (unlinking it would race a new run)
            self.fd = None


def read_holder(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def describe(holder: dict) -> str:
    if not holder.get("pid"):
        return "another process"
    return f"pid {holder['pid']} on {holder.get('host', '?')}"


def lock_holder(run_dir: Path) -> dict | None:
    """Who holds the run folder's lock: their record, or None when no live process does."""
    path = run_dir / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return read_holder(path) or {"pid": None}
    finally:
        os.close(fd)  # drops our shared lock too
    return None


def live_elsewhere(run_id: str) -> str | None:
    """A live process of another results folder that owns containers of this run id (their removal would hurt it)."""
    from harness.sandbox import labelled

    mine = owner_id()
    for container in labelled(run_id)[0]:
        owner = container.labels.get(OWNER_LABEL)
        if owner and owner != mine and owner_alive(owner):
            return owner
    return None


def flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(data, dict):
        out: dict[str, Any] = {}
        for key, value in data.items():
            out.update(flatten(value, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: data}


def _same_path(then: Any, now: Any) -> bool:
    if isinstance(then, str) and isinstance(now, str) and os.path.exists(then) and os.path.exists(now):
        return os.path.realpath(then) == os.path.realpath(now)
    return False


def config_differences(recorded: dict, config, model: str | None, suite=None) -> list[str]:
    """What differs between run.json and this invocation, as `name THEN then, NOW now` phrases."""
    from harness.config import RunConfig

    differ = []
    if "config" in recorded:
        defaults = flatten(RunConfig(suite=config.suite, run_id=config.run_id).model_dump(mode="json"))
        then, now = flatten(recorded["config"]), flatten(config.model_dump(mode="json"))
        for key in sorted(set(then) | set(now)):
            top = key.split(".")[0]
            if key in RESUMABLE or top in RESUMABLE or top not in RunConfig.model_fields:
                continue
            if key not in defaults and any(name.startswith(top + ".") for name in defaults):
                continue  # a setting this version no longer has
            old, new = then.get(key, defaults.get(key)), now.get(key, defaults.get(key))
            if old != new and not _same_path(old, new):
                differ.append(f"{key} {old!r} then, {new!r} now")
    if "model" in recorded and recorded["model"] != model:
        differ.append(f"model {recorded['model']!r} then, {model!r} now")
    described = getattr(suite, "describe", None)
    if "livecodebench" in recorded and described is not None:
        now_lcb = described()
        for key in LIVECODEBENCH_KEYS:
            if recorded["livecodebench"].get(key) != now_lcb.get(key):
                differ.append(f"{key} {recorded['livecodebench'].get(key)!r} then, {now_lcb.get(key)!r} now")
    return differ


def check_resume(run_dir: Path, config, model: str | None, suite=None) -> None:
    """A re-run of an existing run id must use the configuration that run began with."""
    path = run_dir / "run.json"
    if not path.exists():
        return
    try:
        recorded = json.loads(path.read_text())
        if not isinstance(recorded, dict):
            raise ValueError("not a JSON object")
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot resume {config.run_id}: {path} is unreadable ({exc}); choose another --run-id") \
            from None
    differ = config_differences(recorded, config, model, suite)
    if differ:
        raise UserError(f"run {config.run_id} was started with another configuration ({'; '.join(differ)}): "
                        "resume it with the same settings, or choose another --run-id")


@contextmanager
def claim_run(config, model: str | None, suite=None) -> Iterator[Path]:
    """Hold the run folder for this process: refused if the run is live, or resumed with other settings."""
    from harness.sandbox import docker_client

    docker_client()  # no Docker engine: said before any folder is made
    run_dir = Path(config.output) / config.run_id
    lock = RunLock(run_dir)
    lock.acquire()
    try:
        owner = live_elsewhere(config.run_id)
        if owner:
            raise UserError(f"run id {config.run_id} is live in another results folder (process {owner}): "
                            "choose another --run-id")
        check_resume(run_dir, config, model, suite)
        yield run_dir
    finally:
        lock.release()
