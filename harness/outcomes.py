"""Outcome classes: what the agent or its patch can cause is `unresolved` with a reason; only the rest is `error`.

`error` (not scored, redone on resume) is for what the agent cannot cause: Docker or its API failing, an image that
cannot be built or pulled, the model endpoint failing after its retries, and the harness's own bugs (their traceback
goes to the trial's trajectory.jsonl as an `error` event, and the run ends with a warning naming them).

`unresolved` with a `reason` is for what the agent did to its container: out of memory, pids exhausted, an output
flood, a disk limit, a container it stopped, a shell or environment it broke so that the harness's own steps there
fail. A `FaultWatch` follows the agent's container: every command's result, the container's cgroup counters (pids
refused at the limit, OOM kills), its state, and the disk watchdog's `disk_exceeded`.
"""

from __future__ import annotations

import subprocess
import threading
import traceback
from dataclasses import dataclass, field

import docker.errors
import requests

from harness.errors import UserError
from harness.records import Outcome, event
from harness.session import CommandResult, SessionDied

# causes first: when one is known, its consequences (a stopped container, a shell that cannot start) are not listed
CAUSES = ("disk limit", "out of memory", "pids exhausted", "output flood")
CONSEQUENCES = ("container stopped", "broken shell", "broken environment")
HARNESS_ERROR = "harness_error"  # the flag of a trial ended by a bug in the harness
MODEL_MODULES = ("openai", "httpx", "harness.model", "harness.endpoints")
DOCKER_ERRORS = (docker.errors.DockerException, requests.RequestException)
INFRA_ERRORS = (*DOCKER_ERRORS, SessionDied, UserError, subprocess.SubprocessError, OSError)


class InfraError(RuntimeError):
    """A failure the agent cannot cause (a broken image, a registry, Docker): the trial is an `error`."""


def is_model_failure(exc: BaseException) -> bool:
    """Raised by the model client (after its retries) or the libraries under it."""
    return any(cls.__module__.split(".")[0] in ("openai", "httpx") or cls.__module__ in MODEL_MODULES
               for cls in type(exc).__mro__)


_CGROUP_DIRS = (  # cgroup v1 and v2, cgroupfs and systemd drivers
    "/sys/fs/cgroup/{controller}/docker/{id}", "/sys/fs/cgroup/{controller}/system.slice/docker-{id}.scope",
    "/sys/fs/cgroup/docker/{id}", "/sys/fs/cgroup/system.slice/docker-{id}.scope",
)


def _counter(container_id: str, controller: str, files: tuple[str, ...], key: str) -> int:
    """A `key N` line of a cgroup events file of the container (0 where it cannot be read)."""
    for pattern in _CGROUP_DIRS:
        folder = pattern.format(controller=controller, id=container_id)
        for name in files:
            try:
                with open(f"{folder}/{name}") as f:
                    for line in f:
                        parts = line.split()
                        if len(parts) == 2 and parts[0] == key:
                            return int(parts[1])
            except (OSError, ValueError):
                continue
    return 0


def container_state(container) -> dict | None:
    """The container's State; None when it is gone. Raises InfraError when Docker does not answer."""
    try:
        container.reload()
    except docker.errors.NotFound:
        return None
    except DOCKER_ERRORS as exc:
        raise InfraError(f"Docker did not answer about container {container.id[:12]}: {exc}") from exc
    return container.attrs.get("State") or {}


