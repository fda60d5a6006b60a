"""Grading a predicted OUTPUT in a fresh container (network off), in two phases, in this order:

1. evaluation: the OUTPUT expression alone is evaluated by `nobody` (evaluate_output.py says how) before anything of
   the problem is in the container; then every process of `nobody` is killed (`kill -9 -1` as nobody, repeated
   until /proc shows none alive) and every file it left removed;
2. the program: only then the job (program, ground-truth input, dataset output, the evaluated value's plain-data
   encoding) goes into a folder only root can enter, and root runs the program on its input and compares
   (sandbox_check.py says how).
"""

from __future__ import annotations

import json
import re
import shlex
import uuid
from pathlib import Path

import docker.errors

from harness.sandbox import Limits, Sandbox
from tasks.cruxeval import evaluate_output, plain_data, sandbox_check
from tasks.cruxeval.dataset import Problem

EVALUATION_DIR = "/opt/cwm-eval-cruxeval"  # the evaluator and the expression: root's, read-only to nobody
PRIVATE_DIR = "/root/cwm-eval-cruxeval"  # root's alone: the evaluation's output, then the job
NOBODY = 65534
DEFAULT_TIMEOUT = 10.0  # seconds for the expression, and again for the program on its input (both take milliseconds)
KILL_ROUNDS = 50

ALIVE = (f"alive() {{ local n=0 f; for f in /proc/[0-9]*/status; do grep -qsE '^Uid:.*[[:space:]]{NOBODY}"
         "([[:space:]]|$)' \"$f\" && ! grep -qs '^State:[[:space:]]*Z' \"$f\" && n=$((n+1)); done; echo $n; }")
AS_NOBODY = f"setpriv --reuid={NOBODY} --regid={NOBODY} --clear-groups --no-new-privs"
EVALUATE = """set -u
umask 077
mkdir -p {private} && chown 0:0 {private} && chmod 700 {private} && chown -R 0:0 {evaluation} \
&& chmod 555 {evaluation} && chmod 444 {evaluation}/* && cd {evaluation} || exit 1
start=$(date +%s%N)
timeout -s KILL {timeout} {as_nobody} env -i PATH=/usr/local/bin:/usr/bin:/bin \
python3 -I -S evaluate_output.py expression.txt >{private}/evaluation.out 2>&1 </dev/null
echo "exit=$?"
echo "millis=$(( ($(date +%s%N) - start) / 1000000 ))"
{alive}
echo "left=$(alive)"
for round in $(seq {rounds}); do
  {as_nobody} bash -c 'kill -9 -1' 2>/dev/null
  [ "$(alive)" = 0 ] && break
  sleep 0.02
done
echo "alive=$(alive)"
echo "files=$(find / /dev/shm -xdev \\( -path /proc -o -path /sys \\) -prune -o -user {nobody} -prune -print \
-exec rm -rf {{}} + 2>/dev/null | wc -l)"
echo {separator}
tail -c {output_bytes} {private}/evaluation.out
"""
SEPARATOR = "=== the evaluation's output ==="  # what follows is the evaluation's: no number is read from it


def source(module) -> bytes:
    return Path(module.__file__).read_bytes()


class GradingError(RuntimeError):
    """The checker itself failed: an infrastructure error, or a program of the dataset that does not finish."""


def evaluation_timeout(timeout: float) -> int:
    return max(1, round(timeout))


def evaluation_script(timeout: float) -> str:
    return EVALUATE.format(private=PRIVATE_DIR, evaluation=EVALUATION_DIR, timeout=evaluation_timeout(timeout),
                           as_nobody=AS_NOBODY, alive=ALIVE, rounds=KILL_ROUNDS, nobody=NOBODY,
                           separator=shlex.quote(SEPARATOR), output_bytes=evaluate_output.FILE_BYTES)


def script_numbers(output: str) -> dict[str, int]:
    return {key: int(value) for key, value in re.findall(r"^(exit|millis|left|alive|files)=(\d+)$", output, re.M)}


