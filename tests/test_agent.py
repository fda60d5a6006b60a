"""The CWM agent against a scripted OpenAI-compatible server, on a real demo task in a real container.

Each test is one of CWM's rules (cwm-agent.md §4-5, §8): what the model sees, when the episode ends, what is graded.
"""

from __future__ import annotations

import json
import math
import re

from helpers import edit_from_patch, run_demo, turn
from scripted_server import ScriptedServer

from agents.cwm.texts import ProjectTexts
from harness.conversation import MESSAGE_OVERHEAD
from harness.records import ExitStatus, Outcome
from tasks import load_suite

TASK = "demo__calc-1"
TEXTS = ProjectTexts()


def gold_patch() -> str:
    return next(t for t in load_suite("demo").load([TASK])).metadata["patch"]


def fix_and_submit() -> list[str]:
    return [
        turn("Look at the repository first.", "bash", "printf 'a.py\\nb.py\\n'; false"),
        turn("I found the bug; fix it.", "edit", edit_from_patch(gold_patch())),
        turn("Run the tests.", "bash", "python3 -m pytest -q 2>&1 | tail -5"),
        turn("Write the patch.", "bash", "git diff > /tmp/fix.patch && head -3 /tmp/fix.patch"),
        turn("Submit it.", "submit", "/tmp/fix.patch"),
    ]


SUMMARY = turn("The patch is right; summarise.")


def read_trajectory(tmp_path, run_id="test-run"):
    path = tmp_path / run_id / "trials" / TASK / "0" / "trajectory.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def observations(tmp_path) -> list[str]:
    return [e["content"] for e in read_trajectory(tmp_path) if e.get("role", "").startswith("tool:")]


def user_messages(tmp_path) -> list[str]:
    return [e["content"] for e in read_trajectory(tmp_path) if e.get("role") == "user"][1:]


def output_of(observation: str) -> str:
    return observation.split("<output>\n", 1)[1].rsplit("\n</output>", 1)[0]


def test_edit_test_submit_and_summary_is_graded_and_resolves(tmp_path):
    with ScriptedServer(fix_and_submit() + [SUMMARY]) as server:
        [result] = run_demo(tmp_path, "cwm", task_ids=[TASK], model_url=server.url)
    assert result.outcome is Outcome.RESOLVED, result.error or result.verifier
    assert result.exit_status is ExitStatus.SUBMITTED
    assert result.turns == 6 and result.format_errors == 0
    assert result.patch.startswith("diff --git")
    seen = observations(tmp_path)
    # bash feedback is the raw output, trailing newline kept, no exit code; then a blank line and the budget
    assert seen[0].startswith("<output>\na.py\nb.py\n\n</output>\n\n<budget>\n* Remaining turns: 127\n")
    assert "exit code" not in seen[0] and seen[0].endswith("</budget>")
    assert output_of(seen[1]).startswith("Edited calc/stats.py at line 14; the file now has 29 lines.")
    assert output_of(seen[4]) == TEXTS.submission_feedback(result.patch)
    first = server.requests[0]["messages"]
    assert first[0]["content"] == TEXTS.system_prompt(["bash", "edit", "create", "submit"], session_timeout=120,
                                                      context_size=131072, max_turns=128)
    assert first[1]["content"] == TEXTS.issue_prompt(load_suite("demo").load([TASK])[0].instruction, "/testbed")


def test_budget_counts_the_reply_and_the_whole_observation_with_the_unfilled_template(tmp_path):
    with ScriptedServer(fix_and_submit()[:1], ) as server:
        run_demo(tmp_path, "cwm", task_ids=[TASK], model_url=server.url, max_turns=2)
    [seen] = observations(tmp_path)
    # the scripted server reports prompt tokens as len(contents) // 4 and completion tokens as len(text) // 4
    first_reply = fix_and_submit()[0]
    used = sum(len(m["content"]) for m in server.requests[0]["messages"]) // 4 + len(first_reply) // 4
    wrapped = TEXTS.output("a.py\nb.py\n")
    estimate = math.ceil(len(f"{wrapped}\n\n{TEXTS.budget_template}") / 4) + MESSAGE_OVERHEAD
    assert seen == f"{wrapped}\n\n{TEXTS.budget(1, 131072 - used - estimate)}"


