"""--guided-format: the turn-format regex (read with Python's `re`, as vLLM gets it) and the requests that carry it.

The e2e check against the real CPU vLLM server is in test_e2e_vllm.py.
"""

from __future__ import annotations

import asyncio
import json
import re
import types

import pytest
from helpers import run_demo, turn
from scripted_server import ScriptedServer

from agents.cwm.plugins.edit import BLOCK as EDIT_BLOCK
from agents.cwm.guided import bounds, structured_outputs, turn_pattern
from agents.cwm.texts import FormatError, ProjectTexts
from harness.cli import scenario_agent
from harness.config import RunConfig
from harness.errors import UserError
from harness.model import ModelClient
from harness.records import ExitStatus

TOOLS = ["bash", "edit", "create", "submit"]
TASK = "demo__calc-1"
EDIT = "calc/stats.py\n<<<<<<< SEARCH\n    if x < 0:\n=======\n    if x <= 0:\n>>>>>>> REPLACE"
WELL_FORMED = [
    "Look around.\n</think>\n<tool: bash>\nls -la && cat calc/*.py | head\n</tool>",
    "<think>\nThe prefill, written by the model.\n</think>\n<tool: bash>\npython3 -m pytest -q\n</tool>",
    "Fix it.\n</think>\n<tool: edit>\n" + EDIT + "\n</tool>",
    "New file.\n</think>\n<tool: create>\nt.py\nimport calc\nprint(calc)\n</tool>",
    "Hand it in.\n</think>\n<tool: submit>\n/tmp/fix.patch\n</tool>",
    "\n</think>\n<tool: bash>\nls\n</tool>",  # empty reasoning
]
MALFORMED = {
    "unclosed think": "I keep thinking and never stop",
    "think closed twice": "a\n</think>\nb\n</think>\n<tool: bash>\nls\n</tool>",
    "two tool calls": "a\n</think>\n<tool: bash>\nls\n</tool>\n<tool: bash>\npwd\n</tool>",
    "unknown tool": "a\n</think>\n<tool: python>\nprint(1)\n</tool>",
    "unclosed tool": "a\n</think>\n<tool: bash>\nls",
    "text after the call": "a\n</think>\n<tool: bash>\nls\n</tool>\nand more",
    "blank body": "a\n</think>\n<tool: bash>\n  \n</tool>",
    "a tag in the body": "a\n</think>\n<tool: bash>\necho </tool>\n</tool>",
    "a tag in the reasoning": "see <tool: bash>\n</think>\n<tool: bash>\nls\n</tool>",
    "an edit without a block": "a\n</think>\n<tool: edit>\ncalc/stats.py\nx = 1\n</tool>",
    "an edit with two blocks": "a\n</think>\n<tool: edit>\n" + EDIT + "\n" + EDIT + "\n</tool>",
    "an edit with an empty section":
        "a\n</think>\n<tool: edit>\np.py\n<<<<<<< SEARCH\n=======\nx\n>>>>>>> REPLACE\n</tool>",
    "a submission on two lines": "a\n</think>\n<tool: submit>\n/tmp/a.patch\n/tmp/b.patch\n</tool>",
}
FINAL_ANSWER = "Done.\n</think>\n## Issue Summary\nThe mean of an empty list is 0 now."


def matches(reply: str, *, tools=TOOLS, max_tokens: int = 256, final_answer: bool = False) -> bool:
    return re.fullmatch(turn_pattern(tools, max_tokens, final_answer), reply) is not None


def parses(reply: str) -> tuple[str, str]:
    """The agent's checks: one `</think>`, then one call (ProjectTexts, CWM's order)."""
    assert reply.count("</think>") == 1
    return ProjectTexts().parse_tool_calls(reply.split("</think>", 1)[1])


@pytest.mark.parametrize("reply", WELL_FORMED)
def test_the_pattern_accepts_a_well_formed_call_to_each_tool_and_the_call_parses(reply):
    assert matches(reply) and matches(reply, final_answer=True)
    name, body = parses(reply)
    assert name in TOOLS and body.strip()


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_the_pattern_rejects_malformed_turns(case):
    assert not matches(MALFORMED[case]) and not matches(MALFORMED[case], final_answer=True)


def test_an_accepted_edit_is_one_block_the_plugin_parses():
    reply = WELL_FORMED[2]
    _, body = parses(reply)
    [(path, search, replace)] = EDIT_BLOCK.findall(body + "\n")  # the heredoc's newline
    assert (path, search, replace) == ("calc/stats.py", "    if x < 0:", "    if x <= 0:")


