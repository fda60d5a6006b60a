"""Outcome classes, driven by hostile agents on the demo suite: real containers, the real runner, swebench's grading.

What the agent or its patch causes is `unresolved` with a reason; `error` (not scored, redone on resume) is only for
what it cannot cause. Each test asserts the outcome class and the verdict.
"""

from __future__ import annotations

import json

import docker.errors
import openai
from helpers import edit_from_patch, run_demo, turn
from scripted_server import ScriptedServer

from harness.outcomes import HARNESS_ERROR, classify
from harness.records import ExitStatus, Outcome
from harness.store import RunStore
from tasks import load_suite
from tasks.swebench.grading import grade

TASK = "demo__calc-1"
SUMMARY = turn("Done; summarise.")
BREAK = "for b in rm mkdir python3 git; do printf '#!/bin/sh\\nexit 1\\n' > \"$(command -v $b)\"; done"


def gold_patch() -> str:
    return load_suite("demo").load([TASK])[0].metadata["patch"]


def trajectory(tmp_path, run_id: str) -> list[dict]:
    path = tmp_path / run_id / "trials" / TASK / "0" / "trajectory.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def write_and_submit(files: dict[str, str]) -> list[str]:
    """A hostile agent's turns: write files with bash, make a patch of every change (new files too), submit it."""
    turns = [turn(f"Write {path}.", "bash", f"cat > {path} <<'CWM_EOF'\n{text}CWM_EOF") for path, text in files.items()]
    return turns + [turn("Make the patch.", "bash", "git add -A && git diff --cached > /tmp/p.patch"),
                    turn("Submit.", "submit", "/tmp/p.patch"), SUMMARY]


def run_script(tmp_path, script: list[str], run_id: str, *, run_options=None, **cwm):
    with ScriptedServer(script) as server:
        [result] = run_demo(tmp_path, "cwm", task_ids=[TASK], model_url=server.url, run_id=run_id,
                            run_options=run_options, **cwm)
    return result


# -- what the agent does to its container ----------------------------------------------------------------------------

def test_an_output_flood_is_unresolved_with_a_reason(tmp_path):
    script = [turn("Flood.", "bash", "head -c 20000000 /dev/zero | tr '\\0' a"), turn("Still there?", "bash", "pwd")]
    result = run_script(tmp_path, script, "flood", max_turns=3)
    assert result.outcome is Outcome.UNRESOLVED and result.error is None
    assert result.exit_status is ExitStatus.TURN_LIMIT and result.verifier["graded"] is False
    assert result.reason.startswith("output flood")
    assert any(e["kind"] == "fault" and e["reason"] == "output flood" for e in trajectory(tmp_path, "flood"))


def test_a_fork_bomb_is_unresolved_with_a_reason(tmp_path):
    script = [turn("Bomb.", "bash", ":(){ :|:& };:"), turn("Wait.", "bash", "sleep 30"),
              turn("Still there?", "bash", "echo ok")]
    result = run_script(tmp_path, script, "bomb", max_turns=4, command_timeout=3)
    assert result.outcome is Outcome.UNRESOLVED and result.error is None, result.error
    assert result.exit_status is ExitStatus.TURN_LIMIT
    assert "pids exhausted" in result.reason
    last = [e for e in trajectory(tmp_path, "bomb") if e.get("role") == "tool: bash"][-1]
    assert "ok" in last["content"]  # the trial went on after the bomb


def test_running_out_of_memory_is_unresolved_with_a_reason(tmp_path):
    hog = "python3 -c \"x = b'x' * (1536 * 1024 * 1024); print(len(x))\"; echo status=$?"
    result = run_script(tmp_path, [turn("Use memory.", "bash", hog)], "oom", max_turns=2,
                        run_options={"limits": {"memory": "256m"}})
    assert result.outcome is Outcome.UNRESOLVED and result.error is None
    assert "out of memory" in result.reason