def test_format_errors_are_uncapped_user_messages_in_eval_mode(tmp_path):
    bad = [
        "<think>\nno tool here\n</think>\nI think it is fine.",
        turn("two tools", "bash", "ls") + "\n<tool: bash>\npwd\n</tool>",
        turn("unknown tool", "python", "print(1)"),
        "<tool: bash>\nls\n</tool>",  # no </think>
        turn("no newline before the closing tag", "bash", "ls").replace("ls\n</tool>", "ls</tool>"),
    ] + ["rambling without a thinking end"] * 20
    with ScriptedServer(bad + fix_and_submit() + [SUMMARY]) as server:
        [result] = run_demo(tmp_path, "cwm", task_ids=[TASK], model_url=server.url)
    assert result.format_errors == 25
    assert result.outcome is Outcome.RESOLVED
    errors = user_messages(tmp_path)
    assert errors[0] == "FormatError: The reply calls no tool"
    assert errors[1].startswith("FormatError: 2 tool calls in one reply (bash, bash)")
    assert errors[2] == "NoSuchToolError: There is no tool called 'python'."
    assert errors[3] == "FormatError: " + TEXTS.think_end_error(0)
    assert "do not pair up" in errors[4]
    # a format error is a plain user message: no output wrapper, no budget
    assert all("<budget>" not in e and "<output>" not in e for e in errors)


def test_after_a_submission_any_reply_with_one_thinking_end_and_no_valid_call_ends_and_grades(tmp_path):
    endings = [
        turn("Done; two calls by mistake.", "bash", "ls") + "\n<tool: bash>\npwd\n</tool>",
        turn("An unknown tool ends it too.", "python", "print(1)"),
    ]
    for number, ending in enumerate(endings):
        # a reply without `</think>` after the submission only gets feedback; the next one ends the episode
        with ScriptedServer(fix_and_submit() + ["thinking without an end", ending]) as server:
            [result] = run_demo(tmp_path, "cwm", task_ids=[TASK], model_url=server.url, run_id=f"end-{number}")
        assert result.exit_status is ExitStatus.SUBMITTED and result.outcome is Outcome.RESOLVED
        assert result.turns == 7 and result.format_errors == 1 and len(server.requests) == 7


def test_submission_then_turn_limit_is_a_failure_and_is_not_graded(tmp_path):
    script = fix_and_submit() + [turn("Keep checking.", "bash", "ls")] * 5
    with ScriptedServer(script) as server:
        [result] = run_demo(tmp_path, "cwm", task_ids=[TASK], model_url=server.url, max_turns=7)
    assert result.exit_status is ExitStatus.TURN_LIMIT
    assert result.outcome is Outcome.UNRESOLVED  # the patch is the gold one, but CWM never grades it
    assert result.verifier["graded"] is False and result.patch.startswith("diff --git")
    assert not (tmp_path / "test-run/trials" / TASK / "0/verifier/report.json").exists()
    # step accounting: the 7th reply is refused before it runs, so 6 tool calls ran
    assert len(server.requests) == 7 and len(observations(tmp_path)) == 6
    assert "* Remaining turns: 1\n" in observations(tmp_path)[-1]


def test_the_work_tree_is_graded_only_with_grade_worktree(tmp_path):
    script = [turn("Fix it in place.", "edit", edit_from_patch(gold_patch())),
              turn("Done, no submission.")] + [turn("Look.", "bash", "ls")] * 3
    for grade_worktree in (False, True):
        run_id = f"worktree-{grade_worktree}"
        with ScriptedServer(list(script)) as server:
            [result] = run_demo(tmp_path, "cwm", task_ids=[TASK], model_url=server.url, max_turns=4,
                                run_id=run_id, run_options={"grade_worktree": grade_worktree})
        assert result.exit_status is ExitStatus.TURN_LIMIT
        assert result.outcome is (Outcome.RESOLVED if grade_worktree else Outcome.UNRESOLVED)
        run = json.loads((tmp_path / run_id / "run.json").read_text())
        assert run["grade_worktree"] is grade_worktree
        assert ("grade-worktree" in result.config) is grade_worktree


