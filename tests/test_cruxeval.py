"""CruxEval-O: loading in the hub's schema (through the hub's own `datasets.load_dataset` call), answer parsing, the
OUTPUT expression's sandboxed evaluation, and both prompt styles end to end through the CLI against the scripted
server, graded in real containers; honest non-literal answers pass, and hostile answers that would pass CruxEval's
own grader, or aim at the evaluation, fail here."""

from __future__ import annotations

import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd
import pytest
from scripted_server import ScriptedServer
from test_cli_errors import assert_one_line_error

from harness.errors import UserError
from harness.records import Outcome, TrialResult
from harness.traces.format import END_OF_TEXT, START_MARKER, TRACE_CONTEXT_START
from harness.traces.tracer import trace_call
from tasks.cruxeval import dataset as crux_dataset
from tasks.cruxeval.answer import parse_answer
from tasks.cruxeval.dataset import Problem, Selection, load_problems
from tasks.cruxeval.grader import PRIVATE_DIR, GradingError, grade
from tasks.cruxeval.prompts import TraceStyle, entry_name

ROOT = Path(__file__).parent.parent
SAMPLE = ROOT / "tasks" / "cruxeval" / "sample.jsonl"
CWM_FIXTURE = Path(__file__).parent / "fixtures" / "cwm_source"
TASK = "sample_0"  # f('stone') == 'ENOTS'


def cwm_eval(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], capture_output=True, text=True, timeout=120,
                          cwd=ROOT)


def answer(assertion: str, thought: str = "Reverse, then upper case.") -> str:
    return f"<think>\n{thought}\nassert f('stone') == 'draft'\n</think>\n```python\n{assertion}\n```"


CORRECT = answer("assert f('stone') == 'ENOTS'")
NON_LITERAL = answer("assert f('stone') == 'enots'.upper()")
WRONG = answer("assert f('stone') == 'enots'")
OFF_FORMAT = "<think>\nHmm.\n</think>\nThe function returns ENOTS."
# each would pass CruxEval's own grader (`exec(code + "assert <gold> == <generation>")`) or fool a naive one
HOSTILE = {
    "always true": answer("assert True or f('stone') == 'x'"),
    "or true": answer("assert f('stone') == 'x' or True"),
    "eq patched": answer("class Any:\n    def __eq__(self, other):\n        return True\nassert f('stone') == Any()"),
    "exit": answer("import sys; sys.exit(0)\nassert f('stone') == sys.exit(0)"),
    "print pass": "<think>\nx\n</think>\n```python\nprint('PASS')\n```",
    "lambda": answer("f = lambda *a: 'WRONG'\nassert f('stone') == 'WRONG'"),
    "calls f": answer("assert f('stone') == f('stone')"),
    "reads disk": answer("assert f('stone') == open('/var/tmp/cwm-eval-cruxeval/job.json').read()"),
}


def rows_in_hub_schema() -> list[dict]:
    return [json.loads(line) for line in SAMPLE.read_text().splitlines()]


def test_sample_file_holds_ten_problems_whose_outputs_are_their_programs_values():
    rows = rows_in_hub_schema()
    assert len(rows) == 10 and all(set(row) == {"code", "input", "output", "id"} for row in rows)
    for row in rows:
        namespace: dict = {}
        exec(row["code"], namespace)
        assert repr(eval(f"f({row['input']})", namespace)) == row["output"], row["id"]


def test_hub_loading_call_reads_a_local_copy_laid_out_like_the_hub(tmp_path, monkeypatch):
    """`--dataset DIR` goes through the same `datasets.load_dataset(name, split=...)` call as the hub's id."""
    hub = tmp_path / "cruxeval"
    hub.mkdir()
    (hub / "test.jsonl").write_text(SAMPLE.read_text())
    called = []
    real = crux_dataset._load_hub
    monkeypatch.setattr(crux_dataset, "_load_hub", lambda name, split: called.append(name) or real(name, split))
    problems = load_problems(Selection(dataset=str(hub), limit=3))
    assert called == [str(hub)]
    assert [p.id for p in problems] == ["sample_0", "sample_1", "sample_2"]
    assert problems[0] == Problem(**rows_in_hub_schema()[0])
    parquet = tmp_path / "test.parquet"
    pd.DataFrame(rows_in_hub_schema()).to_parquet(parquet)
    assert [p.id for p in load_problems(Selection(dataset=str(parquet), task_ids=["sample_9"]))] == ["sample_9"]
    broken = tmp_path / "broken.jsonl"
    broken.write_text(json.dumps({"code": "def f(): pass", "id": "x"}) + "\n")
    with pytest.raises(UserError, match="lacks input, output"):
        load_problems(Selection(dataset=str(broken)))


