"""Docker sandboxes: one labelled container per trial phase, with limits and a network mode."""

from __future__ import annotations

import io
import shlex
import tarfile
import time
from contextvars import ContextVar
from functools import lru_cache
from pathlib import Path

import docker
import docker.errors
from pydantic import BaseModel, field_validator

from harness.disk_limit import DEFAULT_DISK, DiskWatchdog, create_bounded, disk_bytes, size_bytes
from harness.errors import UserError
from harness.ownership import OWNER_LABEL, owner_id
from harness.session import BashSession
from harness.session import start_script as build_start_script

LABEL = "cwm-eval"  # every container and network we make carries this label
RUN_LABEL = "cwm-eval.run"
TRIAL_LABEL = "cwm-eval.trial"
PHASE_LABEL = "cwm-eval.phase"
# (run id, trial name) of the trial this code runs for; the runner sets it, threads inherit it
CURRENT_TRIAL: ContextVar[tuple[str, str]] = ContextVar("cwm_eval_trial", default=("adhoc", "adhoc"))


class Limits(BaseModel):
    """CWM's evaluation sandbox: up to 4 CPUs and 16 GiB (capped at what the host has); 10 GiB of disk."""

    cpus: float = 4.0
    memory: str = "16g"
    pids: int = 4096
    disk: str = DEFAULT_DISK  # the writable layer's bound (harness/disk_limit.py); "0": none

    @field_validator("disk")
    @classmethod
    def _disk_size(cls, value: str) -> str:
        disk_bytes(value)  # a bad size is the user's one-line error (UserError passes through pydantic)
        return value


def memory_bytes(text: str) -> int:
    """A memory size (512m, 16g, 1073741824) in bytes; a clear error otherwise."""
    amount = size_bytes(text, "--memory", "16g, 512m or 1073741824")
    if amount <= 0:
        raise UserError(f"--memory {text!r} must be more than 0")
    return amount


@lru_cache(maxsize=1)
def host_resources() -> tuple[float, int]:
    """The Docker host's CPUs and memory in bytes."""
    info = docker_client().info()
    return float(info.get("NCPU") or 1), int(info.get("MemTotal") or 2**62)


def host_capped(limits: Limits) -> Limits:
    """The limits, lowered to the Docker host's CPUs and memory where they ask for more."""
    cpus, memory = host_resources()
    return limits.model_copy(update={"cpus": min(limits.cpus, cpus),
                                     "memory": str(min(memory_bytes(limits.memory), memory))})


class ExecResult(BaseModel):
    exit_code: int | None
    output: str
    timed_out: bool = False
    seconds: float = 0.0


@lru_cache(maxsize=1)
def docker_client() -> docker.DockerClient:
    try:
        client = docker.from_env(timeout=600)
        client.ping()
    except docker.errors.DockerException as exc:
        raise UserError(
            "no Docker engine is reachable "
            f"({type(exc).__name__}); start one with `sudo dockerd &` "
            "(or `sudo systemctl start docker`) and try again"
        ) from None
    return client


