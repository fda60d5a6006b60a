"""A generated reproduction test, run and judged as CWM's test-generation environment judges it.

The protocol (cwm-agent.md §9, `swerl_testgen_tool.py` `eval_instance`): the test is a standalone script that prints
verdict lines. Before anything runs it must be non-empty, hold both the reproduced and the resolved marker, and parse
as Python. Then it is written to `test_issue.py` at the repository root of a fresh container of the instance image
(no patch applied), the shell is readied as the agent's was (`~/.bashrc`, the task's start lines, the git scrub),
and `python test_issue.py` runs for at most 120 s with stdout and stderr merged. It passes when that output holds the
reproduced marker and neither of the other two. Passing means only that the test reproduces the issue.

What counts as the test's output is what it wrote by the time its process ended (or was killed at the limit): every
process it left behind is killed before the output is read, so a background process cannot add a verdict line
later. The output is searched whole, inside the container, however long it is. Departures that change no verdict of
a test that behaves: the file is put in place rather than applied as a patch, stdin is /dev/null, and an image
without `python` (the demo's Debian base) runs the test with `python3`.

`run_test` works on any started container, so cross-execution (the test against a candidate patch) can reuse it.
"""

from __future__ import annotations

import ast
import secrets
import shlex
from pathlib import Path

from pydantic import BaseModel

REPRODUCED = "Issue reproduced"
RESOLVED = "Issue resolved"
OTHER = "Other issues"
MARKERS = (REPRODUCED, RESOLVED, OTHER)
TEST_FILE = "test_issue.py"
EVAL_TIMEOUT = 120  # CWM's eval_timeout for this environment
OUTPUT_TAIL = 65536  # bytes of the output kept in the log
SETUP_SLACK = 60  # seconds for the shell's start lines and the scrub, on top of the test's own limit


class TestRun(BaseModel):
    """One run of a test in a container: which verdict lines its output holds, and how it ended."""

    __test__ = False  # not a pytest class

    markers: dict[str, bool]
    exit_code: int | None  # None: the test's shell did not record one (it was killed, or killed its shell)
    timed_out: bool  # killed at the limit (or the whole run outlived it)
    output_bytes: int
    output_tail: str


def static_problem(test: str) -> str | None:
    """Why the test fails before it runs, in CWM's order (empty, markers, syntax); None when it may run."""
    if not test.strip():
        return "empty test"
    if REPRODUCED not in test or RESOLVED not in test:
        return f"the test does not hold both {REPRODUCED!r} and {RESOLVED!r}"
    try:
        ast.parse(test)
    except SyntaxError as exc:
        return f"syntax error in the test: {exc.msg} at line {exc.lineno}, column {exc.offset}"
    except (ValueError, RecursionError, MemoryError) as exc:  # null bytes, absurd nesting: it cannot run either
        return f"the test does not parse: {type(exc).__name__}"
    return None


def run_script(workdir: str, startup: str, scratch: str, timeout: int) -> str:
    """The shell script that readies the container as the agent's shell was readied, then runs the test."""
    from tasks.swebench.suite import SCRUB_GIT

    lines = ["source ~/.bashrc >/dev/null 2>&1"]
    if startup.strip():
        lines.append(f"( {startup}\n) >/dev/null 2>&1")
    lines += [f"cd {shlex.quote(workdir)} || exit 1",
              f"( {SCRUB_GIT}) >/dev/null 2>&1",
              f"mkdir -p {scratch}",
              "py=$(command -v python || command -v python3)",
              f'timeout -s KILL {timeout} "$py" {TEST_FILE} </dev/null >{scratch}/out 2>&1',
              f"echo $? >{scratch}/rc",
              "kill -9 -1 2>/dev/null"]  # whatever the test left running, at once (PID 1 and this shell survive)
    return "\n".join(lines) + "\n"


def read_script(scratch: str) -> str:
    """Kill what is left (again: the test may have killed the shell above), then report the markers and the output."""
    checks = " ".join(f"$(grep -a -q -F -e {shlex.quote(marker)} {scratch}/out 2>/dev/null && echo 1 || echo 0)"
                      for marker in MARKERS)
    return (f"kill -9 -1 2>/dev/null\n"
            f'echo "{checks} $(cat {scratch}/rc 2>/dev/null || echo none) $(stat -c %s {scratch}/out 2>/dev/null || '
            f'echo 0)"\n'
            f"tail -c {OUTPUT_TAIL} {scratch}/out 2>/dev/null\n")


def run_test(container, test: str, workdir: str = "/testbed", startup: str = "",
             timeout: int = EVAL_TIMEOUT) -> TestRun:
    """Run `test` as `test_issue.py` in `workdir` of a started container (the instance image, patched or not)."""
    from swebench.harness.docker_utils import exec_run_with_timeout

    from tasks.swebench.containers import put_files

    scratch = f"/tmp/.repro-{secrets.token_hex(8)}"  # not guessable by the test
    put_files(container, {f"{workdir.rstrip('/')}/{TEST_FILE}": test.encode("utf-8", errors="replace")})
    command = f"bash -c {shlex.quote(run_script(workdir, startup, scratch, timeout))}"
    _, outlived, _ = exec_run_with_timeout(container, command, timeout + SETUP_SLACK)
    result = container.exec_run(["bash", "-c", read_script(scratch)])
    head, _, tail = result.output.decode(errors="replace").partition("\n")
    fields = head.split()
    if len(fields) != 5:
        raise RuntimeError(f"reading the test's output failed: {head[:200]!r}")
    flags, code, size = fields[:3], fields[3], fields[4]
    exit_code = int(code) if code.lstrip("-").isdigit() else None
    return TestRun(markers={marker: flag == "1" for marker, flag in zip(MARKERS, flags)}, exit_code=exit_code,
                   timed_out=outlived or exit_code == 137, output_bytes=int(size) if size.isdigit() else 0,
                   output_tail=tail)


def judge(run: TestRun) -> str | None:
    """Why the run fails CWM's criterion, or None when it reproduces the issue."""
    if not run.markers[REPRODUCED]:
        return f"the test did not print {REPRODUCED!r} on the unpatched repository"
    also = [marker for marker in (RESOLVED, OTHER) if run.markers[marker]]
    if also:
        return f"the test also printed {' and '.join(repr(marker) for marker in also)} on the unpatched repository"
    return None


def write_logs(log_dir: Path, test: str, run: TestRun | None) -> None:
    log_dir.mkdir(parents=True, exist_ok=True)
    (log_dir / TEST_FILE).write_text(test, errors="replace")
    if run is not None:
        (log_dir / "test_output.txt").write_text(run.output_tail, errors="replace")
