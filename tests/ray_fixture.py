"""One local Ray cluster for the Ray tests: two trial slots (`docker: 2`, so two worker processes run trials), and
a folder where each trial's worker leaves a marker `<run>.<task>.<attempt>.<pid>` as it starts (to find, stop or kill
it; Ray reuses worker processes across tests, so a marker names its run).

Import `ray_cluster` into a test module to use it."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
import ray


_started: list[Path] = []  # the cluster's marker folder, once started (each importing module shares it)


@pytest.fixture(scope="session")
def ray_cluster(tmp_path_factory):
    if _started:
        yield _started[0]
        return
    pid_dir = tmp_path_factory.mktemp("pids")
    ray.init(num_cpus=2, resources={"docker": 2}, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"CWM_EVAL_TRIAL_PID_DIR": str(pid_dir)}})
    _started.append(pid_dir)
    yield pid_dir
    ray.shutdown()
    _started.clear()


def workers_of(pid_dir: Path, run_id: str, task_id: str, attempt: int = 0) -> list[int]:
    """The pids of the workers that started a try of this run's trial, in no particular order."""
    prefix = f"{run_id}.{task_id}.{attempt}."
    return [int(p.name[len(prefix):]) for p in pid_dir.iterdir() if p.name.startswith(prefix)]


def signal_worker(pid: int, signum: int) -> bool:
    try:
        os.kill(pid, signum)
        return True
    except ProcessLookupError:
        return False


KILL, STOP, CONT = signal.SIGKILL, signal.SIGSTOP, signal.SIGCONT