def test_broken_binaries_then_a_submission_is_graded_normally(tmp_path):
    """The agent replaces rm, mkdir, python3 and git with failing scripts after saving its fix, then submits."""
    script = [turn("Fix.", "edit", edit_from_patch(gold_patch())),
              turn("Save the patch.", "bash", "git diff > /tmp/fix.patch"),
              turn("Break the tools.", "bash", BREAK + "; git status; echo git=$?"),
              turn("Submit.", "submit", "/tmp/fix.patch"), SUMMARY]
    result = run_script(tmp_path, script, "broken-tools")
    assert result.outcome is Outcome.RESOLVED and result.error is None, (result.error, result.verifier)
    assert result.exit_status is ExitStatus.SUBMITTED and result.reason is None
    assert result.verifier["resolved"] is True


def test_a_broken_shell_and_git_make_the_work_tree_unreadable_which_is_the_models_failure(tmp_path):
    """bash itself replaced too: the shell cannot restart and the work-tree diff comes back empty; no error."""
    script = [turn("Fix in place.", "edit", edit_from_patch(gold_patch())),
              turn("Break everything.", "bash",
                   BREAK + "; mv /bin/bash /bin/bash.real; printf '#!/bin/sh\\nexit 1\\n' > /bin/bash; "
                           "chmod +x /bin/bash"),
              turn("Leave the shell.", "bash", "exit"),
              turn("Try again.", "bash", "ls")]
    result = run_script(tmp_path, script, "broken-shell", max_turns=5, run_options={"grade_worktree": True})
    assert result.outcome is Outcome.UNRESOLVED and result.error is None, result.error
    assert result.exit_status is ExitStatus.TURN_LIMIT
    assert result.reason.startswith("broken shell") and result.patch_note == "empty patch"


def test_an_agent_that_stops_its_own_container_fails_and_nothing_is_an_error(tmp_path):
    """Every later command fails and the work tree cannot be read (a Docker API error): still the model's failure."""
    script = [turn("Fix in place.", "edit", edit_from_patch(gold_patch())),
              turn("Stop the container.", "bash", "kill -TERM 1; sleep 5"),
              turn("Anyone there?", "bash", "ls")]
    result = run_script(tmp_path, script, "stopped", max_turns=4, command_timeout=10,
                        run_options={"grade_worktree": True})
    assert result.outcome is Outcome.UNRESOLVED and result.error is None, result.error
    assert result.reason == "container stopped" and result.exit_status is ExitStatus.TURN_LIMIT


# -- what the patch does to the tests --------------------------------------------------------------------------------

MARKERS = ("Cannot allocate memory", "Temporary failure in name resolution", "Out of memory",
           "Name or service not known")


def stats_with(prefix: str, mean_body: str = "    return sum(values) / len(values)\n") -> str:
    """calc/stats.py with the median fixed, `prefix` at the top and `mean`'s body replaced."""
    return (
        '"""Descriptive statistics over plain lists of numbers."""\n' + prefix +
        "\n\ndef mean(values):\n    if not values:\n        raise ValueError('mean of an empty sequence')\n" + mean_body +
        "\n\ndef median(values):\n    if not values:\n        raise ValueError('median of an empty sequence')\n"
        "    ordered = sorted(values)\n    middle = len(ordered) // 2\n    if len(ordered) % 2 == 0:\n"
        "        return (ordered[middle - 1] + ordered[middle]) / 2\n    return ordered[middle]\n"
        "\n\ndef percentile(values, q):\n    if not 0 <= q <= 100:\n        raise ValueError('q must be between 0 and 100')\n"
        "    ordered = sorted(values)\n    rank = max(1, round(q / 100 * len(ordered)))\n    return ordered[rank - 1]\n")