def files_archive(files: dict[str, bytes], mode: int = 0o644) -> bytes:
    """A tar of files at absolute paths (root-owned, `mode`), to put at `/`."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for path, data in files.items():
            info = tarfile.TarInfo(path.lstrip("/"))
            info.size, info.mode, info.mtime = len(data), mode, int(time.time())
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


class Sandbox:
    """A running container plus helpers to move files and run commands in it."""

    def __init__(self, container, workdir: str):
        self.container = container
        self.workdir = workdir
        self.disk: DiskWatchdog | None = None  # the disk bound's watchdog (None: no bound)

    @classmethod
    def start(
        cls,
        image: str,
        *,
        phase: str = "agent",
        workdir: str = "/testbed",
        limits: Limits | None = None,
        network: bool = False,
        env: dict[str, str] | None = None,
    ) -> Sandbox:
        limits = host_capped(limits or Limits())
        run_id, trial = CURRENT_TRIAL.get()
        disk = disk_bytes(limits.disk)
        container, bounded_by = create_bounded(
            docker_client(), disk,
            image,
            command=["sleep", "infinity"],
            detach=True,
            labels={LABEL: "1", RUN_LABEL: run_id, TRIAL_LABEL: trial, PHASE_LABEL: phase, OWNER_LABEL: owner_id()},
            network_mode="bridge" if network else "none",
            nano_cpus=int(limits.cpus * 1e9),
            mem_limit=limits.memory,
            pids_limit=limits.pids,
            working_dir=workdir,
            environment=env or {},
            init=True,
        )
        sandbox = cls(container, workdir)
        if disk:
            sandbox.disk = DiskWatchdog(container, disk, bounded_by).start()
        return sandbox

    @property
    def disk_exceeded(self) -> bool:
        """The container wrote past its disk bound and was killed: the model's failure."""
        return self.disk is not None and self.disk.exceeded

    def bound_disk(self, limit: int) -> None:
        """A task's own disk bound in bytes (Harbor's storage_mb), in place of --disk; under a driver quota
        (fixed at creation) it can only lower the bound."""
        if self.disk is None:
            self.disk = DiskWatchdog(self.container, limit).start()
        elif self.disk.enforced_by == "storage-opt":
            self.disk.set_limit(min(limit, self.disk.limit))
        else:
            self.disk.set_limit(limit)

    @property
    def id(self) -> str:
        return self.container.id

    def session(self, timeout: float = 120.0, output_cap: int | None = None,
                start_script: str | None = None) -> BashSession:
        """A started CWM-style shell session; `start_script` reruns on every (re)start (default: CWM's, for workdir)."""
        kwargs = {"output_cap": output_cap} if output_cap else {}
        script = build_start_script(self.workdir) if start_script is None else start_script
        session = BashSession(self.id, workdir=self.workdir, timeout=timeout, start_script=script, **kwargs)
        session.start()
        return session

    def exec(self, command: str, timeout: float | None = None, workdir: str | None = None) -> ExecResult:
        """One `docker exec` of a bash command; output is stdout and stderr interleaved."""
        if timeout is None:
            result = self.container.exec_run(["bash", "-c", command], workdir=workdir or self.workdir)
            return ExecResult(exit_code=result.exit_code, output=result.output.decode(errors="replace"))
        # swebench's own timed exec, so verification behaves exactly as the official harness
        from swebench.harness.docker_utils import exec_run_with_timeout  # swebench pulls in datasets, pandas
        wrapped = f"bash -c {shlex.quote(f'cd {shlex.quote(workdir or self.workdir)} && {command}')}"
        output, timed_out, seconds = exec_run_with_timeout(self.container, wrapped, timeout)
        # exec_run_with_timeout reports no exit code: the eval script records its own in the log
        return ExecResult(exit_code=None, output=output, timed_out=timed_out, seconds=seconds)

    def write_file(self, path: str, content: str | bytes, mode: int = 0o644) -> None:
        data = content.encode() if isinstance(content, str) else content
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            info = tarfile.TarInfo(name=Path(path).name)
            info.size = len(data)
            info.mode = mode
            tar.addfile(info, io.BytesIO(data))
        parent = str(Path(path).parent)
        self.container.exec_run(["mkdir", "-p", parent])
        self.container.put_archive(parent, buf.getvalue())

    def write_files(self, files: dict[str, bytes]) -> None:
        """Files at these absolute paths in one archive and one Docker call (missing folders are made)."""
        self.container.put_archive("/", files_archive(files))

    def copy_in(self, src: Path, dest: str) -> None:
        """Copy a host file or folder to `dest` (the folder's contents land inside `dest`)."""
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            tar.add(str(src), arcname=".")
        self.container.exec_run(["mkdir", "-p", dest])
        self.container.put_archive(dest, buf.getvalue())

    def read_file(self, path: str) -> str:
        stream, _ = self.container.get_archive(path)
        with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as tar:
            member = tar.next()
            return tar.extractfile(member).read().decode(errors="replace")

    def copy_out(self, src: str, dest: Path) -> None:
        stream, _ = self.container.get_archive(src)
        dest.mkdir(parents=True, exist_ok=True)
        with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as tar:
            tar.extractall(dest, filter="data")

    def git_diff(self, base: str | None = None) -> str:
        """The work tree's changes (new files included) against `base`, as a patch."""
        target = shlex.quote(base) if base else "HEAD"
        result = self.exec(f"git rev-parse --is-inside-work-tree >/dev/null 2>&1 || exit 0; git add -A >/dev/null 2>&1; git -c core.fileMode=false diff --cached {target}; "
                           "git reset -q >/dev/null 2>&1")
        return result.output

    def remove(self) -> None:
        if self.disk is not None:
            self.disk.stop()
        try:
            self.container.remove(force=True)
        except docker.errors.APIError as exc:
            if not already_gone(exc):
                raise
        finally:
            if self.disk is not None:
                self.disk.join()

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc) -> None:
        self.remove()


