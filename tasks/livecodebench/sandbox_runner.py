"""Runs Python programs against LiveCodeBench tests inside a container, graded as CWM's executor grades them
(protocol "cwm") or as lcb_runner's does ("lcb_runner"). Stdlib only: copied in with lcb_inprocess.py beside it.

    python3 -I runner.py --job JOB.json        the harness: every sample of one problem; results to job[result_path]
    python3 run_tests.py [--solution P] [--tests P]     the agent: its solution against the public tests
                                                        (the protocol comes from the tests file, default cwm)

Each sample runs in one worker process (lcb_inprocess.py; as nobody when this runs as root) that loads the program
once and runs the tests in turn in process, as both references do; this process reads the worker's answers,
compares them, stops at the first failure, and kills the worker when the sample runs past its overall bound
(CWM: timeout x tests; lcb_runner: (timeout + 1) x tests + 5 s, both from the worker's start).

Verdict integrity, stricter than both references: the expected outputs never enter the program's process. The
worker sends each test's captured stdout, or the pickled return value, over a private pipe, and the comparison
happens here. Values are unpickled by an Unpickler that builds plain builtin values only (None, bool, int, float,
complex, str, bytes, bytearray, list, tuple, dict, set, frozenset). Deviation: a functional answer of any other
type (a program's own class, an int subclass with its own __eq__, a collections.Counter...) is a wrong answer with
a note, where the reference executor would have called its __eq__. A worker that writes garbage or forged frames
fails only its own sample.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from decimal import Decimal

WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "lcb_inprocess.py")


def worker_module():
    """lcb_inprocess.py, beside this file, loaded by path (this folder never joins sys.path)."""
    spec = importlib.util.spec_from_file_location("lcb_inprocess", WORKER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_worker = worker_module()
FrameReader, NotPlain, PROTOCOLS, plain_loads = (_worker.FrameReader, _worker.NotPlain, _worker.PROTOCOLS,
                                                 _worker.plain_loads)
# lcb_runner's result codes: True (1) pass, -1 compile error / global timeout, -2 wrong answer, -3 TLE, -4 runtime
CODES = {"passed": 1, "compile_error": -1, "wrong_answer": -2, "timeout": -3, "runtime_error": -4}
MAX_FILE_BYTES = 256 * 1024 * 1024  # files the program writes (SIGXFSZ past it)
CWM_MEMORY = int(2e9)  # CWM's bubblewrap limits: RLIMIT_AS and RLIMIT_DATA
NOBODY = 65534
SNIPPET = 400
REFERENCE = {"cwm": "CWM's executor", "lcb_runner": "lcb_runner"}


def truncate(value, limit: int = SNIPPET) -> str:
    text = value if isinstance(value, str) else safe_repr(value)
    return text if len(text) <= limit else f"{text[:limit // 2]}...<{len(text) - limit} chars>...{text[-limit // 2:]}"


def safe_repr(value) -> str:
    try:
        return repr(value)
    except Exception:  # noqa: BLE001 - a deeply nested answer
        return f"<a {type(value).__name__} too deep to print>"


def stripped_lines(text: str) -> list[str]:
    return [line.strip() for line in text.strip().split("\n")]


def as_decimals(line: str) -> list[Decimal] | None:
    try:
        return [Decimal(token) for token in line.split()]
    except Exception:  # noqa: BLE001 - any token that is not a number
        return None


def compare_stdout(actual: str, expected: str) -> str | None:
    """Both references' stdio rule: stripped lines equal, else token-wise Decimal equality. None when they match."""
    got, want = stripped_lines(actual), stripped_lines(expected)
    if len(got) != len(want):
        return f"Wrong answer: mismatched output length ({len(got)} lines, expected {len(want)})"
    for index, (a, b) in enumerate(zip(got, want)):
        if a == b:
            continue
        da, db = as_decimals(a), as_decimals(b)
        if da is None or db is None or da != db:
            return f"Wrong answer at line {index}: {truncate(a, 200)} != {truncate(b, 200)}"
    return None