def test_swebench_infra_markers_in_test_output_are_a_note_not_an_error(tmp_path):
    shout = "import os\nos.write(2, " + repr(("\n".join(MARKERS) + "\n").encode()) + ")\n"
    # 1. every test passes while the log shouts the markers: resolved, as swebench's report says
    passing = run_script(tmp_path, write_and_submit({"calc/stats.py": stats_with(shout)}), "markers-pass")
    assert passing.outcome is Outcome.RESOLVED and passing.error is None and passing.reason is None
    log = (tmp_path / "markers-pass/trials" / TASK / "0/verifier/test_output.txt").read_text()
    assert all(marker in log for marker in MARKERS)
    # 2. mean breaks with an out-of-memory error: unresolved from the report, with swebench's advisory note
    oom = "    raise OSError(12, 'Cannot allocate memory')\n"
    failing = run_script(tmp_path, write_and_submit({"calc/stats.py": stats_with("", oom)}), "markers-fail")
    assert failing.outcome is Outcome.UNRESOLVED and failing.error is None
    assert failing.verifier["tests_status"]["PASS_TO_PASS"]["failure"] == ["tests/test_stats.py::test_mean"]
    assert failing.verifier["infra_note"] == "out_of_memory" and failing.verifier["infra_tier"] == "environment"
    assert "out_of_memory" in failing.reason and "swebench_infra_failure" in failing.flags
    # 3. the test run dies before any result: swebench's own report flags it; still unresolved and scored
    dies = shout + "os._exit(1)\n"
    dead = run_script(tmp_path, write_and_submit({"calc/stats.py": stats_with(dies)}), "markers-dead")
    assert dead.outcome is Outcome.UNRESOLVED and dead.error is None
    report = json.loads((tmp_path / "markers-dead/trials" / TASK / "0/verifier/report.json").read_text())[TASK]
    assert report["infra_failure"] is True and report["resolved"] is False
    assert dead.verifier["infra_failure_reason"] == report["infra_failure_reason"]
    assert report["infra_failure_reason"] in dead.reason


CONFTEST = """import pytest


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    report.outcome = "passed"
    report.longrepr = None
"""


def test_a_conftest_that_passes_everything_is_flagged_and_rejected_on_request(tmp_path):
    script = write_and_submit({"conftest.py": CONFTEST})
    flagged = run_script(tmp_path, list(script), "tamper")
    assert flagged.outcome is Outcome.RESOLVED and flagged.verifier["resolved"] is True  # the rigged tests pass...
    assert flagged.flags == ["test_tampering"] and flagged.verifier["test_tampering"] == ["conftest.py"]
    assert flagged.verifier["flags"] == ["test_tampering"] and flagged.reward == 1.0
    rejected = run_script(tmp_path, list(script), "tamper-rejected", run_options={"reject_test_tampering": True})
    assert rejected.outcome is Outcome.UNRESOLVED and rejected.error is None  # ...and are rejected on request
    assert rejected.reason == "test tampering" and rejected.reward == 0.0 and rejected.flags == ["test_tampering"]
    assert rejected.verifier["resolved"] is True  # swebench's own verdict is kept in the details
    from harness.report import leaderboard, load_results  # the report counts the flagged trials

    board = leaderboard(load_results([tmp_path / "tamper", tmp_path / "tamper-rejected"]))
    assert board["tampering"].tolist() == [1] * len(board) and board["tampering"].sum() == 2


def test_a_verifier_past_its_timeout_is_unresolved_and_leaves_no_report(tmp_path):
    task = load_suite("demo").load([TASK])[0]
    slow = gold_patch() + (
        "diff --git a/calc/slow.py b/calc/slow.py\nnew file mode 100644\n--- /dev/null\n+++ b/calc/slow.py\n"
        "@@ -0,0 +1,2 @@\n+import time\n+time.sleep(60)\n")
    slow = slow.replace("+    if len(ordered) % 2 == 0:\n", "+    import calc.slow  # noqa\n+    if len(ordered) % 2 == 0:\n"
                        ).replace("@@ -14,6 +14,8 @@", "@@ -14,6 +14,9 @@")
    verdict = grade(task.metadata, slow, tmp_path / "verifier", timeout=5)
    assert not verdict.resolved and verdict.infra_error is None
    assert verdict.details["reason"] == "verifier timed out"
    assert "Timeout error: 5 seconds exceeded." in (tmp_path / "verifier/test_output.txt").read_text()
    assert not (tmp_path / "verifier/report.json").exists()