def run_labels(phase: str) -> dict[str, str]:
    """The labels of a container or network made for the current trial, its owner included (`cwm-eval clean`)."""
    run_id, trial = CURRENT_TRIAL.get()
    return {LABEL: "1", RUN_LABEL: run_id, TRIAL_LABEL: trial, PHASE_LABEL: phase, OWNER_LABEL: owner_id()}


def already_gone(exc: docker.errors.APIError) -> bool:
    """Removed already, or being removed by someone else (Docker's 409 "removal ... already in progress")."""
    return exc.status_code == 404 or (exc.status_code == 409 and "already in progress" in str(exc))


def labelled(run_id: str | None = None) -> tuple[list, list]:
    """The containers and networks we labelled (or only one run's)."""
    client = docker_client()
    label = f"{RUN_LABEL}={run_id}" if run_id else LABEL
    return (client.containers.list(all=True, filters={"label": label}, ignore_removed=True),  # one going away
            client.networks.list(filters={"label": label}))


def remove_objects(containers: list, networks: list) -> tuple[int, int]:
    """Force-remove these containers, then these networks; one already gone or going is not an error."""
    for container in containers:
        try:
            container.remove(force=True)
        except docker.errors.APIError as exc:
            if not already_gone(exc):
                raise
    for network in networks:
        try:
            network.remove()
        except docker.errors.APIError:
            pass  # still in use by a container of a live run, or gone
    return len(containers), len(networks)


def remove_labelled(run_id: str | None = None, settle: float = 0.0) -> tuple[int, int]:
    """Remove every container and network we labelled (or only one run's); returns the counts.

    With `settle`, keep at it for up to that many seconds until none is listed any more: on a loaded daemon a forced
    removal can fail for a moment ("device or resource busy") or be another caller's removal still in progress, and a
    run that is interrupted must not leave a container behind.
    """
    from tenacity import Retrying, retry_if_exception_type, stop_after_delay, wait_fixed

    if not settle:
        return remove_objects(*labelled(run_id))
    containers, networks = set(), set()
    for attempt in Retrying(stop=stop_after_delay(settle), wait=wait_fixed(0.5), reraise=True,
                            retry=retry_if_exception_type((docker.errors.APIError, LeftBehind))):
        with attempt:
            found = labelled(run_id)
            containers.update(c.id for c in found[0])
            networks.update(n.id for n in found[1])
            remove_objects(*found)
            if labelled(run_id)[0]:
                raise LeftBehind(f"containers of run {run_id} are still listed after their removal")
    return len(containers), len(networks)


class LeftBehind(RuntimeError):
    """A labelled container is still listed after its forced removal."""