class FaultWatch:
    """What the agent did to its container that ends the trial as its own failure."""

    POLL_SECONDS = 0.5  # a fork bomb lasts until the session's clean-up restarts the container: seconds at least

    def __init__(self, sandbox, trajectory=None):
        self.sandbox = sandbox
        self.trajectory = trajectory
        self.faults: list[str] = []
        self._unwritten: list[dict] = []
        self.acted = False  # the agent ran a command in the container
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Poll the counters in the background while the agent works (they reset when the container restarts)."""
        def loop():
            while not self._stop.wait(self.POLL_SECONDS):
                self.poll()

        self._thread = threading.Thread(target=loop, name=f"fault-watch-{self.sandbox.id[:12]}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def note(self, fault: str, **details) -> None:
        with self._lock:
            if fault not in self.faults:
                self.faults.append(fault)
                self._unwritten.append(event("fault", reason=fault, **details))

    def write_events(self) -> None:
        """The faults seen since the last call, as `fault` events of the trajectory (written by the trial's steps,
        never by the background poll, so lines never interleave)."""
        with self._lock:
            pending, self._unwritten = self._unwritten, []
        if self.trajectory is not None:
            for record in pending:
                self.trajectory.write(record)

    def poll(self) -> None:
        """The cgroup counters and the disk watchdog (cheap: a few host files, no Docker call)."""
        cid = self.sandbox.id
        if _counter(cid, "pids", ("pids.events",), "max") > 0:
            self.note("pids exhausted")
        if _counter(cid, "memory", ("memory.events", "memory.oom_control"), "oom_kill") > 0:
            self.note("out of memory")
        if getattr(self.sandbox, "disk_exceeded", False):
            self.note("disk limit")

    def command(self, result: CommandResult) -> None:
        if result.error == "too_long":
            self.note("output flood")
        self.poll()

    def check_container(self) -> None:
        """After the agent: OOM or a stop seen in the container's state. Raises InfraError when it is gone."""
        self.stop()
        self.poll()
        state = container_state(self.sandbox.container)
        if state is None:
            raise InfraError(f"the agent's container {self.sandbox.id[:12]} was removed during the trial")
        if state.get("OOMKilled"):
            self.note("out of memory")
        if not state.get("Running"):
            self.note("container stopped", exit_code=state.get("ExitCode"))
        self.write_events()

    def explain(self, exc: BaseException) -> str | None:
        """Why a harness step in the agent's container failed, when the agent caused it; None when it did not."""
        if isinstance(exc, requests.RequestException) and not isinstance(exc, docker.errors.APIError):
            return None  # the daemon did not answer
        try:
            self.check_container()
        except InfraError:
            return None
        if self.reason() is None:
            if isinstance(exc, docker.errors.APIError) and (exc.status_code or 500) >= 500:
                return None
            if not isinstance(exc, (docker.errors.APIError, SessionDied)):  # host-side failures are not the agent's
                return None
            self.note("broken environment", error=f"{type(exc).__name__}: {exc}"[:500])
            self.write_events()
        return self.reason()

    def reason(self) -> str | None:
        causes = [f for f in CAUSES if f in self.faults]
        listed = causes or [f for f in CONSEQUENCES if f in self.faults]
        return ", ".join(listed) or None


class WatchedSession:
    """The agent's session, watched: a shell that cannot be restarted after the agent's own actions is the agent's
    failure (its commands fail, as a dead shell's do), not an exception."""

    def __init__(self, session, watch: FaultWatch):
        self._session = session
        self._watch = watch

    def run(self, command: str, timeout: float | None = None) -> CommandResult:
        self._watch.acted = True
        self._watch.poll()
        try:
            result = self._session.run(command, timeout)
        except SessionDied as exc:
            self._watch.poll()
            state = container_state(self._watch.sandbox.container)  # InfraError when Docker fails
            if state is None:
                raise InfraError(f"the agent's container was removed during the trial ({exc})") from exc
            if state.get("OOMKilled"):
                self._watch.note("out of memory")
            self._watch.note("broken shell" if state.get("Running") else "container stopped", error=str(exc)[:500])
            self._watch.write_events()
            return CommandResult(output="", exit_code=None, error="exit")
        self._watch.command(result)
        self._watch.write_events()
        return result

    def __getattr__(self, name):
        return getattr(self._session, name)


@dataclass
class Failure:
    """How an exception ends a trial."""

    outcome: Outcome
    reason: str | None = None  # unresolved: what the agent caused
    error: str | None = None  # error: what failed
    flags: list[str] = field(default_factory=list)


def classify(exc: BaseException, watch: FaultWatch | None = None) -> Failure:
    """`watch` is given when the exception came from a step in the agent's container after the agent acted."""
    text = f"{type(exc).__name__}: {exc}"
    if is_model_failure(exc):
        return Failure(Outcome.ERROR, error=f"the model endpoint failed: {text}")
    if watch is not None and isinstance(exc, INFRA_ERRORS):
        reason = watch.explain(exc)
        if reason is not None:
            return Failure(Outcome.UNRESOLVED, reason=reason)
    if isinstance(exc, (InfraError, *INFRA_ERRORS)):
        return Failure(Outcome.ERROR, error=text)
    return Failure(Outcome.ERROR, error=f"harness bug: {text}\n{traceback_text(exc)}", flags=[HARNESS_ERROR])


def traceback_text(exc: BaseException) -> str:
    return "".join(traceback.format_exception(exc))