# -- what the agent cannot cause -------------------------------------------------------------------------------------

def test_a_harness_bug_is_an_error_with_its_traceback_and_a_warning(tmp_path, capsys):
    suite = load_suite("demo")

    def broken_verify(*args, **kwargs):
        raise RuntimeError("a bug in the verifier")

    suite.verify = broken_verify
    [result] = run_demo(tmp_path, "oracle", task_ids=[TASK], run_id="bug", suite=suite)
    assert result.outcome is Outcome.ERROR and result.exit_status is ExitStatus.INFRA_ERROR
    assert result.flags == [HARNESS_ERROR] and result.reason is None
    [error] = [e for e in trajectory(tmp_path, "bug") if e["kind"] == "error"]
    assert error["harness_bug"] is True
    assert "Traceback" in error["error"] and "RuntimeError: a bug in the verifier" in error["error"]
    warning = capsys.readouterr().err
    assert "warning: a bug in cwm-eval ended 1 trial" in warning and f"{TASK}/0" in warning
    assert RunStore(tmp_path, "bug").result(TASK, 0).finished is False  # not scored: a resume redoes it


def test_model_and_docker_failures_are_errors_and_a_bug_is_flagged():
    request = openai.APIConnectionError(request=__import__("httpx").Request("POST", "http://x/v1/chat/completions"))
    assert classify(request).outcome is Outcome.ERROR and "model endpoint" in classify(request).error
    assert classify(request).flags == []
    assert classify(docker.errors.APIError("daemon gone")).flags == []  # infrastructure, not a bug
    assert classify(docker.errors.APIError("daemon gone")).outcome is Outcome.ERROR
    try:
        {}["oops"]
    except KeyError as exc:
        bug = classify(exc)
    assert bug.outcome is Outcome.ERROR and bug.flags == [HARNESS_ERROR] and "Traceback" in bug.error


def test_which_paths_count_as_test_tampering():
    from tasks.swebench.tampering import classify_paths, pytest_section_changed

    def diff(path: str, body: str = "@@ -1 +1 @@\n-a\n+b\n") -> str:
        return f"diff --git a/{path} b/{path}\n--- a/{path}\n+++ b/{path}\n{body}"

    patch = "".join(diff(p) for p in ("src/conftest.py", "tox.ini", "pytest.py", "lib/pytest.py", "setup.cfg",
                                       "pkg/sitecustomize.py", "usercustomize.py", "pyproject.toml", "src/mod.py"))
    patch += diff("x.sql", "@@ -1,2 +1,2 @@\n--- conftest.py\n+++ conftest.py\n")  # a removed `-- ` line, not a header
    flagged, sectioned = classify_paths(patch)
    assert flagged == ["src/conftest.py", "tox.ini", "pytest.py", "pkg/sitecustomize.py", "usercustomize.py"]
    assert sectioned == ["setup.cfg", "pyproject.toml"]
    cfg = "[metadata]\nname = x\n[tool:pytest]\naddopts = -q\n"
    assert not pytest_section_changed("setup.cfg", cfg, cfg.replace("name = x", "name = y"))
    assert pytest_section_changed("setup.cfg", cfg, cfg.replace("-q", "-p no:cacheprovider"))
    assert pytest_section_changed("setup.cfg", "[metadata]\n", "[metadata]\n[tool:pytest]\naddopts = -x\n")
    toml = '[project]\nname = "x"\n[tool.pytest.ini_options]\naddopts = "-q"\n'
    assert not pytest_section_changed("pyproject.toml", toml, toml.replace('"x"', '"y"'))
    assert pytest_section_changed("pyproject.toml", toml, toml.replace('"-q"', '"-p no:x"'))
    assert pytest_section_changed("pyproject.toml", toml, "not [valid toml")
