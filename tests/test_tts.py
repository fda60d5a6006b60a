"""Test-time scaling on the demo suite: candidate patches (the real gold patches and wrong ones) and generated tests
(good, bad and hostile ones), cross-executed in real containers, selected, and graded by swebench's code.

The patch run and the testgen run are written as fixture runs (the result folders the runner writes); everything
after that is the real `cwm-eval tts` command.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.errors import UserError
from harness.records import ExitStatus, Outcome, TrialResult, Usage
from harness.store import RunStore
from tasks import DEMO_PATH
from test_cli_errors import assert_one_line_error

CALC, TEXT = "demo__calc-1", "demo__textutils-2"


def gold(task: str) -> str:
    return (DEMO_PATH / "tasks" / task / "gold.patch").read_text()


WRONG = {  # patches that apply and do not resolve
    CALC: gold(CALC).replace("return (ordered[middle - 1] + ordered[middle]) / 2", "return ordered[middle - 1]"),
    TEXT: gold(TEXT).replace("return separator.join(words)", "return separator.join(words).upper()"),
}
# per task: (patch, resolved by the patch run's grading, completion tokens); the wrong patch comes first, twice,
# and costs fewer tokens: majority voting and "first" pick it, only the tests can pick the gold one
CANDIDATES = {task: [(WRONG[task], False, 500), (gold(task), True, 900), (WRONG[task], False, 600)]
              for task in (CALC, TEXT)}

from test_testgen import GOOD  # noqa: E402 - the testgen scenario's good test

GOOD_TOO = GOOD.replace("median([1, 2, 3, 4])", "median([20, 10])").replace("2.5", "15")
# the unpatched repo gives 3, the gold patch 2.5, the wrong patch 2. Each hostile test below would make the wrong
# patch win (it would pass the wrong patch and tie with GOOD, and majority then picks the wrong one) if the harness
# let it: a test that passes on the unpatched repo, one printing both lines there, one that hangs after printing
# the resolved line, one that needs the network, one that relies on files left by an earlier cell.
LENIENT = """from calc import median
print("Issue reproduced" if median([1, 2, 3, 4]) == 2.5 else "Issue resolved")
"""
BOTH = """from calc import median
value = median([1, 2, 3, 4])
if value == 3:
    print("Issue reproduced")
    print("Issue resolved")
elif value == 2:
    print("Issue resolved")
else:
    print("Other issues")
"""
HANG = """import time
from calc import median
if median([1, 2, 3, 4]) == 2:
    print("Issue resolved", flush=True)
    time.sleep(600)
print("Issue reproduced")
"""
NETWORK = """import os, socket
from calc import median
interfaces = sorted(os.listdir("/sys/class/net"))
try:
    socket.create_connection(("example.com", 80), timeout=2).close()
    online = True
except OSError as exc:
    online = False
print("interfaces", interfaces, "online", online)
print("Issue resolved" if median([1, 2, 3, 4]) == 2 and (online or interfaces != ["lo"]) else "Issue reproduced")
"""
LEAK = """import os, pathlib
from calc import median
leaked = os.path.exists("/tmp/tts-leak") or os.path.exists("/root/tts-leak")
for target in ["/tmp/tts-leak", "/root/tts-leak", "HOST_PATH"]:
    try:
        pathlib.Path(target).parent.mkdir(parents=True, exist_ok=True)
        pathlib.Path(target).write_text("left behind")
    except OSError:
        pass