def test_a_final_answer_is_allowed_only_after_a_submission_and_is_the_agents_final_reply():
    assert not matches(FINAL_ANSWER) and matches(FINAL_ANSWER, final_answer=True)
    with pytest.raises(FormatError):  # no call: after a submission, the agent ends the episode on it
        parses(FINAL_ANSWER)


def test_only_the_runs_tools_are_allowed():
    edit = WELL_FORMED[2]
    assert matches(edit) and not matches(edit, tools=["bash", "submit"])
    assert matches(WELL_FORMED[0], tools=["bash", "submit"])


def test_a_turn_that_fills_the_pattern_still_fits_the_token_limit():
    """ASCII text without `<` is at least one character per token, so the longest such reply fits max_tokens."""
    for max_tokens in (256, 1024):
        reasoning, body = bounds(TOOLS, max_tokens)
        longest = "<think>\n" + "r" * reasoning + "\n</think>\n<tool: create>\n" + "b" * (body + 1) + "\n</tool>"
        assert matches(longest, max_tokens=max_tokens) and len(longest) <= max_tokens
        assert not matches(longest.replace("rr", "rrr", 1), max_tokens=max_tokens)
    assert bounds(TOOLS, 10 ** 6) == (4096, 16384)  # a real model's limit keeps the grammar small


def structured_requests(server: ScriptedServer) -> list:
    return [request.get("structured_outputs") for request in server.requests]


def test_guided_format_sends_the_pattern_on_every_request_and_is_recorded(tmp_path):
    script = [turn("Change a file.", "bash", "echo '# x' >> calc/stats.py && git diff > /tmp/fix.patch"),
              turn("Submit.", "submit", "/tmp/fix.patch"),
              turn("Summarise.")]
    with ScriptedServer(script) as server:
        [result] = run_demo(tmp_path, "cwm", task_ids=[TASK], model_url=server.url, guided_format=True,
                            max_action_len=256, run_id="guided")
    assert result.exit_status is ExitStatus.SUBMITTED and result.format_errors == 0
    before, _, after = structured_requests(server)
    assert before == structured_outputs(turn_pattern(TOOLS, 256, final_answer=False))
    assert after == structured_outputs(turn_pattern(TOOLS, 256, final_answer=True))  # the submission succeeded
    assert all(matches(reply, final_answer=True) for reply in script)
    run = json.loads((tmp_path / "guided" / "run.json").read_text())
    assert run["config"]["cwm"]["guided_format"] is True
    assert "guided-format" in result.config


def test_without_guided_format_no_request_carries_a_constraint(tmp_path):
    with ScriptedServer([turn("Look.", "bash", "ls")]) as server:
        [result] = run_demo(tmp_path, "cwm", task_ids=[TASK], model_url=server.url, max_turns=2)
    assert server.requests and structured_requests(server) == [None] * len(server.requests)
    assert "guided-format" not in result.config
    run = json.loads((tmp_path / "test-run" / "run.json").read_text())
    assert run["config"]["cwm"]["guided_format"] is False


def test_guided_format_needs_a_vllm_server(tmp_path):
    with ScriptedServer([], strict=True) as server, pytest.raises(UserError, match="--guided-format needs a vLLM"):
        run_demo(tmp_path, "cwm", task_ids=[TASK], model_url=server.url, guided_format=True)


def test_token_exact_completions_carry_the_constraint_too():
    tokenizer = types.SimpleNamespace(encode=lambda text, add_special_tokens=False: [ord(c) for c in text],
                                      eos_token_id=0)
    constraint = structured_outputs(turn_pattern(TOOLS, 64, final_answer=False))
    with ScriptedServer([turn("a", "bash", "ls")] * 2, tokenizer=tokenizer) as server:
        client = ModelClient(server.url, model="scripted-model")
        asyncio.run(client.complete([1, 2, 3], 64, structured=constraint))
        asyncio.run(client.complete([1, 2, 3], 64))
    assert structured_requests(server) == [constraint, None]


def test_the_codegen_scenario_refuses_guided_format():
    """LiveCodeBench codegen samples one answer per call, with no tool turns to constrain."""
    config = RunConfig(suite="livecodebench", run_id="r", agent="cwm", cwm={"guided_format": True})
    codegen = types.SimpleNamespace(name="livecodebench", trial=object(), samples=10)
    with pytest.raises(UserError, match="--guided-format"):
        scenario_agent(codegen, config, set())
