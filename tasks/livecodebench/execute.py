"""Running programs against a problem's tests in a container: one job per container call, all samples in it."""

from __future__ import annotations

import json
import math
import shlex
import tempfile
import uuid
from pathlib import Path

import docker.errors

from harness.sandbox import Limits, Sandbox
from tasks.livecodebench.dataset import Problem

RUNNER_SOURCE = Path(__file__).with_name("sandbox_runner.py")
WORKER_SOURCE = Path(__file__).with_name("lcb_inprocess.py")  # must keep this name beside the runner
PROTOCOLS = ("cwm", "lcb_runner")
JOB_ROOT = "/var/tmp/cwm-eval-lcb"  # outside /workspace: the agent's files are not the grader's
DEFAULT_TIMEOUT = 6.0  # seconds per test, lcb_runner's --timeout


class ExecutionError(RuntimeError):
    """The test runner itself failed (not the program under test): an infrastructure error."""


def write_runner(folder: Path, name: str = "run_tests.py") -> list[Path]:
    """The runner as `folder/name`, with its worker (lcb_inprocess.py) beside it; both world-readable, since the
    worker runs as nobody. Returns the two paths."""
    paths = [Path(folder) / name, Path(folder) / WORKER_SOURCE.name]
    for path, source in zip(paths, (RUNNER_SOURCE, WORKER_SOURCE)):
        path.write_text(source.read_text())
        path.chmod(0o644)
    return paths


def job_tests(problem: Problem, public_only: bool = False) -> list[dict]:
    tests = problem.public_tests if public_only else problem.tests
    public = len(problem.public_tests)
    return [{"input": t.input, "output": t.output, "public": i < public} for i, t in enumerate(tests)]


def global_timeout(tests: int, samples: int, timeout: float) -> int:
    """The docker-level bound of a job: lcb_runner's per-sample bound, (timeout + 1) * tests + 5 s (CWM's,
    timeout * tests, is smaller), with the timeout in whole seconds as the runner's alarm has it, for every sample,
    plus start-up slack."""
    seconds = max(1, math.ceil(timeout))
    return int(samples * ((seconds + 1) * max(tests, 1) + 7) + 30)


def missing_result(status: str, error: str, tests: int) -> dict:
    return {"passed": False, "status": status, "error": error, "tests_total": tests, "tests_run": 0,
            "tests_passed": 0, "seconds": 0.0, "tests": []}


def run_tests(sandbox: Sandbox, problem: Problem, *, codes: dict[str, str] | None = None,
              paths: dict[str, str] | None = None, timeout: float = DEFAULT_TIMEOUT,
              protocol: str = "cwm") -> dict[str, dict]:
    """Each sample (code given here, or a file already in the container) against all public + private tests,
    graded as `protocol`'s executor grades (sandbox_runner.py says how).

    Returns {sample id: {"passed", "status", "protocol", "tests_total", "tests_run", "tests_passed", "seconds",
    "tests"}}; raises ExecutionError when the runner cannot run at all.
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; use {' or '.join(PROTOCOLS)}")
    codes, paths = codes or {}, paths or {}
    root = f"{JOB_ROOT}/{uuid.uuid4().hex[:12]}"
    tests = job_tests(problem)
    samples = [{"id": sid, "path": f"{root}/code/{sid}.py"} for sid in codes]
    samples += [{"id": sid, "path": path} for sid, path in paths.items()]
    job = {"tests": tests, "fn_name": problem.fn_name, "timeout": timeout, "protocol": protocol,
           "samples": samples, "result_path": f"{root}/results.json"}
    with tempfile.TemporaryDirectory(prefix="cwm-eval-lcb-") as tmp:
        folder = Path(tmp)
        (folder / "code").mkdir()
        write_runner(folder, "runner.py")
        (folder / "job.json").write_text(json.dumps(job))
        for sid, code in codes.items():
            (folder / "code" / f"{sid}.py").write_bytes(code.encode(errors="surrogateescape"))
        sandbox.exec(f"rm -rf {shlex.quote(root)}", workdir="/")
        sandbox.copy_in(folder, root)  # one archive, however many files
    # the program under test runs as nobody: it may read the runner's two files, never the job (expected outputs)
    quoted = shlex.quote(root)
    sandbox.exec(f"chmod 711 {JOB_ROOT} {quoted} && chmod 644 {quoted}/runner.py {quoted}/{WORKER_SOURCE.name} && "
                 f"chmod 600 {quoted}/job.json && chmod -R go-rwx {quoted}/code", workdir="/")
    cap = global_timeout(len(tests), len(samples), timeout)
    run = sandbox.exec(f"timeout -k 5 {cap} python3 -I runner.py --job job.json", workdir=root)
    try:
        results = json.loads(sandbox.read_file(f"{root}/results.json"))
    except (docker.errors.NotFound, json.JSONDecodeError):
        results = {}
    timed_out = run.exit_code in (124, 137)
    if run.exit_code != 0 and not timed_out:
        raise ExecutionError(f"the test runner failed (exit {run.exit_code}): {run.output[-1500:]}")
    for sample in samples:
        if sample["id"] not in results:
            if not timed_out:
                raise ExecutionError(f"the test runner left no result for sample {sample['id']}")
            results[sample["id"]] = missing_result("timeout", f"the whole job ran past {cap} s", len(tests)) | {
                "protocol": protocol}
    sandbox.exec(f"rm -rf {shlex.quote(root)}", workdir="/")
    return results


def execute_problem(problem: Problem, codes: dict[str, str], *, image: str, limits: Limits | None = None,
                    timeout: float = DEFAULT_TIMEOUT, phase: str = "execute",
                    protocol: str = "cwm") -> dict[str, dict]:
    """One fresh container of `image` (no network) runs every sample of one problem."""
    with Sandbox.start(image, phase=phase, workdir="/tmp", limits=limits, network=False) as sandbox:
        return run_tests(sandbox, problem, codes=codes, timeout=timeout, protocol=protocol)