def confine(protocol: str):
    """The worker's limits, set in the child before exec; as root, the drop to nobody, so that the program cannot
    touch this runner, its job or its results."""
    def preexec() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (MAX_FILE_BYTES, MAX_FILE_BYTES))
        if protocol == "cwm":
            for limit in (resource.RLIMIT_AS, resource.RLIMIT_DATA):
                resource.setrlimit(limit, (CWM_MEMORY, CWM_MEMORY))
        if os.getuid() == 0:
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
    return preexec


def make_scratch(path: str) -> str:
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path)
    os.chmod(path, 0o1777)  # the program's working directory: it may add files, not replace the runner's
    return path


def kill_group(proc: subprocess.Popen) -> None:
    """The worker, its children, and (as root) anything of nobody's that left the group with setsid."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    if os.getuid() == 0:
        for entry in os.listdir("/proc"):
            try:
                if entry.isdigit() and os.stat(f"/proc/{entry}").st_uid == NOBODY:
                    os.kill(int(entry), signal.SIGKILL)
            except (FileNotFoundError, ProcessLookupError, PermissionError):
                pass
    proc.wait()


def record(index: int, test: dict, status: str, seconds: float = 0.0, **fields) -> dict:
    result = {"test": index, "public": test.get("public", False), "status": status, "code": CODES[status],
              "seconds": round(seconds, 4)}
    if status != "passed":
        result.update(input=truncate(test["input"]), expected=truncate(test["output"]))
        result.update({k: truncate(v) for k, v in fields.items() if v is not None})
    return result


def not_plain(what: str, protocol: str) -> str:
    return (f"Wrong Answer: returned a {what}: only plain values are compared; {REFERENCE[protocol]} would call "
            "its __eq__")


def judge_value(data: bytes, expected: str, protocol: str) -> tuple[str, str | None, str | None]:
    """(status, error, output) of a functional answer: `pred == gt`, and for CWM also `pred == gt[0]` when gt is a
    non-empty list. The answer is rebuilt from plain values only, so no __eq__ of the program's runs here."""
    try:
        value = plain_loads(data)
    except NotPlain as exc:
        return "wrong_answer", not_plain(exc.name, protocol), None
    except Exception as exc:  # noqa: BLE001
        return "wrong_answer", f"Wrong Answer: the answer could not be read back ({type(exc).__name__})", None
    gt = json.loads(expected)
    try:
        same = value == gt or (protocol == "cwm" and isinstance(gt, list) and bool(gt) and value == gt[0])
    except Exception as exc:  # noqa: BLE001 - RecursionError on a deeply nested answer
        return "wrong_answer", f"Wrong Answer: comparing raised {type(exc).__name__}", safe_repr(value)
    return ("passed", None, None) if same else ("wrong_answer", "Wrong Answer", safe_repr(value))


def judge(frame: tuple, index: int, test: dict, protocol: str, fn_name) -> dict:
    """One test's record from its frame; a frame out of place is the worker's (the program's) failure."""
    if len(frame) != 6 or frame[0] != "test" or frame[1] != index or not isinstance(frame[4], (int, float)):
        return record(index, test, "runtime_error", error="the worker sent a frame out of place (a program "
                      "writing to the runner's channel?)")
    _, _, kind, payload, seconds, error = frame
    error = error if isinstance(error, str) else None
    if kind == "output" and isinstance(payload, str) and not fn_name:
        wrong = compare_stdout(payload, test["output"])
        return record(index, test, "wrong_answer" if wrong else "passed", seconds, error=wrong, output=payload)
    if kind == "value" and isinstance(payload, bytes) and fn_name:
        status, error, output = judge_value(payload, test["output"], protocol)
        return record(index, test, status, seconds, error=error, output=output)
    if kind == "unpicklable" and isinstance(payload, str):
        return record(index, test, "wrong_answer", seconds, error=not_plain(payload, protocol))
    if kind == "too_large":
        return record(index, test, "wrong_answer", seconds, error=f"Wrong Answer: {error}")
    if kind == "timeout":
        return record(index, test, "timeout", seconds, error=error or "Time Limit Exceeded")
    if kind == "runtime_error":
        return record(index, test, "runtime_error", seconds, error=error or "Runtime Error")
    return record(index, test, "runtime_error", error=f"the worker sent an unknown frame kind {truncate(kind, 80)}")