def test_strict_format_ends_at_the_first_format_error_and_wants_a_heading_after_a_submission(tmp_path):
    with ScriptedServer(["<think>\nno end tag"] + fix_and_submit()) as server:
        [result] = run_demo(tmp_path, "cwm", task_ids=[TASK], model_url=server.url, strict_format=True,
                            run_id="strict-1")
    assert result.exit_status is ExitStatus.FORMAT_ERROR and result.outcome is Outcome.UNRESOLVED
    assert len(server.requests) == 1 and "strict-format" in result.config
    no_heading = "<think>\nfine\n</think>\nAll done."
    with ScriptedServer(fix_and_submit() + [no_heading]) as server:
        [result] = run_demo(tmp_path, "cwm", task_ids=[TASK], model_url=server.url, strict_format=True,
                            run_id="strict-2")
    assert result.exit_status is ExitStatus.FORMAT_ERROR and result.verifier["graded"] is False
    with ScriptedServer(fix_and_submit() + [SUMMARY]) as server:
        [result] = run_demo(tmp_path, "cwm", task_ids=[TASK], model_url=server.url, strict_format=True,
                            run_id="strict-3")
    assert result.exit_status is ExitStatus.SUBMITTED and result.outcome is Outcome.RESOLVED


def test_a_timeout_gives_the_notice_only_and_a_fresh_session(tmp_path):
    script = [turn("Hang.", "bash", "export A=1; cd /; echo partial; sleep 60"),
              turn("Where am I?", "bash", 'echo "[$A]"; pwd')]
    with ScriptedServer(script) as server:
        [result] = run_demo(tmp_path, "cwm", task_ids=[TASK], model_url=server.url, max_turns=3,
                            command_timeout=2)
    first, second = observations(tmp_path)
    assert output_of(first) == TEXTS.bash_notice("timeout")  # no partial output
    assert output_of(second) == "[]\n/testbed\n"
    assert result.outcome is Outcome.UNRESOLVED and result.error is None


def test_a_fork_bomb_and_a_flood_are_the_models_failure_not_an_error(tmp_path):
    script = [turn("Flood.", "bash", "head -c 20000000 /dev/zero | tr '\\0' a"),
              turn("Bomb.", "bash", ":(){ :|:& };:"),
              turn("Fork something slow.", "bash", "sleep 30; echo after"),
              turn("Still there?", "bash", "echo ok")]
    with ScriptedServer(script) as server:
        [result] = run_demo(tmp_path, "cwm", task_ids=[TASK], model_url=server.url, max_turns=5,
                            command_timeout=3)
    assert result.outcome is Outcome.UNRESOLVED and result.error is None, result.error
    flood, bomb, after, last = (output_of(o) for o in observations(tmp_path))
    assert flood == TEXTS.bash_notice("too_long")
    assert bomb == ""  # the bomb itself returns at once, as in CWM
    assert after == TEXTS.bash_notice("timeout") or after == TEXTS.bash_notice("too_long")
    assert last == "ok\n"  # the session (and if need be the container) came back; the trial goes on


def test_the_task_prompt_is_cut_from_the_left_and_observations_from_the_right(tmp_path):
    script = [turn("Print a lot.", "bash", "seq 1 5000"), "no end tag " * 200]
    with ScriptedServer(script) as server:
        run_demo(tmp_path, "cwm", task_ids=[TASK], model_url=server.url, max_turns=3, max_prompt_len=60,
                 max_user_turn_len=64)
    prompt = server.requests[0]["messages"][1]["content"]
    full = TEXTS.issue_prompt(load_suite("demo").load([TASK])[0].instruction, "/testbed")
    assert prompt.startswith("[...]") and full.endswith(prompt[len("[...]"):])  # the end is kept
    assert math.ceil(len(prompt) / 4) + MESSAGE_OVERHEAD <= 60
    [seen] = observations(tmp_path)
    assert seen.startswith("<output>\n1\n2\n3\n") and seen.endswith("[...]") and "<budget>" not in seen
    assert math.ceil(len(seen) / 4) + MESSAGE_OVERHEAD <= 64
    [error] = user_messages(tmp_path)
    assert error.startswith("FormatError: ")