print("Issue resolved" if leaked and median([1, 2, 3, 4]) == 2 else "Issue reproduced")
"""
BROKEN = "print('Issue reproduced'\nprint('Issue resolved')\n"


def write_patch_run(root: Path, run_id: str, candidates: dict, suite: str = "demo") -> None:
    store = RunStore(root, run_id)
    store.write_run({"run_id": run_id, "model": "scripted", "agent": "cwm",
                     "config": {"suite": suite, "dataset": None, "concurrency": 4}})
    for task, rows in candidates.items():
        for attempt, (patch, resolved, tokens) in enumerate(rows):
            store.write_result(TrialResult(
                run_id=run_id, suite=suite, task_id=task, attempt=attempt, agent="cwm", model="scripted",
                config="cwm T=1", labels={"repo": task}, outcome=Outcome.RESOLVED if resolved else Outcome.UNRESOLVED,
                exit_status=ExitStatus.SUBMITTED, usage=Usage(completion_tokens=tokens), patch=patch,
                started_at=0.0, ended_at=1.0, wall_seconds=1.0))


def write_test_run(root: Path, run_id: str, tests: dict[str, list[str]], suite: str = "demo") -> None:
    """A testgen run as the runner leaves it: result.json and generated_test.py per trial."""
    store = RunStore(root, run_id)
    store.write_run({"run_id": run_id, "model": "scripted", "agent": "cwm",
                     "config": {"suite": suite, "dataset": None, "concurrency": 4, "scenario": "testgen"}})
    for task, codes in tests.items():
        for attempt, code in enumerate(codes):
            store.write_result(TrialResult(
                run_id=run_id, suite=suite, task_id=task, attempt=attempt, agent="cwm", model="scripted",
                config="cwm T=1 scenario=testgen", outcome=Outcome.RESOLVED, exit_status=ExitStatus.SUBMITTED,
                started_at=0.0, ended_at=1.0, wall_seconds=1.0))
            (store.trial_dir(task, attempt) / "generated_test.py").write_text(code)


def tts_command(root: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "harness.cli", "tts", "demo", "--output", str(root), *args]


def cwm_eval_tts(root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(tts_command(root, *args), capture_output=True, text=True, timeout=300)


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    """One tts run over both tasks: calc has a good test and five hostile ones, textutils no test at all."""
    root = tmp_path_factory.mktemp("tts")
    host_path = root / "escaped" / "file"
    tests = [GOOD, LENIENT, BOTH, HANG, NETWORK, LEAK.replace("HOST_PATH", str(host_path)), BROKEN]
    write_patch_run(root, "patches", CANDIDATES)
    write_test_run(root, "tests", {CALC: tests})
    proc = cwm_eval_tts(root, "--patches", "patches", "--tests", "tests", "--run-id", "tts", "--test-timeout", "3")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    summary = json.loads((root / "tts" / "tts.json").read_text())
    return {"root": root, "proc": proc, "summary": summary, "host_path": host_path,
            "tasks": {t["task_id"]: t for t in summary["tasks"]}}


def cell(task: dict, test: int, patch) -> dict | None:
    return next((c for c in task["matrix"] if c["test_attempt"] == test and c["patch_attempt"] == patch), None)


def test_selection_picks_the_correct_patch_among_wrong_ones(hostile):
    calc = hostile["tasks"][CALC]
    assert calc["selected_attempt"] == 1 and calc["selected_resolved"] is True
    scores = {s["representative"]: (s["passed"], s["votes"]) for s in calc["scores"]}
    assert scores == {1: (1, 1), 0: (0, 2)}  # identical wrong patches are one candidate with two votes
    predictions = {p["instance_id"]: p for p in read_jsonl(hostile["root"] / "tts" / "predictions.jsonl")}
    assert predictions[CALC]["model_patch"] == gold(CALC)
    assert set(predictions[CALC]) >= {"instance_id", "model_name_or_path", "model_patch"}


def test_a_test_that_does_not_reproduce_on_the_unpatched_repo_is_discarded(hostile):
    calc = hostile["tasks"][CALC]
    tests = {t["attempt"]: t for t in calc["tests"]}
    assert [a for a, t in tests.items() if t["kept"]] == [0, 3, 4, 5]
    assert cell(calc, 1, "base")["verdict"] == "resolved"  # passes on the unpatched repo
    assert cell(calc, 2, "base")["verdict"] == "other"  # prints both lines there
    assert "syntax error" in tests[6]["discarded_because"] and cell(calc, 6, "base") is None  # never run
    assert all(cell(calc, t, p) is not None for t in (1, 2) for p in (0, 1, 2))  # discarded, yet in the matrix
    assert all(cell(calc, 6, p) is None for p in (0, 1, 2))  # cannot run: on no patch either
    assert cell(calc, 1, 0)["verdict"] == "resolved"  # passes the wrong patch too, ...
    assert {s["representative"]: s["passed"] for s in calc["scores"]}[0] == 0  # ... but counts for no patch
    assert cell(calc, 0, 1)["verdict"] == "resolved" and cell(calc, 0, 0)["verdict"] == "reproduced"
    assert cell(calc, 0, 2)["same_patch_as"] == 0  # the identical patch's row, from one container


def test_hostile_tests_cannot_make_the_wrong_patch_win_or_stop_the_run(hostile):
    calc = hostile["tasks"][CALC]
    matrix = {"matrix": read_jsonl(hostile["root"] / "tts" / "matrix.jsonl")}  # with each cell's output
    hang = cell(matrix, 3, 0)
    assert hang["verdict"] == "timeout" and "Issue resolved" in hang["output"] and hang["seconds"] < 30
    network = cell(matrix, 4, 0)
    assert network["verdict"] == "reproduced" and "['lo'] online False" in network["output"]
    assert all(cell(calc, 5, p)["verdict"] == "reproduced" for p in ("base", 0, 1))  # nothing left by another cell
    assert not hostile["host_path"].exists()
    assert {s["representative"]: s["passed"] for s in calc["scores"]}[0] == 0
    from harness.sandbox import labelled

    assert labelled("tts") == ([], [])  # every cell's container removed


def test_the_selected_patches_are_graded_by_swebench(hostile):
    run = hostile["root"] / "tts"
    report = json.loads((run / "trials" / CALC / "0" / "verifier" / "report.json").read_text())
    assert report[CALC]["resolved"] is True  # swebench's own per-instance report
    assert json.loads((run / "trials" / TEXT / "0" / "verifier" / "report.json").read_text())[TEXT]["resolved"] is False
    result = json.loads((run / "trials" / CALC / "0" / "result.json").read_text())
    assert result["outcome"] == "resolved" and result["patch"] == gold(CALC) and result["agent"] == "tts"


def test_the_three_figures_with_intervals_and_where_selection_lost(hostile):
    figures = hostile["summary"]["figures"]
    assert round(figures["pass@1"]["pct"], 1) == 33.3
    assert figures["oracle_pass@k"]["pct"] == 100.0 and figures["selected"]["pct"] == 50.0
    for name in ("pass@1", "oracle_pass@k", "selected"):
        low, high = figures[name]["ci95"]
        assert low <= figures[name]["pct"] <= high and high - low > 0
    assert figures["lost_to_oracle"] == [TEXT]  # no test for textutils: majority picked the wrong patch
    out = hostile["proc"].stdout
    assert "pass@1: 33.3%" in out and "oracle pass@3: 100.0%" in out and "selected (cwm): 50.0%" in out
    assert f"lost against the oracle on 1 of 2 tasks: {TEXT}" in out


def test_the_report_shows_the_tts_row_and_the_losses(hostile):
    from harness.report import breakdowns, leaderboard, load_results, markdown, resolve_runs

    root = hostile["root"]
    frame = load_results(resolve_runs([], root))
    board = leaderboard(frame)
    row = board[board["config"].str.startswith("tts ")].iloc[0]
    assert (row["resolved_pct"], row["pass@1"].round(1), row["k"], row["pass@k"]) == (50.0, 33.3, 3, 100.0)
    text = markdown(board, breakdowns(frame))
    assert "where selection lost against the oracle" in text and TEXT in text.split("lost against the oracle")[1]
    line = next(line for line in text.splitlines() if "tts selector=cwm k=3 tests=7" in line)  # the leaderboard's
    assert " 50.0 " in line and " 33.3 " in line and " 100.0 " in line


def test_selectors_differ_where_they_should(hostile):
    from harness.tts_matrix import MatrixFile
    from harness.tts_runs import load_candidates, load_tests, read_run
    from harness.tts_select import select_task

    root = hostile["root"]
    candidates = load_candidates(read_run("patches", root, "--patches"))
    tests = load_tests(read_run("tests", root, "--tests"))
    cells = MatrixFile(root / "tts" / "matrix.jsonl").read()
    picked = {name: select_task(CALC, candidates[CALC], tests[CALC], cells, name)[1].attempt
              for name in ("cwm", "majority", "first")}
    assert picked == {"cwm": 1, "majority": 0, "first": 0}  # majority: two votes, fewer tokens than attempt 2
    no_tests = {name: select_task(TEXT, candidates[TEXT], [], cells, name)[1].attempt for name in ("cwm", "majority")}
    assert no_tests == {"cwm": 0, "majority": 0}  # without tests CWM's rule is majority voting


def test_another_selector_on_the_same_run_reuses_the_matrix_and_grades_its_pick(hostile, tmp_path):
    import shutil

    root = tmp_path / "copy"
    shutil.copytree(hostile["root"], root, ignore=shutil.ignore_patterns("index.sqlite"))
    proc = cwm_eval_tts(root, "--patches", "patches", "--tests", "tests", "--run-id", "tts", "--selector", "majority")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    summary = json.loads((root / "tts" / "tts.json").read_text())
    assert summary["cells_run"] == 0  # every cell from the matrix
    calc = next(t for t in summary["tasks"] if t["task_id"] == CALC)
    assert (calc["selected_attempt"], calc["selected_resolved"]) == (0, False)  # the wrong patch, graded afresh
    assert summary["figures"]["selected"]["pct"] == 0.0 and "selected (majority): 0.0%" in proc.stdout


def test_ties_go_to_majority_then_to_the_fewest_tokens():
    from harness.tts_runs import Candidate
    from harness.tts_select import select, score_patches

    def candidate(attempt, patch, tokens):
        return Candidate(task_id="t", attempt=attempt, patch=patch, resolved=False, tokens=tokens,
                         exit_status=ExitStatus.SUBMITTED)

    pool = [candidate(0, "a\n", 700), candidate(1, "b\n", 300), candidate(2, "a\n", 800), candidate(3, "", 10)]
    scores = score_patches("t", pool, [], {})
    assert select(pool, scores, "cwm").attempt == 0  # no tests: "a" has two votes
    pool[2] = candidate(2, "c\n", 800)
    assert select(pool, score_patches("t", pool, [], {}), "cwm").attempt == 1  # one vote each: fewest tokens
    assert select([candidate(0, "", 1)], score_patches("t", [candidate(0, "", 1)], [], {}), "cwm") is None


def test_cross_execution_resumes_after_a_kill_without_redoing_cells(tmp_path):
    write_patch_run(tmp_path, "patches", {CALC: CANDIDATES[CALC]})
    write_test_run(tmp_path, "tests", {CALC: [GOOD, GOOD_TOO]})
    matrix = tmp_path / "resumed" / "matrix.jsonl"
    args = ("--patches", "patches", "--tests", "tests", "--run-id", "resumed", "--concurrency", "1")
    proc = subprocess.Popen(tts_command(tmp_path, *args), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and (not matrix.exists() or len(matrix.read_text().splitlines()) < 2):
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    before = read_jsonl(matrix)
    assert 2 <= len(before) < 2 * (1 + 3), "killed after all cells: nothing left to resume"
    with open(matrix, "a") as fh:  # a write cut off by the crash
        fh.write('{"task_id": "demo__calc-1", "test_att')
    done = cwm_eval_tts(tmp_path, *args)
    assert done.returncode == 0, done.stdout + done.stderr
    after = read_jsonl(matrix)
    assert after[:len(before)] == before  # what was there stays, the torn line is gone
    keys = [(c["test_attempt"], c["patch_attempt"]) for c in after]
    assert len(keys) == len(set(keys)) == 2 * (1 + 3)  # every cell once: base and three candidates per test
    from harness.sandbox import labelled

    assert labelled("resumed") == ([], [])  # the killed run's containers too
    summary = json.loads((tmp_path / "resumed" / "tts.json").read_text())
    assert summary["cells_run"] == 2 * (1 + 2) - sum(c["same_patch_as"] is None for c in before)  # 2 distinct patches
    [calc] = summary["tasks"]
    assert calc["selected_attempt"] == 1 and calc["selected_resolved"] is True
    assert {s["representative"]: s["passed"] for s in calc["scores"]} == {1: 2, 0: 0}


def test_k_samples_both_runs_through_the_runner_then_selects(tmp_path):
    """--k 3 with a scripted model: patches wrong, gold, wrong (the wrong one is the majority) and tests good, lenient
    (passes the unpatched repo: discarded), good; both runs go through the Runner, and execution picks the gold."""
    from helpers import edit_from_patch, turn
    from scripted_server import ScriptedServer

    summary = turn("Done; summarise.")

    def fix(patch: str) -> list:
        return [turn("Fix it.", "edit", edit_from_patch(patch)),
                turn("Write the patch.", "bash", "git diff > /tmp/fix.patch"),
                turn("Submit it.", "submit", "/tmp/fix.patch"), summary]

    def test(code: str) -> list:
        return [turn("Write the test.", "create", f"test_issue.py\n{code}"),
                turn("Submit it.", "submit", "test_issue.py"), summary]

    script = fix(WRONG[CALC]) + fix(gold(CALC)) + fix(WRONG[CALC]) + test(GOOD) + test(LENIENT) + test(GOOD_TOO)
    with ScriptedServer(script) as server:  # the patch run first, then the testgen run, one trial at a time
        proc = cwm_eval_tts(tmp_path, "--k", "3", "--task", CALC, "--model-url", server.url, "--run-id", "sampled",
                            "--concurrency", "1")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    outcomes = [json.loads((tmp_path / "sampled-patches" / "trials" / CALC / str(a) / "result.json").read_text())
                ["outcome"] for a in range(3)]
    assert outcomes == ["unresolved", "resolved", "unresolved"]
    written = [(tmp_path / "sampled-tests" / "trials" / CALC / str(a) / "generated_test.py").read_text()
               for a in range(3)]
    assert written == [GOOD, LENIENT, GOOD_TOO]
    [calc] = json.loads((tmp_path / "sampled" / "tts.json").read_text())["tasks"]
    assert [t["kept"] for t in calc["tests"]] == [True, False, True]
    assert calc["selected_attempt"] == 1 and calc["selected_resolved"] is True


@pytest.mark.parametrize("args,needles", [
    (("--patches", "nope", "--tests", "tests"), ("--patches nope", "no run")),
    (("--patches", "tests", "--tests", "tests"), ("is a testgen run",)),
    (("--patches", "patches", "--tests", "patches"), ("not testgen",)),
    (("--patches", "swebench-patches", "--tests", "tests"), ("suite swebench, not demo",)),
    (("--patches", "patches", "--tests", "tests", "--selector", "best"), ("unknown --selector",)),
    (("--patches", "patches"), ("needs --patches RUN and --tests RUN",)),
    (("--patches", "patches", "--tests", "tests", "--model-url", "http://x"), ("are for sampling with --k",)),
])
def test_bad_input_is_one_line(tmp_path, args, needles):
    write_patch_run(tmp_path, "patches", {CALC: CANDIDATES[CALC]})
    write_patch_run(tmp_path, "swebench-patches", {CALC: CANDIDATES[CALC]}, suite="swebench")
    write_test_run(tmp_path, "tests", {CALC: [GOOD]})
    assert_one_line_error(cwm_eval_tts(tmp_path, *args, "--run-id", "x"), *needles)
    assert not (tmp_path / "x").exists()


def test_a_run_id_of_another_run_is_refused(tmp_path):
    from harness.cli_tts import run_tts

    write_patch_run(tmp_path, "patches", {CALC: CANDIDATES[CALC]})
    write_test_run(tmp_path, "tests", {CALC: [GOOD]})
    with pytest.raises(UserError, match="not a tts run"):
        run_tts("demo", None, "patches", "tests", "patches", tmp_path, "cwm", 1, 3.0, None)