def sample_bound(protocol: str, seconds: int, tests: int) -> float:
    return seconds * tests if protocol == "cwm" else (seconds + 1) * tests + 5


def start_worker(code_path: str, job: dict, scratch: str, seconds: int) -> tuple[subprocess.Popen, FrameReader]:
    program = os.path.join(scratch, "solution.py")
    shutil.copyfile(code_path, program)
    spec = {"code_path": program, "fn_name": job.get("fn_name"), "protocol": job["protocol"], "timeout": seconds,
            "inputs": [t["input"] for t in job["tests"]]}
    spec_path = os.path.join(scratch, "worker.json")
    with open(spec_path, "w") as fh:
        json.dump(spec, fh)
    for path in (program, spec_path):
        os.chmod(path, 0o644)
    channel_r, channel_w = os.pipe()
    stderr_r, stderr_w = os.pipe()
    try:
        proc = subprocess.Popen([sys.executable, "-I", WORKER, spec_path, str(channel_w)], stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=stderr_w, pass_fds=(channel_w,), cwd=scratch,
                                start_new_session=True, preexec_fn=confine(job["protocol"]))
    finally:
        os.close(channel_w)
        os.close(stderr_w)
    return proc, FrameReader(channel_r, stderr_r)


def ending(proc: subprocess.Popen) -> str:
    """How the worker ended, once its channel closed (it may have closed the channel and run on)."""
    try:
        code = proc.wait(timeout=0.5)
    except subprocess.TimeoutExpired:
        return " (it closed its channel)"
    if code >= 0:
        return f" (exit code {code})"
    try:
        return f" ({signal.Signals(-code).name})"
    except ValueError:
        return f" (signal {-code})"


def stopped(reason: str, index: int, test: dict, bound: float, proc: subprocess.Popen, frames: FrameReader,
            started: float) -> dict:
    """The record of a test whose frame never came."""
    seconds = time.monotonic() - started
    if reason == "timeout":
        return record(index, test, "timeout", seconds, error=f"the sample ran past its overall bound ({bound:g} s)")
    why = "the worker sent garbage on its channel" if reason == "garbled" else f"the worker died{ending(proc)}"
    return record(index, test, "runtime_error", seconds, error=f"{why}\n{frames.stderr_tail()}")


def load_failure(frame, test: dict, bound: float, proc: subprocess.Popen, frames: FrameReader,
                 started: float) -> dict:
    """The record when the worker did not report the program loaded."""
    if isinstance(frame, tuple) and len(frame) == 2 and frame[0] == "compile_error" and isinstance(frame[1], str):
        return record(0, test, "compile_error", time.monotonic() - started, error=frame[1])
    if frame == "eof":  # SystemExit at load, a crash: the references' worker dies before any test
        return record(0, test, "compile_error", time.monotonic() - started,
                      error=f"the worker ended before loading the program{ending(proc)}\n{frames.stderr_tail()}")
    return stopped(frame if frame == "timeout" else "garbled", 0, test, bound, proc, frames, started)


def run_tests_in_worker(code_path: str, job: dict, scratch: str) -> list[dict]:
    tests, protocol, fn_name = job["tests"], job["protocol"], job.get("fn_name")
    seconds = max(1, math.ceil(float(job["timeout"])))  # signal.alarm takes whole seconds
    bound = sample_bound(protocol, seconds, len(tests))
    started = time.monotonic()
    proc, frames = start_worker(code_path, job, scratch, seconds)
    deadline = started + bound
    try:
        frame = frames.next(deadline)
        if frame != ("loaded",):
            return [load_failure(frame, tests[0], bound, proc, frames, started)]
        results = []
        for index, test in enumerate(tests):
            frame = frames.next(deadline)
            results.append(stopped(frame, index, test, bound, proc, frames, started) if isinstance(frame, str)
                           else judge(frame, index, test, protocol, fn_name))
            if results[-1]["status"] != "passed":
                break
        return results
    finally:
        for fd in (frames.channel, frames.stderr):
            if fd is not None:
                os.close(fd)
        kill_group(proc)


