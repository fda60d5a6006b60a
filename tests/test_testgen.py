"""Test generation as a scenario of the CWM agent (`--scenario testgen`, CWM's swerl_testgen_tool environment).

A scripted model writes reproduction tests for the demo's calc instance (`median` of an even-length list is wrong);
each test is graded by running it on the unpatched repository in a fresh container of the instance image.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import copy_tree, run_demo, turn
from scripted_server import ScriptedServer
from test_cli_errors import assert_one_line_error, cwm_eval

from agents.cwm.cwm_source import load_cwm_texts
from agents.cwm.testgen import ProjectTestgenTexts
from agents.cwm.texts import ProjectTexts
from harness.records import ExitStatus, Outcome, TrialResult
from tasks import load_suite

TASK = "demo__calc-1"
FIXTURE = Path(__file__).parent / "fixtures" / "cwm_source"
OURS = ProjectTestgenTexts()

GOOD = '''from calc import median

try:
    value = median([1, 2, 3, 4])
except Exception:
    print("Other issues")
else:
    print("Issue resolved" if value == 2.5 else "Issue reproduced")
'''
# checks the odd-length case, which works: it prints the resolved marker on the unpatched repository
RESOLVED_ON_UNPATCHED = GOOD.replace("[1, 2, 3, 4]", "[1, 2, 3]").replace("2.5", "2")
NO_RESOLVED_MARKER = GOOD.replace('"Issue resolved" if value == 2.5 else ', "")
NOT_PYTHON = GOOD.replace("else:", "otherwise:")
BOTH_MARKERS = GOOD + 'print("Issue resolved")\n'
# the verdict line comes from a process left behind, seconds after the test itself ended
BACKGROUND = '''import subprocess, sys
late = "import time; time.sleep(3); print('Issue reproduced', flush=True)"
subprocess.Popen([sys.executable, "-c", late], start_new_session=True)
# markers: "Issue reproduced" / "Issue resolved"
'''
# kills the shell that runs it, so that nothing after it in that shell can clean up, and leaves a late writer
KILLS_ITS_SHELL = '''import os, signal, subprocess, sys
late = "import time; time.sleep(3); print('Issue reproduced', flush=True)"
subprocess.Popen([sys.executable, "-c", late], start_new_session=True)
shell = int(open(f"/proc/{os.getppid()}/stat").read().split()[3])
for pid in (os.getppid(), shell):
    os.kill(pid, signal.SIGKILL)
# markers: "Issue reproduced" / "Issue resolved"
'''
# works only on the repository as the agent left it: in its container, the agent made `calc` print the verdict
RELIES_ON_AGENT_EDIT = '''import calc  # prints the verdict on import: "Issue reproduced" (never "Issue resolved")
'''
SUMMARY = turn("The test shows the bug; summarise.")


def write_and_submit(test: str, path: str = "test_issue.py") -> list[str]:
    return [turn("Write the reproduction script.", "create", f"{path}\n{test}"),
            turn("Submit it.", "submit", path)]


def run_testgen(tmp_path: Path, script: list[str], attempts: int = 1,
                **cwm) -> tuple[list[TrialResult], ScriptedServer]:
    """The one runner on the demo's calc instance in the testgen scenario; attempts run one after another, each
    taking the next turns of the script."""
    suite = load_suite("demo", scenario="testgen", cwm_source=cwm.get("cwm_source"))
    with ScriptedServer(script) as server:
        results = run_demo(tmp_path, "cwm", task_ids=[TASK], model_url=server.url, suite=suite,
                           run_options={"scenario": "testgen", "attempts": attempts}, **cwm)
    return sorted(results, key=lambda r: r.attempt), server


def trial_dir(tmp_path: Path, attempt: int, run_id: str = "test-run") -> Path:
    return tmp_path / run_id / "trials" / TASK / str(attempt)


def messages(tmp_path: Path, attempt: int = 0) -> list[dict]:
    lines = (trial_dir(tmp_path, attempt) / "trajectory.jsonl").read_text().splitlines()
    return [event for event in map(json.loads, lines) if event.get("kind") == "message"]


def output_of(observation: str) -> str:
    return observation.split("<output>\n", 1)[1].rsplit("\n</output>", 1)[0]


def issue() -> str:
    return load_suite("demo").load([TASK])[0].instruction


# -- the command line: a run like any other, its tests in the trial folders ------------------------------------------


def test_cli_run_grades_each_attempts_test_and_keeps_it_in_the_trial_folder(tmp_path):
    script = (write_and_submit(GOOD) + [SUMMARY] + write_and_submit(RESOLVED_ON_UNPATCHED) + [SUMMARY]
              + write_and_submit(NO_RESOLVED_MARKER) + [SUMMARY] + write_and_submit(NOT_PYTHON) + [SUMMARY])
    with ScriptedServer(script) as server:
        proc = subprocess.run([sys.executable, "-m", "harness.cli", "run", "demo", "--scenario", "testgen",
                               "--attempts", "4", "--concurrency", "1", "--task", TASK, "--model-url", server.url,
                               "--output", str(tmp_path), "--run-id", "tg"], capture_output=True, text=True,
                              timeout=600)
        # resuming the run id as a patch run is refused: the two are never mixed
        resumed = cwm_eval("run", "demo", "--task", TASK, "--model-url", server.url, "--output", str(tmp_path),
                           "--run-id", "tg")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert_one_line_error(resumed, "another configuration", "scenario 'testgen' then, None now")
    results = [TrialResult.model_validate_json((trial_dir(tmp_path, a, "tg") / "result.json").read_text())
               for a in range(4)]
    assert [r.resolved for r in results] == [True, False, False, False], [r.reason for r in results]
    assert [r.verifier["resolved"] for r in results] == [True, False, False, False]
    assert all(r.exit_status is ExitStatus.SUBMITTED for r in results)
    for result, test in zip(results, (GOOD, RESOLVED_ON_UNPATCHED, NO_RESOLVED_MARKER, NOT_PYTHON)):
        assert (trial_dir(tmp_path, result.attempt, "tg") / "generated_test.py").read_text() == test
        assert (trial_dir(tmp_path, result.attempt, "tg") / "trajectory.jsonl").exists()
    assert results[0].verifier["markers"] == {"Issue reproduced": True, "Issue resolved": False,
                                              "Other issues": False}
    assert results[1].verifier["markers"]["Issue resolved"] and "did not print 'Issue reproduced'" in results[1].reason
    assert "does not hold both" in results[2].reason and results[2].verifier["ran"] is False
    assert "syntax error" in results[3].reason and results[3].verifier["ran"] is False
    # the scenario is in run.json's config and in the leaderboard's label, with the not-comparable texts
    run = json.loads((tmp_path / "tg" / "run.json").read_text())
    assert run["config"]["scenario"] == "testgen" and run["demo"]["scenario"] == "testgen"
    assert run["texts"]["comparable_to_cwm"] is False
    assert "scenario=testgen" in results[0].config and "not comparable" in results[0].config
    assert not (tmp_path / "tg" / "predictions.jsonl").exists()  # a test is not a patch
    assert "1 reproduce the issue" in " ".join(proc.stdout.split())
    # our own wording: the test-generation prompt after the SWE system prompt, and its own submission feedback
    first = server.requests[0]["messages"]
    assert first[0]["content"] == ProjectTexts().system_prompt(["bash", "edit", "create", "submit"],
                                                               session_timeout=120, context_size=131072,
                                                               max_turns=128)
    assert first[1]["content"] == OURS.prompt(issue(), "/testbed")
    assert output_of(server.requests[2]["messages"][-1]["content"]) == OURS.submission_feedback(GOOD)


@pytest.mark.parametrize("args, needles", [
    (["demo", "--scenario", "bogus"], ["suite demo has no --scenario 'bogus'", "patch or testgen"]),
    (["livecodebench", "--scenario", "testgen"], ["unknown --scenario 'testgen'", "codegen or agentic"]),
    (["demo", "--scenario", "testgen", "--agent", "oracle"], ["--scenario testgen", "--agent cwm"]),
])
def test_a_scenario_the_suite_does_not_have_is_one_line(args, needles, tmp_path):
    assert_one_line_error(cwm_eval("run", *args, "--output", str(tmp_path)), *needles)


def test_a_checkout_without_the_test_generation_texts_is_one_line_before_the_run(tmp_path):
    checkout = copy_tree(FIXTURE, tmp_path / "cwm")
    (checkout / "cwm/rl/envs/envs/swerl_testgen_tool.py").unlink()
    proc = cwm_eval("run", "demo", "--scenario", "testgen", "--cwm-source", str(checkout), "--agent", "cwm",
                    "--model-url", "http://127.0.0.1:9/v1", "--output", str(tmp_path / "out"))
    assert_one_line_error(proc, "swerl_testgen_tool.py not found", "--scenario testgen")


# -- CWM's episode rules for test generation -------------------------------------------------------------------------


def test_any_format_error_ends_the_episode_graded_after_a_submission_failed_before(tmp_path):
    never_asked = write_and_submit(GOOD)
    script = (write_and_submit(GOOD) + ["no thinking end after the submission"]  # attempt 0: k = 0, still graded
              + [turn("Two turns in one reply.", "bash", "ls") + turn("", "bash", "pwd")] + never_asked)  # attempt 1
    (graded, failed), server = run_testgen(tmp_path, script, attempts=2)
    assert graded.exit_status is ExitStatus.SUBMITTED and graded.outcome is Outcome.RESOLVED, graded.reason
    assert (trial_dir(tmp_path, 0) / "generated_test.py").read_text() == GOOD
    assert failed.exit_status is ExitStatus.FORMAT_ERROR and failed.outcome is Outcome.UNRESOLVED
    assert failed.verifier["graded"] is False and not (trial_dir(tmp_path, 1) / "generated_test.py").exists()
    assert len(server.requests) == 4 and server.turns == never_asked  # the episode ended at its first error


def test_tests_that_forge_the_verdict_do_not_pass(tmp_path):
    script = (write_and_submit(BOTH_MARKERS) + [SUMMARY] + write_and_submit(BACKGROUND) + [SUMMARY]
              + write_and_submit(KILLS_ITS_SHELL) + [SUMMARY]
              + [turn("Make the package announce the bug.", "bash",
                      "echo 'print(\"Issue reproduced\")' >> calc/__init__.py && python3 -c 'import calc'")]
              + write_and_submit(RELIES_ON_AGENT_EDIT) + [SUMMARY])
    started = time.monotonic()
    results, server = run_testgen(tmp_path, script, attempts=4)
    assert [r.exit_status for r in results] == [ExitStatus.SUBMITTED] * 4
    assert not any(r.resolved for r in results), [r.verifier for r in results]
    both, background, killer, edited = (r.verifier for r in results)
    assert both["markers"]["Issue reproduced"] and both["markers"]["Issue resolved"]
    assert background["ran"] and not background["markers"]["Issue reproduced"]
    assert killer["ran"] and not killer["markers"]["Issue reproduced"]
    assert not edited["markers"]["Issue reproduced"]  # graded on a fresh repository, not the agent's
    assert "Issue reproduced" in output_of(messages(tmp_path, 3)[3]["content"])  # in the agent's own container it did
    assert all(r.phases["verify"] < 20 for r in results)  # nothing waited for the processes left behind
    assert time.monotonic() - started < 120


# -- whose texts -----------------------------------------------------------------------------------------------------


def test_cwm_source_supplies_the_test_generation_texts(tmp_path):
    theirs = load_cwm_texts(FIXTURE)
    script = [turn("Submit too early.", "submit", "missing.py"),  # the fixture's plugins write nothing: use bash
              turn("Write the script.", "bash", f"cat > test_issue.py <<'EOF'\n{GOOD}EOF"),
              turn("Submit it.", "submit", "test_issue.py"), SUMMARY]
    [result], server = run_testgen(tmp_path, script, cwm_source=FIXTURE)
    first = server.requests[0]["messages"]
    assert first[0]["content"] == theirs.system_prompt(["bash", "edit", "create", "submit"], session_timeout=120,
                                                       context_size=131072, max_turns=128)
    assert first[1]["content"] == theirs.testgen().prompt(issue(), "/testbed")
    refused, _, submitted = [m["content"] for m in messages(tmp_path) if m["role"].startswith("tool:")]
    empty = {"status": "error", "output": "", "error_type": "none", "exit_code": 1}
    assert output_of(refused) == theirs.testgen().submit("missing.py", lambda command: empty)[1]
    assert output_of(submitted) == theirs.testgen().submission_feedback(GOOD)
    assert result.resolved, result.reason
    assert "texts=cwm" in result.config and "scenario=testgen" in result.config
    assert "not comparable" not in result.config


def test_real_cwm_checkout_testgen_texts_load(cwm_checkout):
    """Optional (skipped without a checkout): CWM's own texts fit the loader; the project holds none of them."""
    texts = load_cwm_texts(cwm_checkout).testgen()
    prompt = texts.prompt("ISSUE-4711", "/somewhere/repo")
    assert "ISSUE-4711" in prompt and "/somewhere/repo" in prompt
    assert all(marker in prompt for marker in ("Issue reproduced", "Issue resolved", "Other issues"))
    assert "TEST-4711" in texts.submission_feedback("TEST-4711")
    ok = {"status": "success", "output": "anything\n", "error_type": "none", "exit_code": 0}
    assert texts.submit("t.py", lambda command: ok) == (True, "anything\n")
    root = Path(__file__).resolve().parent.parent
    mine = "".join((root / module).read_text() for module in ("agents/cwm/testgen.py", "tasks/swebench/repro.py",
                                                           "tasks/swebench/testgen.py"))
    theirs = [line.strip() for line in prompt.splitlines() if len(line.strip()) >= 40]
    assert theirs and not [line for line in theirs if line in mine]
