"""Model-server faults are infrastructure; any OpenAI-compatible endpoint works (issue 12, items 3 and 9).

A hung, dying or key-refusing server ends the trial as `error` (not scored, redone on resume), quickly; a flaky
one (three 500s) ends in a normal verdict. A strict server (OpenAI's fields only, a key required) gets no
vLLM-only field and the trial resolves.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import run_demo, turn
from pydantic import SecretStr
from scripted_server import ScriptedServer
from test_agent import SUMMARY, TASK, fix_and_submit

from agents import make_agent
from harness.errors import UserError
from harness.model import ModelClient, ModelServerError
from harness.records import ExitStatus, Outcome

KEY = "sk-test-0123456789"
VLLM_ONLY = ("return_token_ids", "stop_token_ids", "chat_template_kwargs", "skip_special_tokens", "top_k",
             "repetition_penalty", "include_stop_str_in_output")
LOOK = turn("Look around.", "bash", "ls")


@pytest.fixture
def short_faults(monkeypatch):
    """A 2 s request timeout and a 3 s retry window, so that fault tests end in seconds."""
    monkeypatch.setenv("CWM_EVAL_MODEL_TIMEOUT", "2")
    monkeypatch.setenv("CWM_EVAL_MODEL_RETRY_WINDOW", "3")


def run_one(tmp_path, url, **options):
    started = time.monotonic()
    [result] = run_demo(tmp_path, "cwm", task_ids=[TASK], model_url=url, **options)
    return result, time.monotonic() - started


# item 3: model-server faults are infrastructure

def test_a_hung_server_times_out_and_is_an_infrastructure_error(tmp_path, short_faults):
    with ScriptedServer(fix_and_submit() + [SUMMARY], faults=["ok"] + ["hang"] * 20) as server:
        result, seconds = run_one(tmp_path, server.url, run_options={"trial_timeout": 20})
    assert result.outcome is Outcome.ERROR and result.exit_status is ExitStatus.INFRA_ERROR, result
    assert not result.finished  # redone on resume
    assert "ModelServerError" in result.error and "no reply" in result.error and "request timeout 2 s" in result.error
    assert result.reason is None and "harness_error" not in result.flags
    assert len(server.requests) == 1 and server.faulted[0] == "hang" and seconds < 60


def test_a_frozen_server_is_found_by_its_probes_before_the_request_timeout():
    with ScriptedServer([LOOK], faults=["freeze"]) as server:
        client = ModelClient(server.url, model="scripted-model", timeout=300, retry_window=0.5,
                             probe_interval=0.3, probe_timeout=0.3)
        started = time.monotonic()
        with pytest.raises(ModelServerError, match="stopped answering"):
            asyncio.run(client.chat([{"role": "user", "content": "hi"}], 16))
    assert time.monotonic() - started < 10


def test_three_500s_then_answers_end_in_a_normal_verdict(tmp_path):
    # default timeout and retry window; the only endpoint is retried with backoff, never shelved for good
    with ScriptedServer(fix_and_submit() + [SUMMARY], faults=["ok", "500", "500", "500"]) as server:
        result, _ = run_one(tmp_path, server.url)
    assert result.outcome is Outcome.RESOLVED and result.exit_status is ExitStatus.SUBMITTED, result.error
    assert server.faulted == ["500"] * 3 and result.turns == 6


def test_a_server_killed_mid_run_is_an_error_and_resume_redoes_the_trial(tmp_path, short_faults):
    with ScriptedServer([LOOK] * 5, die_after=2) as server:
        result, seconds = run_one(tmp_path, server.url, run_id="killed")
    assert result.outcome is Outcome.ERROR and result.exit_status is ExitStatus.INFRA_ERROR, result
    assert "ModelServerError" in result.error and "gave up after" in result.error and "Connection error" in result.error
    assert result.turns == 0 and seconds < 60  # the turns are in the trajectory; the trial is not scored
    with ScriptedServer(fix_and_submit() + [SUMMARY]) as server:
        resumed, _ = run_one(tmp_path, server.url, run_id="killed")
    assert resumed.outcome is Outcome.RESOLVED, resumed.error


# item 9: any OpenAI-compatible endpoint

def test_a_strict_server_with_an_api_key_gets_openai_fields_only_and_resolves(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    with ScriptedServer(fix_and_submit() + [SUMMARY], strict=True, api_key=KEY) as server:
        result, _ = run_one(tmp_path, server.url, logprobs=True)
    assert result.outcome is Outcome.RESOLVED and result.exit_status is ExitStatus.SUBMITTED, result.error
    assert server.rejected == [] and len(server.requests) == 6
    for request in server.requests:
        assert not set(request) & set(VLLM_ONLY)
        assert {m["role"] for m in request["messages"]} <= {"system", "user", "assistant"}
    # CWM's tool observation went as a user message, with its text unchanged
    assert server.requests[1]["messages"][3]["content"].startswith("<output>\n")


def test_vllm_gets_its_own_fields_and_other_servers_do_not():
    messages = [{"role": "user", "content": "hi"}, {"role": "tool: bash", "content": "out"}]
    for strict in (False, True):
        with ScriptedServer([LOOK], strict=strict) as server:
            client = ModelClient(server.url, request_defaults={"stop_token_ids": [1], "chat_template_kwargs": {}})
            client.check()
            asyncio.run(client.chat(messages, 16))
        [request] = server.requests
        assert client.vllm is not strict and server.rejected == []
        assert ("return_token_ids" in request and "stop_token_ids" in request) is not strict
        assert request["messages"][1]["role"] == ("user" if strict else "tool: bash")


def test_the_api_key_is_sent_and_a_wrong_one_is_refused_in_one_clear_line(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with ScriptedServer([LOOK], strict=True, api_key=KEY) as server:
        assert make_agent("cwm", model_url=server.url, api_key=SecretStr(KEY)).model == "scripted-model"
        with pytest.raises(UserError, match=r"refused the API key \(HTTP 401\); pass the right one with --api-key"):
            make_agent("cwm", model_url=server.url, api_key="sk-wrong")
        with pytest.raises(UserError, match="refused the API key"):
            make_agent("cwm", model_url=server.url)  # no key at all


def test_a_key_refused_during_a_trial_is_an_error_with_a_clear_message(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    with ScriptedServer(fix_and_submit() + [SUMMARY], strict=True, api_key=KEY, faults=["ok", "401"]) as server:
        result, seconds = run_one(tmp_path, server.url)
    assert result.outcome is Outcome.ERROR and result.exit_status is ExitStatus.INFRA_ERROR, result
    assert "refused the API key (HTTP 401" in result.error and "--api-key or OPENAI_API_KEY" in result.error
    assert server.faulted == ["401"] and len(server.requests) == 1 and seconds < 60


def test_cli_sends_api_key_and_refuses_a_wrong_one(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"}
    command = [sys.executable, "-m", "harness.cli", "run", "demo", "--task", TASK, "--output", str(tmp_path)]
    root = Path(__file__).resolve().parent.parent
    with ScriptedServer(fix_and_submit() + [SUMMARY], strict=True, api_key=KEY) as server:
        wrong = subprocess.run([*command, "--model-url", server.url, "--api-key", "sk-wrong", "--run-id", "wrong"],
                               capture_output=True, text=True, cwd=root, env=env)
        assert wrong.returncode == 2, wrong.stdout + wrong.stderr
        assert "refused the API key" in wrong.stdout + wrong.stderr and "Traceback" not in wrong.stderr
        right = subprocess.run([*command, "--model-url", server.url, "--run-id", "right"], capture_output=True,
                               text=True, cwd=root, env={**env, "OPENAI_API_KEY": KEY})
    assert right.returncode == 0, right.stdout + right.stderr
    assert server.rejected == ["api key"] and KEY not in (tmp_path / "right" / "run.json").read_text()
    assert '"outcome": "resolved"' in (tmp_path / "right" / "trials" / TASK / "0" / "result.json").read_text()
