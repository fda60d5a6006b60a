"""`cwm-eval trace`: in a container with the network off, its output formats, its errors, CWM's prompt texts from
--cwm-source, and the neural debugger against the scripted server (a model right, wrong, off-format, hostile)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from scripted_server import ScriptedServer
from test_cli_errors import assert_one_line_error

from harness.traces.format import END_OF_TEXT, FRAME_SEP, START_MARKER, Frame, render, render_frame, trace_prompt
from harness.traces.tracer import trace_call

FIXTURE_SOURCE = Path(__file__).resolve().parent / "fixtures" / "cwm_source"
PROGRAM = '''\
import socket
import time


def count_letters(s, letter):
    n = 0
    for c in s:
        n += int(c == letter)
    return n


def f(word, c):
    num = count_letters(word, c)
    return f"{num} x {c!r}"


def reach_out():
    names = [name for _, name in socket.if_nameindex()]
    try:
        socket.create_connection(("1.1.1.1", 53), timeout=5)
        errno = 0
    except OSError as exc:
        errno = exc.errno
    return names, errno


def spin():
    n = 0
    while True:
        n += 1


def sleepy():
    time.sleep(120)
'''
ARGS = '["berry", "r"]'


def cwm_eval(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def program(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("trace") / "program.py"
    path.write_text(PROGRAM)
    return path


def real_trace(program: Path):
    return trace_call(PROGRAM, "f", json.loads(ARGS), filename=str(program))


# -- tracing in a container ---------------------------------------------------------------------------------------


def test_trace_in_a_container_prints_cwms_format(program, base_image):
    proc = cwm_eval("trace", str(program), "--entry", "f", "--args", ARGS)
    assert proc.returncode == 0, proc.stderr
    expected = real_trace(program)
    assert proc.stdout == expected.render() + "\n"
    assert proc.stdout.startswith('<|call_sep|>{"word": "\'berry\'", "c": "\'r\'"}<|action_sep|>def f(word, c):\n'
                                  "<|frame_sep|>")
    assert proc.stdout.endswith('<|arg_sep|>"\\"2 x \'r\'\\""<|frame_sep|><|end_of_text|>\n')


def test_the_container_has_no_network(program, base_image):
    proc = cwm_eval("trace", str(program), "--entry", "reach_out", "--format", "json")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert (result["end"], result["detail"]) == ("returned", "(['lo'], 101)")  # loopback only; ENETUNREACH


def test_a_non_terminating_program_in_the_container_ends_at_the_frame_bound(program, base_image):
    proc = cwm_eval("trace", str(program), "--entry", "spin", "--max-frames", "20")
    assert proc.returncode == 0, proc.stderr
    frames, marker = proc.stdout.rstrip("\n").rsplit("\n", 1)
    assert frames.count(FRAME_SEP) == 20 and END_OF_TEXT not in frames
    assert marker.startswith("# end: TRACE CUT: frame limit: stopped at the frame limit (20 frames)")


def test_a_sleeping_program_in_the_container_is_killed_at_the_timeout(program, base_image):
    proc = cwm_eval("trace", str(program), "--entry", "sleepy", "--timeout", "1", "--format", "text")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.rstrip().splitlines()[-1].startswith(
        "end: TRACE CUT: timeout: killed at the timeout (1 s)  (2 frames")


# -- formats and prompt texts (local subprocess: the same tracer, faster) ------------------------------------------


def test_text_format_is_readable(program):
    proc = cwm_eval("trace", str(program), "--entry", "f", "--args", ARGS, "--local", "--format", "text")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].split() == ["#", "event", "line", "source", "locals", "changed", "/", "value"]
    assert lines[1].split() == ["0", "call", "12", "def", "f(word,", "c):", "word='berry',", "c='r'"]
    assert lines[-2].split()[:3] == ["18", "return", "14"] and lines[-2].endswith("-> \"2 x 'r'\"")
    assert lines[-1] == "end: returned: \"2 x 'r'\"  (19 frames, sys.settrace)"


def test_prompt_uses_builtin_texts_without_cwm_source(program):
    proc = cwm_eval("trace", str(program), "--entry", "f", "--args", ARGS, "--local", "--prompt")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(trace_prompt(PROGRAM, "f") + "<|call_sep|>")
    assert f"def f(word, c):{START_MARKER}\n" in proc.stdout
    labelled = json.loads(cwm_eval("trace", str(program), "--entry", "f", "--args", ARGS, "--local",
                                   "--format", "json").stdout)
    assert labelled["texts"].startswith("built-in")


def test_prompt_texts_come_from_cwm_source(program):
    proc = cwm_eval("trace", str(program), "--entry", "f", "--args", ARGS, "--local", "--prompt",
                    "--cwm-source", str(FIXTURE_SOURCE))
    assert proc.returncode == 0, proc.stderr
    assert "def f(word, c):  # >> FIXTURE_TRACE_ENTRY\n" in proc.stdout and "START_OF_TRACE" not in proc.stdout
    labelled = json.loads(cwm_eval("trace", str(program), "--entry", "f", "--args", ARGS, "--local",
                                   "--format", "json", "--cwm-source", str(FIXTURE_SOURCE)).stdout)
    assert labelled["texts"] == f"CWM source {FIXTURE_SOURCE}"


def test_builtin_texts_equal_cwms_own(cwm_checkout):
    from agents.cwm.cwm_source_traces import load_trace_texts
    from harness.traces.format import BUILTIN_TEXTS

    texts = load_trace_texts(cwm_checkout)
    assert (texts.marker, texts.prefix, texts.suffix) == (BUILTIN_TEXTS.marker, BUILTIN_TEXTS.prefix,
                                                          BUILTIN_TEXTS.suffix)


# -- errors -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("args,needles", [
    (["trace", "/nonexistent/prog.py", "--entry", "f"], ["/nonexistent/prog.py does not exist"]),
    (["trace", "{program}", "--entry", "nope"], ["no function 'nope'"]),
    (["trace", "{program}", "--entry", "f", "--args", "[1,"], ["--args is not valid JSON"]),
    (["trace", "{program}", "--entry", "f", "--args", "3"], ["--args must be a JSON list"]),
    (["trace", "{broken}", "--entry", "f"], ["not valid Python (line 1"]),
    (["trace", "{raising}", "--entry", "f", "--local"], ["raising.py: RuntimeError: at import"]),
    (["trace", "{program}", "--entry", "f", "--format", "xml"], ["unknown --format 'xml'"]),
    (["trace", "{program}", "--entry", "f", "--predict-from", "2"], ["--predict-from needs --model-url"]),
    (["trace", "{program}", "--entry", "f", "--cwm-source", "{program}"], ["not a directory"]),
    (["trace", "{program}", "--entry", "f", "--cwm-source", "/"], ["demos/cwmdbg.py not found"]),
    (["trace", "{program}", "--entry", "f", "--local", "--args", ARGS, "--predict-from", "99", "--model-url",
      "http://127.0.0.1:9/v1"], ["--predict-from 99: the real trace has only 19 frames"]),
])
def test_bad_input_is_one_line(program, tmp_path, args, needles):
    broken, raising = tmp_path / "broken.py", tmp_path / "raising.py"
    broken.write_text("def f(:\n")
    raising.write_text('raise RuntimeError("at import")\n\ndef f():\n    pass\n')
    args = [a.format(program=program, broken=broken, raising=raising) for a in args]
    assert_one_line_error(cwm_eval(*args), *needles)


# -- the neural debugger ------------------------------------------------------------------------------------------

GIVEN = 5


def debug(program: Path, server: ScriptedServer, *extra: str) -> dict:
    proc = cwm_eval("trace", str(program), "--entry", "f", "--args", ARGS, "--local", "--predict-from", str(GIVEN),
                    "--model-url", server.url, "--format", "json", *extra)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def replies(frames: list[Frame]) -> list[str]:
    return [render_frame(frame) + FRAME_SEP for frame in frames]  # as vLLM returns them (stop string kept)


def text_prompt(request: dict) -> str:
    prompt = request["prompt"]
    return prompt[0] if isinstance(prompt, list) and len(prompt) == 1 else prompt


def test_debugger_with_a_right_model(program):
    real = real_trace(program).frames
    with ScriptedServer(replies(real[GIVEN:]) + [""]) as server:
        report = debug(program, server)
    assert (report["exact"], report["first_divergence"], report["matched"], report["expected"]) == (True, None, 14, 14)
    assert report["model_ended"] and report["sampling"] == {"temperature": 0.6, "top_p": 0.95}
    prompts = [text_prompt(request) for request in server.requests]
    assert len(prompts) == 15  # one frame per request, then one that ends the trace
    base = trace_prompt(PROGRAM, "f")
    assert prompts == [base + render(real[:GIVEN + k]) for k in range(15)]
    first = server.requests[0]
    assert (first["stop"], first["temperature"], first["max_tokens"], first["skip_special_tokens"]) == (
        [FRAME_SEP], 0.6, 2048, False)


def test_debugger_with_a_wrong_model(program):
    real = real_trace(program).frames
    wrong = list(real[GIVEN:])
    assert wrong[5].locals["n"] == "1"
    wrong[5] = Frame("line", wrong[5].line, {**wrong[5].locals, "n": "7"})
    with ScriptedServer(replies(wrong) + [END_OF_TEXT]) as server:
        report = debug(program, server, "--temperature", "0.2")
    assert (report["exact"], report["first_divergence"], report["prefix_matched"]) == (False, GIVEN + 5, 5)
    differences = [(f["index"], f["difference"]) for f in report["frames"] if not f["match"]]
    assert differences == [(10, "local n"), (11, "local n")]  # 11 writes ".." for n: the model's 7 carries on
    assert server.requests[0]["temperature"] == 0.2


def test_debugger_with_an_off_format_model(program):
    with ScriptedServer(["The next line sets n to 1."]) as server:
        report = debug(program, server)
    assert len(server.requests) == 1  # a malformed frame ends the continuation
    assert (report["exact"], report["first_divergence"], report["matched"]) == (False, GIVEN, 0)
    assert report["frames"][0]["difference"] == "malformed (does not start with an event token)"
    assert {f["difference"] for f in report["frames"][1:]} == {"missing (no prediction)"}


def test_debugger_against_hostile_models(program):
    """Packing the rest of the trace into one reply, stopping early, or never ending: none of them counts as right."""
    real = real_trace(program).frames
    packed = "".join(replies(real[GIVEN:])) + END_OF_TEXT
    with ScriptedServer([packed]) as server:
        report = debug(program, server)
    assert (report["exact"], report["matched"], report["first_divergence"]) == (False, 0, GIVEN)
    with ScriptedServer(replies(real[GIVEN:GIVEN + 3]) + [END_OF_TEXT]) as server:
        early = debug(program, server)
    assert (early["exact"], early["first_divergence"], early["matched"]) == (False, GIVEN + 3, 3)
    assert early["frames"][3]["difference"] == "missing (the model ended the trace)"
    endless = replies(real[GIVEN:]) + replies(real[-2:]) * 10
    with ScriptedServer(endless) as server:
        on_and_on = debug(program, server)
    assert len(server.requests) == 15  # the real remainder plus one
    assert (on_and_on["exact"], on_and_on["first_divergence"], on_and_on["matched"]) == (False, 19, 14)
    assert on_and_on["frames"][-1]["difference"] == "extra (the program had ended)"
