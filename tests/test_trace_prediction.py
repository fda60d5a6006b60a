"""Trace prediction: the per-frame scoring, and the suite end to end through the CLI against the scripted server (one
raw completion per frame), the real trace made by the tracer in a container; the leaderboard shows its metrics."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from scripted_server import ScriptedServer
from test_cli_errors import assert_one_line_error

from harness.records import Outcome, TrialResult
from harness.traces.format import END_OF_TEXT, FRAME_SEP, START_MARKER, Frame, render, render_frame, trace_prompt
from harness.traces.tracer import trace_call
from tasks.trace_prediction.dataset import BUNDLED, Program
from tasks.trace_prediction.scoring import score

ROOT = Path(__file__).parent.parent
CWM_FIXTURE = Path(__file__).parent / "fixtures" / "cwm_source"
PROGRAMS = {p["id"]: Program(**p) for p in map(json.loads, BUNDLED.read_text().splitlines())}


def cwm_eval(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], capture_output=True, text=True, timeout=120,
                          cwd=ROOT)


def real_frames(program_id: str) -> list[Frame]:
    program = PROGRAMS[program_id]
    result = trace_call(program.code, program.entry, program.args)
    assert result.finished
    return result.frames


def test_bundled_programs_are_a_dozen_that_trace_to_the_end():
    assert len(PROGRAMS) == 12
    ends = {pid: trace_call(p.code, p.entry, p.args).end for pid, p in PROGRAMS.items()}
    assert set(ends.values()) == {"returned"}


def test_scoring_first_divergence_prefix_accuracy_and_exact_match():
    real = real_frames("clamp")  # 6 frames: the call is given, 5 are predicted
    assert score(real, real[1:], ended=True)["metrics"] == {
        "exact_match": 1.0, "prefix_accuracy": 1.0, "first_divergence": None, "frames_real": 6, "frames_predicted": 6}
    marked = [Frame(**{**vars(real[1]), "line": real[1].line + START_MARKER})]  # the demo's lookup drops the marker
    assert score(real, marked + real[2:], ended=True)["metrics"]["exact_match"] == 1.0

    wrong_locals = Frame(**{**vars(real[3]), "locals": {**real[3].locals, "x": "'12'"}})
    details = score(real, real[1:3] + [wrong_locals] + real[4:], ended=True)
    assert details["metrics"]["first_divergence"] == 4 and details["metrics"]["prefix_accuracy"] == 2 / 5
    assert details["divergence"]["why"] == "locals differs" and details["frames_matched_anywhere"] == 4

    early = score(real, real[1:3], ended=True)
    assert early["metrics"]["first_divergence"] == 4 and early["divergence"]["why"] == "the model ended the trace early"
    went_on = score(real, real[1:] + [real[-1]], ended=False)
    assert went_on["metrics"]["prefix_accuracy"] == 1.0 and went_on["metrics"]["exact_match"] == 0.0
    assert went_on["metrics"]["first_divergence"] == 7
    assert score(real, real[1:], ended=False)["metrics"]["exact_match"] == 0.0  # cut at the bound: not exact
    garbage = Frame(event="malformed", line="I think x is 12", error="does not start with an event token")
    assert score(real, [garbage], ended=False)["metrics"]["prefix_accuracy"] == 0.0


def frames_as_replies(frames: list[Frame]) -> list[str]:
    return [render_frame(frame) for frame in frames]


def run(tmp_path: Path, run_id: str, task: str, replies: list[str], *extra: str) -> tuple[TrialResult, list[dict]]:
    with ScriptedServer(replies) as server:
        proc = cwm_eval("run", "trace-prediction", "--task", task, "--run-id", run_id, "--output", str(tmp_path),
                        "--model-url", server.url, "--temperature", "0.6", *extra)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        requests = server.requests
    result = TrialResult.model_validate_json((tmp_path / run_id / "trials" / task / "0" / "result.json").read_text())
    return result, requests


def test_suite_end_to_end_correct_wrong_off_format_and_runaway(tmp_path, base_image):
    real = real_frames("gcd")
    program = PROGRAMS["gcd"]
    # correct: each frame, then the end of the trace; one frame carries the stop string and the end (a server that
    # ignores `stop`): only the frame is taken
    replies = frames_as_replies(real[1:])
    replies[-1] += FRAME_SEP + END_OF_TEXT
    exact, requests = run(tmp_path, "tp-exact", "gcd", replies + [END_OF_TEXT])
    assert exact.outcome is Outcome.RESOLVED and exact.usage.model_calls == len(real)
    assert exact.verifier["metrics"]["prefix_accuracy"] == 1.0 and exact.verifier["real_end"] == "returned"
    first = requests[0]
    assert first["prompt"] == [trace_prompt(program.code, program.entry) + render(real[:1])]  # only the call is given
    assert first["stop"] == [FRAME_SEP, END_OF_TEXT] and first["temperature"] == 0.6
    assert first["skip_special_tokens"] is False  # vLLM: the special tokens come back as text
    assert requests[3]["prompt"][0] == first["prompt"][0] + render(real[1:4])  # each predicted frame appended

    wrong = [*real[1:3], Frame(**{**vars(real[3]), "locals": {"a": "'8'", "b": "'4'"}}), *real[4:]]
    diverged, _ = run(tmp_path, "tp-wrong", "gcd", frames_as_replies(wrong) + [END_OF_TEXT])
    assert diverged.outcome is Outcome.UNRESOLVED and diverged.reason == "frame 4: locals differs"
    assert diverged.verifier["metrics"]["first_divergence"] == 4
    assert diverged.verifier["metrics"]["prefix_accuracy"] == pytest.approx(2 / (len(real) - 1))

    assert "built-in trace texts: not comparable" in exact.config
    off_format, requests = run(tmp_path, "tp-prose", "gcd", ["The function computes the gcd, which is 4."],
                               "--cwm-source", str(CWM_FIXTURE))  # the trace texts come from the checkout
    assert "def gcd(a, b):  # >> FIXTURE_TRACE_ENTRY\n" in requests[0]["prompt"][0]
    assert "CWM's trace texts" in off_format.config
    assert off_format.outcome is Outcome.UNRESOLVED and len(requests) == 1  # a malformed frame ends the prediction
    assert off_format.verifier["metrics"]["prefix_accuracy"] == 0.0
    assert "malformed frame" in off_format.reason

    runaway, requests = run(tmp_path, "tp-runaway", "gcd", [render_frame(real[1])] * 50)  # never ends
    assert len(requests) == len(real) and runaway.outcome is Outcome.UNRESOLVED  # the frame bound: real + 1

    board = json.loads(cwm_eval("report", "--results", str(tmp_path), "--format", "json").stdout)["leaderboard"]
    rows = {r["config"].split("(")[-1]: r for r in board if r["suite"] == "trace-prediction"}
    built_in, cwm = rows["built-in trace texts: not comparable)"], rows["CWM's trace texts)"]  # a row per config
    assert built_in["trials"] == 3 and built_in["resolved_pct"] == pytest.approx(100 / 3)
    assert built_in["exact_match"] == pytest.approx(100 / 3)
    assert built_in["prefix_accuracy"] == pytest.approx(100 * (1 + 2 / 7 + 1 / 7) / 3)
    assert built_in["first_divergence"] == pytest.approx((4 + 3) / 2)  # over the diverged trials
    assert cwm["trials"] == 1 and cwm["prefix_accuracy"] == 0.0 and cwm["first_divergence"] == 2
    markdown = cwm_eval("report", "--results", str(tmp_path)).stdout
    assert "Prefix accuracy %" in markdown and "First divergence (mean frame)" in markdown

    with ScriptedServer([]) as server:  # resume: the trial is finished, nothing is asked again
        proc = cwm_eval("run", "trace-prediction", "--task", "gcd", "--run-id", "tp-exact", "--output", str(tmp_path),
                        "--model-url", server.url, "--temperature", "0.6")
        assert proc.returncode == 0, proc.stderr
        assert server.requests == []


def test_a_program_file_in_the_schema_and_bad_ones(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"id": "x", "code": "def g(): pass"}) + "\n")
    assert_one_line_error(cwm_eval("run", "trace-prediction", "--dataset", str(bad)), "bad.jsonl:1", "entry")
    assert_one_line_error(cwm_eval("run", "trace-prediction", "--task", "nope"), "unknown program id nope", "gcd")
    assert_one_line_error(cwm_eval("run", "trace-prediction", "--agent", "oracle"),
                          "suite trace-prediction samples a model")
    assert_one_line_error(cwm_eval("run", "trace-prediction", "--attempts", "3"), "use --samples, not --attempts")
