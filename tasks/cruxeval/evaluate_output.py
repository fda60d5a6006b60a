"""Runs in the grading container, first, before the program or the job is there, as an unprivileged user (nobody),
from a root-owned read-only folder: `python3 -I -S evaluate_output.py EXPRESSION_FILE` (grader.py).

The file holds the predicted OUTPUT expression, the source text of the model's `assert f(...) == OUTPUT` right-hand
side. It is evaluated on its own, as `(OUTPUT)`, with only Python's builtins in its namespace (no `f`, no program),
under address-space, file-size and process-count bounds (the grader adds the timeout and kills whatever it leaves
behind). The last line written is `CRUXEVAL-EVALUATION {json}`: {"value": its plain-data encoding (plain_data.py)}
or {"error": why there is none}. Whatever else the expression prints, or forges, cannot help it: nothing of the problem
is in the container yet, so a forged line is no better than writing the value itself.
"""

from __future__ import annotations

import builtins
import contextlib
import io
import json
import os
import resource
import sys

MARKER = "CRUXEVAL-EVALUATION "
MEMORY_BYTES = 1 << 30  # address space: CruxEval outputs are small; an exhausting expression gets MemoryError
FILE_BYTES = 16 << 20  # bounds what it (or a process it starts) can write, this file's output included
PROCESSES = 512  # the user's processes (counted host-wide): a fork bomb stops there, and is killed after


def bound_resources() -> None:
    for limit, amount in ((resource.RLIMIT_AS, MEMORY_BYTES), (resource.RLIMIT_FSIZE, FILE_BYTES),
                          (resource.RLIMIT_NPROC, PROCESSES)):
        resource.setrlimit(limit, (amount, amount))  # hard limits too: the expression cannot raise them


def short(exc: BaseException, limit: int = 300) -> str:
    try:
        text = f"{type(exc).__name__}: {exc}"
    except Exception:  # noqa: BLE001 - an exception whose __str__ fails
        text = f"{type(exc).__name__} (cannot be printed)"
    return text if len(text) <= limit else text[:limit] + "..."


def evaluate(source: str):
    code = compile(f"(\n{source}\n)", "<OUTPUT>", "eval")  # parenthesised: `1 or True` is the value 1
    sink = io.StringIO()
    with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
        return eval(code, {"__builtins__": builtins})


def main() -> None:
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # -I leaves the script's folder out
    from plain_data import NotPlainData, encode

    bound_resources()
    with open(sys.argv[1]) as handle:
        source = handle.read()
    try:
        result = {"value": encode(evaluate(source))}
    except NotPlainData as exc:
        result = {"error": f"the OUTPUT value is not plain data: {exc}"}
    except BaseException as exc:  # noqa: BLE001 - SystemExit and KeyboardInterrupt are failures of the value too
        result = {"error": short(exc)}
    sys.__stdout__.write("\n" + MARKER + json.dumps(result) + "\n")
    sys.__stdout__.flush()


if __name__ == "__main__":
    main()
