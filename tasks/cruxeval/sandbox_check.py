"""Runs inside the grading container as root, after the predicted OUTPUT's evaluation and the killing of everything
it left (grader.py): `python3 -I -S check.py JOB.json RESULT.json` in a folder only root can enter (stdlib only).

The job holds the problem (code, the ground-truth input, the dataset's output) and `predicted`: the plain-data
encoding of the value the model's OUTPUT expression evaluated to (plain_data.py), or null when it gave none. The
program is run, `f` called on the ground-truth input, and its value compared with the decoded prediction by
`plain_data.same`: `truth == (OUTPUT)`, Python's equality as in CruxEval's assertion. No text of the model is executed here.
The result goes to RESULT.json; the program's own output is discarded.

How this differs from CruxEval's own grader, which executes `{program}\\nassert {gold output} == {generation}`
in one namespace (3 s timeout) and fails a generation holding the text `f({input})`:
- the OUTPUT is evaluated on its own, parenthesised, without the program: `'x' or True` is the value 'x', not a
  passing assertion; `f(...)`, `sys.exit(0)`, or a name the program defines or imports (the official namespace
  has them: `string.digits` after `import string`) gives no value and fails;
- the prediction must be plain data (exact builtin types): an object whose `__eq__` says True, or an int subclass,
  is not; equality is then Python's, as in the official assertion (`1` matches `True` and `1.0`);
- the truth is the program's value on the ground-truth input (the dataset's output is only cross-checked:
  `gold_matches_execution`), where the official assertion compares with the dataset's output text;
- an OUTPUT with any call of `f` in it is refused when parsed (answer.py), where the official grader looks for the
  text `f(INPUT)`; the bounds: 100,000 characters of OUTPUT, 1 GiB of address space, plain data of at most 100
  levels and 100,000 values, and the suite's timeout (10 s) for the OUTPUT and again for the program (official: 3 s
  for both together).
"""

from __future__ import annotations

import ast
import contextlib
import io
import json
import os
import sys
import time


def safe_repr(value, limit: int = 400) -> str:
    try:
        text = repr(value)
    except Exception:  # noqa: BLE001 - a value too deep or broken to print
        return f"<a {type(value).__name__} that cannot be printed>"
    return text if len(text) <= limit else text[:limit] + "..."


def run_program(code: str, arguments: str):
    namespace = {"__name__": "__cruxeval__"}
    sink = io.StringIO()
    with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
        exec(compile(code, "<program>", "exec"), namespace)
        return eval(compile(f"f({arguments})", "<input>", "eval"), namespace)


def check(job: dict) -> dict:
    from plain_data import NotPlainData, decode, same

    started = time.monotonic()
    try:
        actual = run_program(job["code"], job["input"])
    except BaseException as exc:  # noqa: BLE001 - SystemExit too: the program is the dataset's
        return {"status": "program_error", "error": f"{type(exc).__name__}: {safe_repr(exc)}", "passed": False}
    try:
        gold_matches = same(actual, ast.literal_eval(job["output"]))
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        gold_matches = None  # the dataset's output is not a literal: nothing to cross-check
    try:
        predicted = decode(job["predicted"]) if job["predicted"] is not None else None
        usable = job["predicted"] is not None
    except NotPlainData:
        predicted, usable = None, False
    passed = usable and same(actual, predicted)
    status = "passed" if passed else "wrong_output" if usable else "prediction_error"
    return {"status": status, "passed": passed, "actual": safe_repr(actual),
            "predicted": safe_repr(predicted) if usable else None, "gold_matches_execution": gold_matches,
            "seconds": round(time.monotonic() - started, 4)}


def main() -> None:
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # -I leaves the script's folder out
    job_path, result_path = sys.argv[1], sys.argv[2]
    with open(job_path) as handle:
        job = json.load(handle)
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    result = check(job)
    with open(result_path, "w") as handle:
        json.dump(result, handle)


if __name__ == "__main__":
    main()
