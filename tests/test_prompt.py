"""`cwm-eval prompt`: exactly the agent's first messages, from CWM's source or cwm-eval's own texts."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from agents.cwm.agent import CwmConfig, initial_messages
from agents.cwm.cwm_source import load_cwm_texts
from agents.cwm.texts import ProjectTexts
from harness.conversation import CharEstimate
from tasks import load_suite

FIXTURE = Path(__file__).parent / "fixtures" / "cwm_source"
TASK = "demo__calc-1"


def cwm_eval(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("tools", ["bash,edit,create,submit", "bash,submit"])
@pytest.mark.parametrize("source", [None, FIXTURE])
def test_prompt_prints_the_first_messages(tools, source):
    args = ["prompt", "demo", "--task", TASK, "--tools", tools] + (["--cwm-source", str(source)] if source else [])
    proc = cwm_eval(*args)
    assert proc.returncode == 0, proc.stderr
    printed = json.loads(proc.stdout)
    [task] = load_suite("demo").load([TASK])
    texts = load_cwm_texts(FIXTURE) if source else ProjectTexts()
    expected = initial_messages(task, None, texts, CwmConfig(tools=tools.split(",")), CharEstimate())
    assert printed == {"messages": expected, "workdir": "/testbed"}
    system = printed["messages"][0]["content"]
    assert ("<tool: edit>" in system) is (tools != "bash,submit")
    if source:  # the fixture's invented texts, filled in
        assert system.startswith("FIXTURE") and "120-second" in system
        assert task.instruction in printed["messages"][1]["content"]


def test_prompt_text_format_and_bad_input():
    proc = cwm_eval("prompt", "demo", "--task", TASK, "--format", "text")
    assert proc.returncode == 0 and proc.stdout.startswith("=== system ===\n")
    assert "=== workdir ===\n/testbed" in proc.stdout
    bad = cwm_eval("prompt", "demo", "--task", TASK, "--tools", "bash,edit")
    assert bad.returncode == 2 and "--tools bash,edit" in bad.stderr and "Traceback" not in bad.stderr
    missing = cwm_eval("prompt", "demo", "--task", TASK, "--cwm-source", "/nonexistent")
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