def test_the_output_expression_of_the_last_assertion_is_taken_unless_it_calls_f():
    assert parse_answer(CORRECT).output == "'ENOTS'" and parse_answer(CORRECT).reasoning_closed
    assert parse_answer("assert f('stone') == 'ENOTS'").reasoning_closed is False  # lenient: noted, still parsed
    assert parse_answer("`assert 'ENOTS' == f('stone')`").output == "'ENOTS'"
    assert parse_answer(answer("assert f('a') == [\n    1,\n    (2, {3: None}),\n]")).output.startswith("[")
    assert parse_answer(NON_LITERAL).output == "'enots'.upper()"
    assert parse_answer(answer("assert f('a') == 'a' * 3")).output == "'a' * 3"
    assert parse_answer(answer("assert f('a') == (1 or True)")).output == "1 or True"  # evaluated as (1 or True)
    assert parse_answer(OFF_FORMAT).output is None
    for output in ("f('stone')", "f(*['stone'])", "f('sto' + 'ne').upper()", "[f(x) for x in ['stone']][0]"):
        parsed = parse_answer(answer(f"assert f('stone') == {output}"))
        assert parsed.output is None and parsed.note, output
        assert "calls f" in parsed.note or "one call of f" in parsed.note, output
    assert parse_answer(answer("assert f('stone') == 'x' * 100_001")).output == "'x' * 100_001"
    assert "longer than" in parse_answer(answer(f"assert f('stone') == '{'x' * 100_001}'")).note
    parsed = {name: parse_answer(reply).output for name, reply in HOSTILE.items()}
    assert parsed == {"always true": None, "or true": None, "eq patched": "Any()", "exit": "sys.exit(0)",
                      "print pass": None, "lambda": "'WRONG'", "calls f": None,
                      "reads disk": "open('/var/tmp/cwm-eval-cruxeval/job.json').read()"}  # graded: all fail


def test_grader_runs_the_real_program_on_the_real_input(base_image):
    problem = Problem(**rows_in_hub_schema()[5])  # (5, 6, 7, 8) -> (5, 8, 6, 7)
    assert grade(problem, "(5, 8, 6, 7)", image=base_image)["passed"]
    wrong = grade(problem, "[5, 8, 6, 7]", image=base_image)  # a list is not the tuple
    assert not wrong["passed"] and wrong["actual"] == "(5, 8, 6, 7)" and wrong["gold_matches_execution"]
    with pytest.raises(GradingError, match="fails on its own input"):
        grade(Problem(id="bad", code="def f(x):\n    return 1 / x", input="0", output="0"), "0", image=base_image)


PROBE_CODE = """import os
def f(x):
    alive = False
    for pid in filter(str.isdigit, os.listdir('/proc')):
        try:
            status = open(f'/proc/{pid}/status').read()
        except OSError:
            continue
        uids = next(line for line in status.splitlines() if line.startswith('Uid:')).split()[1:]
        alive = alive or ('65534' in uids and 'State:\\tZ' not in status)
    planted = sorted(p for p in ('/tmp/planted', '/tmp/sitecustomize.py') if os.path.exists(p))
    return alive, planted
"""
# what the program sees: a process of the evaluation's user still alive, files it planted
PROBE = Problem(id="probe", code=PROBE_CODE, input="0", output="(False, [])")
STONE = Problem(**json.loads(SAMPLE.read_text().splitlines()[0]))  # f('stone') == 'ENOTS'
POSITIVE = Problem(id="positive", code="def f(x):\n    return x > 0", input="5", output="True")
PLANTER_LOOP = ("while :; do : > /tmp/planted; echo 'import os' > /tmp/sitecustomize.py; "
                f"for d in {PRIVATE_DIR}/job-* /var/tmp/cwm-eval-cruxeval/*; do "
                """echo '{"status": "passed", "passed": true}' > "$d/result.json"; done; sleep 0.05; done""")
READ_JOB = ("eval(__import__('json').load(open([*__import__('glob').glob('/root/**/job.json', recursive=True), "
            "*__import__('glob').glob('/var/tmp/**/job.json', recursive=True)][0]))['output'])")


def grade_all(cases: dict[str, tuple[Problem, str]], image: str, timeout: float = 10.0) -> dict[str, dict]:
    """Each case graded in its own fresh container, a few at a time."""
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = {name: pool.submit(grade, problem, expression, image=image, timeout=timeout)
                   for name, (problem, expression) in cases.items()}
        return {name: future.result() for name, future in futures.items()}