def evaluation_result(output: str, numbers: dict[str, int], timeout: float) -> dict:
    """{evaluation: value | error | timeout, evaluation_error, value (the encoding)} from the evaluator's output."""
    exit_code, seconds = numbers["exit"], numbers["millis"] / 1000
    if exit_code == 137 and seconds >= evaluation_timeout(timeout):
        return {"evaluation": "timeout", "evaluation_error": f"the OUTPUT took more than {timeout:g} s to evaluate"}
    lines = [line for line in output.splitlines() if line.startswith(evaluate_output.MARKER)]
    try:
        result = json.loads(lines[-1][len(evaluate_output.MARKER):])
        if "value" in result:
            plain_data.decode(result["value"])  # refused here rather than in the checker
            return {"evaluation": "value", "value": result["value"]}
        return {"evaluation": "error", "evaluation_error": str(result["error"])[:400]}
    except (IndexError, ValueError, KeyError, TypeError, RecursionError):
        return {"evaluation": "error", "evaluation_error": f"the evaluation gave no value (exit {exit_code})"}


def evaluate(sandbox: Sandbox, expression: str, timeout: float) -> dict:
    """Phase 1: the expression's evaluation by nobody, then nobody's processes killed and files removed."""
    sandbox.write_files({f"{EVALUATION_DIR}/{name}": data for name, data in (
        ("evaluate_output.py", source(evaluate_output)),
        ("plain_data.py", source(plain_data)),
        ("expression.txt", expression.encode()))})
    run = sandbox.exec(evaluation_script(timeout), workdir="/")
    report, _, output = run.output.partition(SEPARATOR)
    numbers = script_numbers(report)
    if numbers.keys() != {"exit", "millis", "left", "alive", "files"} or numbers["alive"] != 0:
        raise GradingError(f"the expression's evaluation could not be cleaned up: {report[-800:]}")
    result = evaluation_result(output, numbers, timeout)
    return {**result, "evaluation_seconds": numbers["millis"] / 1000,
            "evaluation_leftovers": numbers["left"],  # nobody's processes alive after it ended, all killed since
            "evaluation_files_removed": numbers["files"]}


def run_program(sandbox: Sandbox, problem: Problem, predicted: list | None, timeout: float) -> dict:
    """Phase 2: the job in root's folder, the program run on its input, the comparison (sandbox_check.py)."""
    root = f"{PRIVATE_DIR}/job-{uuid.uuid4().hex[:12]}"
    job = {"code": problem.code, "input": problem.input, "output": problem.output, "predicted": predicted}
    sandbox.write_files({f"{root}/{name}": data for name, data in (
        ("check.py", source(sandbox_check)),
        ("plain_data.py", source(plain_data)),
        ("job.json", json.dumps(job).encode()))})
    quoted = shlex.quote(root)
    run = sandbox.exec(f"chown -R 0:0 {quoted} && chmod 700 {quoted} && timeout -k 2 {max(1, round(timeout))} "
                       "python3 -I -S check.py job.json result.json", workdir=root)
    if run.exit_code in (124, 137):
        raise GradingError(f"problem {problem.id}: the program did not finish on its input within {timeout:g} s")
    try:
        result = json.loads(sandbox.read_file(f"{root}/result.json"))
    except (docker.errors.NotFound, json.JSONDecodeError):
        raise GradingError(f"the checker left no result (exit {run.exit_code}): {run.output[-800:]}") from None
    if result.get("status") == "program_error":
        raise GradingError(f"problem {problem.id}: the program fails on its own input: {result.get('error')}")
    return result


def run_check(sandbox: Sandbox, problem: Problem, expression: str, timeout: float = DEFAULT_TIMEOUT) -> dict:
    evaluation = evaluate(sandbox, expression, timeout)
    result = run_program(sandbox, problem, evaluation.pop("value", None), timeout)
    return {**result, **evaluation, "predicted_expression": expression[:400]}


def grade(problem: Problem, expression: str, *, image: str, limits: Limits | None = None,
          timeout: float = DEFAULT_TIMEOUT) -> dict:
    """{passed, status, actual, predicted, gold_matches_execution, seconds} (the program's, sandbox_check.py) and
    {evaluation, evaluation_error, evaluation_seconds, evaluation_leftovers, evaluation_files_removed,
    predicted_expression} (the OUTPUT's), from a fresh container of `image`."""
    with Sandbox.start(image, phase="verify", workdir="/tmp", limits=limits, network=False) as sandbox:
        return run_check(sandbox, problem, expression, timeout)