def run_sample(code_path: str, job: dict, scratch: str) -> dict:
    started = time.monotonic()
    tests = job["tests"]
    results = run_tests_in_worker(code_path, job, scratch) if tests else []
    passed = bool(tests) and len(results) == len(tests) and all(r["status"] == "passed" for r in results)
    failed = next((r for r in results if r["status"] != "passed"), None)
    return {"passed": passed, "status": "passed" if passed else failed["status"] if failed else "no_tests",
            "protocol": job["protocol"], "tests_total": len(tests), "tests_run": len(results),
            "tests_passed": sum(r["status"] == "passed" for r in results),
            "seconds": round(time.monotonic() - started, 3), "tests": results}


def write_json(path: str, data) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as fh:
        json.dump(data, fh)
    os.replace(tmp, path)


def protocol_of(job: dict) -> str:
    protocol = job.get("protocol") or "cwm"
    if protocol not in PROTOCOLS:
        raise SystemExit(f"unknown protocol {protocol!r}; use {' or '.join(PROTOCOLS)}")
    return protocol


def run_job(job_path: str) -> None:
    os.umask(0o077)  # the results, like the job's expected outputs, are the runner's alone
    job_path = os.path.abspath(job_path)
    with open(job_path) as fh:
        job = json.load(fh)
    job["protocol"] = protocol_of(job)
    root, results = os.path.dirname(job_path), {}
    for sample in job["samples"]:
        scratch = make_scratch(os.path.join(root, f"scratch-{sample['id']}"))
        if os.path.isfile(sample["path"]):
            results[sample["id"]] = run_sample(sample["path"], job, scratch)
        else:
            results[sample["id"]] = {"passed": False, "status": "missing", "protocol": job["protocol"],
                                     "tests_total": len(job["tests"]), "tests_run": 0, "tests_passed": 0,
                                     "seconds": 0.0, "tests": [], "error": f"{sample['path']} does not exist"}
        shutil.rmtree(scratch, ignore_errors=True)
        write_json(job["result_path"], results)  # after every sample: a killed job keeps what it finished


def check(solution: str, tests_path: str, timeout: float) -> int:
    """The agent's view: its solution against the public tests, in words."""
    with open(tests_path) as fh:
        job = {**json.load(fh), "timeout": timeout}
    job["protocol"] = protocol_of(job)
    if not os.path.isfile(solution):
        print(f"{solution} does not exist: write your solution there first")
        return 1
    scratch = make_scratch(os.path.join("/tmp", f"lcb-check-{os.getpid()}"))
    try:
        result = run_sample(solution, job, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    for test in result["tests"]:
        print(f"public test {test['test'] + 1}: {test['status']} ({test['seconds']:.2f} s)")
        if test["status"] != "passed":
            for key in ("error", "input", "expected", "output"):
                if key in test:
                    print(f"  {key}: {test[key]}")
    verdict = "all passed" if result["passed"] else "stopped at the first failure"
    print(f"{result['tests_passed']}/{result['tests_total']} public tests passed ({verdict})")
    return 0 if result["passed"] else 1


def main() -> int:
    here = os.path.dirname(os.path.abspath(__file__))
    parser = argparse.ArgumentParser(description="Run a solution against LiveCodeBench tests.")
    parser.add_argument("--job", help="harness mode: a job file")
    parser.add_argument("--solution", default=os.path.join(here, "solution.py"))
    parser.add_argument("--tests", default=os.path.join(here, "tests", "public_tests.json"))
    parser.add_argument("--timeout", type=float, default=6.0, help="seconds per test (whole seconds, rounded up)")
    args = parser.parse_args()
    if args.job:
        run_job(args.job)
        return 0
    return check(args.solution, args.tests, args.timeout)


if __name__ == "__main__":
    sys.exit(main())