def test_honest_non_literal_outputs_pass_and_equality_is_pythons(base_image):
    repeat = Problem(id="repeat", code="def f(s, n):\n    return s * n", input="'a', 3", output="'aaa'")
    zeros = Problem(id="zeros", code="def f(n):\n    return [0] * n", input="4", output="[0, 0, 0, 0]")
    ranged = Problem(id="ranged", code="def f(n):\n    return tuple(range(n))", input="3", output="(0, 1, 2)")
    graded = grade_all({"repeat": (repeat, "'a' * 3"), "zeros": (zeros, "[0] * 4"),
                        "ranged": (ranged, "tuple(range(3))"), "or": (POSITIVE, "'x' or True"),
                        "int for bool": (POSITIVE, "1"), "bool": (POSITIVE, "True"),
                        "float for int": (zeros, "[0.0] * 4"), "list for tuple": (ranged, "[0, 1, 2]")}, base_image)
    for name in ("repeat", "zeros", "ranged", "bool", "int for bool", "float for int"):  # as CruxEval's `==`
        assert graded[name]["passed"] and graded[name]["evaluation"] == "value", (name, graded[name])
    assert graded["repeat"]["predicted"] == "'aaa'" and graded["repeat"]["predicted_expression"] == "'a' * 3"
    for name in ("or", "list for tuple"):  # CruxEval's `assert True == 'x' or True` would pass: parenthesised here
        assert graded[name]["status"] == "wrong_output" and not graded[name]["passed"], (name, graded[name])
    assert graded["or"]["predicted"] == "'x'" and graded["or"]["actual"] == "True"


def test_hostile_outputs_fail_in_the_evaluation(base_image):
    cases = {
        "eq always true": (STONE, "type('A', (), {'__eq__': lambda s, o: True})()"),
        "int subclass": (STONE, "type('I', (int,), {'__eq__': lambda s, o: True, '__hash__': int.__hash__})(0)"),
        "str subclass of the truth": (STONE, "type('S', (str,), {})('ENOTS')"),
        "reads the job": (STONE, READ_JOB),
        "exits": (STONE, "__import__('sys').exit(0)"),
        "calls f": (STONE, "f('stone')"),
        "calls f with star": (STONE, "f(*['stone'])"),
        "exhausts memory": (STONE, "len(b'x' * (3 << 29))"),
        "exhausts recursion": (STONE, "(lambda g: g(g))(lambda g: g(g))"),
        "too deep": (STONE, "__import__('functools').reduce(lambda a, _: [a], range(10_000), [])"),
        "sleeps": (STONE, "__import__('time').sleep(60)"),
        "kills itself": (STONE, "__import__('os').kill(__import__('os').getpid(), 9)"),
        "background writer": (PROBE, f"(bool(__import__('subprocess').Popen({['sh', '-c', PLANTER_LOOP]!r}, "
                                     "start_new_session=True)), ['/tmp/planted', '/tmp/sitecustomize.py'])"),
    }
    graded = grade_all(cases, base_image, timeout=3)
    why = {name: result.get("evaluation_error") or "" for name, result in graded.items()}
    assert [name for name, result in graded.items() if result["passed"]] == []
    for name in ("eq always true", "int subclass", "str subclass of the truth", "too deep"):
        assert graded[name]["status"] == "prediction_error" and "not plain data" in why[name], (name, graded[name])
    assert "nested deeper" in why["too deep"] and "type S" in why["str subclass of the truth"]
    assert why["reads the job"].startswith("IndexError")  # no job.json anywhere it can read: not there yet
    assert why["exits"] == "SystemExit: 0"
    assert "name 'f' is not defined" in why["calls f"] and "name 'f' is not defined" in why["calls f with star"]
    assert why["exhausts memory"].startswith("MemoryError") and why["exhausts recursion"].startswith("RecursionError")
    assert graded["sleeps"]["evaluation"] == "timeout" and why["kills itself"].endswith("no value (exit 137)")
    writer = graded["background writer"]  # its loop was killed before the program ran: nothing alive, nothing left
    assert writer["evaluation"] == "value" and writer["evaluation_leftovers"] >= 1, writer
    assert writer["status"] == "wrong_output" and writer["actual"] == "(False, [])", writer
    assert all(result["actual"] == "'ENOTS'" for name, result in graded.items() if name != "background writer")


def run(tmp_path: Path, run_id: str, replies: list[str], *extra: str) -> tuple[Path, list[dict]]:
    with ScriptedServer(replies) as server:
        proc = cwm_eval("run", "cruxeval", "--dataset", str(SAMPLE), "--task", TASK, "--samples", str(len(replies)),
                        "--run-id", run_id, "--output", str(tmp_path), "--model-url", server.url,
                        "--temperature", "0.2", *extra)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "pass@1" in proc.stdout and "95% interval" in proc.stdout
        return tmp_path / run_id, server.requests


def results(run_dir: Path) -> list[TrialResult]:
    return [TrialResult.model_validate_json(p.read_text()) for p in sorted(run_dir.glob("trials/*/*/result.json"))]