def test_bash_only_scaffold_has_no_edit_tool(tmp_path):
    script = [turn("Try edit.", "edit", edit_from_patch(gold_patch())), turn("Look.", "bash", "ls /cwm-plugins")]
    with ScriptedServer(script) as server:
        [result] = run_demo(tmp_path, "cwm", task_ids=[TASK], model_url=server.url, max_turns=3,
                            tools=["bash", "submit"])
    system = server.requests[0]["messages"][0]["content"]
    assert system == TEXTS.system_prompt(["bash", "submit"], session_timeout=120, context_size=131072, max_turns=3)
    assert "<tool: bash>" in system and "<tool: submit>" in system and "<tool: edit>" not in system
    assert user_messages(tmp_path) == ["NoSuchToolError: There is no tool called 'edit'."]
    assert "No such file or directory" in output_of(observations(tmp_path)[0])  # no plugins installed
    assert "tools=bash,submit" in result.config


def test_run_json_records_texts_and_resources(tmp_path):
    with ScriptedServer([SUMMARY]) as server:
        [result] = run_demo(tmp_path, "cwm", task_ids=[TASK], model_url=server.url, max_turns=2)
    run = json.loads((tmp_path / "test-run" / "run.json").read_text())
    assert run["texts"] == {"origin": TEXTS.origin, "comparable_to_cwm": False}
    assert "not comparable" in result.config
    resources = run["resources"]
    assert resources["trial_timeout"] == 7200 and resources["pids"] == 4096
    host_cpus = __import__("os").cpu_count()
    assert resources["cpus"] == min(4.0, host_cpus)
    assert int(resources["memory"]) <= 16 * 1024**3
    assert re.fullmatch(r"\d+", resources["memory"])


def test_cwm_source_supplies_every_text_and_the_plugins(tmp_path):
    """With --cwm-source, the prompts, wrappers, feedback and plugins are the checkout's (here: the invented fixture)."""
    from pathlib import Path

    from agents.cwm.cwm_source import load_cwm_texts

    fixture = Path(__file__).parent / "fixtures" / "cwm_source"
    theirs = load_cwm_texts(fixture)
    script = [turn("Edit.", "edit", edit_from_patch(gold_patch())),
              "no thinking end",
              turn("Hang.", "bash", "sleep 30"),
              turn("Patch.", "bash", "git diff > /tmp/fix.patch"),
              turn("Submit.", "submit", "/tmp/fix.patch")]
    with ScriptedServer(script) as server:
        [result] = run_demo(tmp_path, "cwm", task_ids=[TASK], model_url=server.url, max_turns=6, command_timeout=2,
                            cwm_source=fixture)
    first = server.requests[0]["messages"]
    assert first[0]["content"] == theirs.system_prompt(["bash", "edit", "create", "submit"], session_timeout=2,
                                                       context_size=131072, max_turns=6)
    assert first[1]["content"] == theirs.issue_prompt(load_suite("demo").load([TASK])[0].instruction, "/testbed")
    edit, hang, _, submit = observations(tmp_path)
    assert edit.startswith(theirs.output("fixture edit plugin\n") + "\n\n")  # CWM's plugin ran, not ours
    assert hang.startswith(theirs.output(theirs.bash_notice("timeout")))
    # the fixture's edit plugin changed nothing, so the patch is empty and CWM's submit refuses it
    empty = {"status": "success", "output": "", "error_type": "none", "exit_code": 0}
    assert submit.startswith(theirs.output(theirs.submit("/tmp/fix.patch", lambda command: empty)[1]) + "\n\n")
    assert not result.patch
    assert user_messages(tmp_path) == ["FormatError: " + theirs.think_end_error(0)]
    run = json.loads((tmp_path / "test-run" / "run.json").read_text())
    assert run["texts"]["comparable_to_cwm"] is True and "texts=cwm" in result.config
    assert "not comparable" not in result.config


def test_the_trial_timeout_is_a_failure_even_with_a_submission(tmp_path):
    script = fix_and_submit() + [turn("Think it over slowly.", "bash", "sleep 60")]
    with ScriptedServer(script) as server:
        [result] = run_demo(tmp_path, "cwm", task_ids=[TASK], model_url=server.url,
                            run_options={"trial_timeout": 8})
    assert result.exit_status is ExitStatus.TIMEOUT
    assert result.outcome is Outcome.UNRESOLVED and result.verifier["graded"] is False