def test_plain_style_end_to_end_correct_wrong_off_format_and_hostile(tmp_path, base_image):
    replies = [CORRECT, NON_LITERAL, WRONG, OFF_FORMAT, *HOSTILE.values()]
    run_dir, requests = run(tmp_path, "crux-plain", replies, "--cwm-source", str(CWM_FIXTURE))
    assert requests[0]["messages"][0]["content"].startswith("FIXTURE BASE")  # CWM's system prompt, from the source
    assert "assert f('stone') == ??" in requests[0]["messages"][1]["content"]
    assert requests[0]["temperature"] == 0.2
    trials = results(run_dir)
    resolved = [t for t in trials if t.outcome is Outcome.RESOLVED]
    assert len(trials) == len(replies) and sorted(t.patch for t in resolved) == ["'ENOTS'", "'enots'.upper()"]
    wrong = next(t for t in trials if t.patch == "'enots'")
    assert wrong.verifier["status"] == "wrong_output" and wrong.verifier["actual"] == "'ENOTS'"
    lambda_trial = next(t for t in trials if t.patch == "'WRONG'")  # f redefined: the real f is called anyway
    assert lambda_trial.outcome is Outcome.UNRESOLVED and lambda_trial.verifier["actual"] == "'ENOTS'"
    assert all(t.outcome is Outcome.UNRESOLVED and t.reason for t in trials if t.patch is None)
    exits = next(t for t in trials if t.patch == "sys.exit(0)")  # evaluated alone: no `sys` there
    assert exits.verifier["status"] == "prediction_error" and "NameError" in exits.reason
    metrics = json.loads((run_dir / "metrics.json").read_text())["overall"]
    assert metrics["pass@1"] == pytest.approx(2 / len(replies)) and metrics["ci95"][0] < metrics["pass@1"]
    run_info = json.loads((run_dir / "run.json").read_text())["cruxeval"]
    assert "FIXTURE" not in run_info["prompt_texts"]["origin"] and not run_info["prompt_texts"]["comparable"]
    assert all("not comparable" in t.config for t in trials)

    board = json.loads(cwm_eval("report", "--results", str(tmp_path), "--format", "json").stdout)["leaderboard"]
    row = next(r for r in board if r["suite"] == "cruxeval")
    assert row["pass@1"] == pytest.approx(200 / len(replies)) and row["ci95_low"] < row["pass@1"] < row["ci95_high"]

    with ScriptedServer([]) as server:  # resume: every sample is finished, nothing is asked again
        proc = cwm_eval("run", "cruxeval", "--dataset", str(SAMPLE), "--task", TASK, "--samples", str(len(replies)),
                        "--run-id", "crux-plain", "--output", str(tmp_path), "--model-url", server.url,
                        "--cwm-source", str(CWM_FIXTURE), "--temperature", "0.2")
        assert proc.returncode == 0, proc.stderr
        assert server.requests == []


def predicted_trace(returned: str | None = None) -> str:
    """A trace of the entry wrapper as the model would write it: the real one, its return value replaced."""
    problem = Problem(**rows_in_hub_schema()[0])
    texts = TraceStyle()
    real = trace_call(texts.source(problem), entry_name(problem), [])
    if returned is not None:
        real.frames[-1].value = returned
    return real.render()


def test_trace_style_reads_the_output_off_the_entrys_return_frame(tmp_path, base_image):
    replies = [predicted_trace(), predicted_trace("'enots'"), predicted_trace("f('stone')"), "no trace at all"]
    run_dir, requests = run(tmp_path, "crux-trace", replies, "--prompt-style", "trace")
    prompt = requests[0]["prompt"][0]
    assert prompt.startswith("<|begin_of_text|>" + TRACE_CONTEXT_START) and requests[0]["stop"] == [END_OF_TEXT]
    assert f"def cruxeval_entry():{START_MARKER}\n    return f('stone')\n" in prompt
    by_value = {t.verifier.get("assertion", "none").rsplit("-> ", 1)[-1]: t for t in results(run_dir)}
    assert by_value["'ENOTS'"].outcome is Outcome.RESOLVED
    assert by_value["'enots'"].outcome is Outcome.UNRESOLVED and by_value["'enots'"].verifier["actual"] == "'ENOTS'"
    assert "not a Python literal" in by_value["f('stone')"].reason  # never executed
    assert "never returns" in by_value["none"].reason


def test_options_of_other_suites_are_refused_in_one_line():
    assert_one_line_error(cwm_eval("run", "cruxeval", "--dataset", str(SAMPLE), "--prompt-style", "poem"),
                          "unknown --prompt-style 'poem'")
    assert_one_line_error(cwm_eval("run", "livecodebench", "--prompt-style", "trace"),
                          "suite livecodebench does not use --prompt-style")
