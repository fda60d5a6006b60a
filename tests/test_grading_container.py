"""SWE-bench's grading container, started while the agent works (issue 14, item 3), tried in real containers through
the real runner on the demo suite: a hostile agent cannot reach or change it, it is removed however the trial ends,
and it grades exactly as a container started at grading time does."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest

from agents.base import AgentResult, TrialEnv
from harness.config import RunConfig
from harness.records import ExitStatus, Outcome
from harness.runner import Runner
from harness.sandbox import PHASE_LABEL, RUN_LABEL, docker_client
from tasks import load_suite
from tasks.swebench.apply import EVAL_FILE, Applied
from tasks.swebench.containers import VerifyContainer, put_files
from tasks.swebench.grading import grade, instance_logger, ready_eval

TASK = "demo__calc-1"
FORGED = "FORGED-BY-THE-AGENT"
# rewrites, in its own container, every file the grader uses in the grading container, and forges a passing log
WRITER = (f"while :; do printf '#!/bin/bash\\necho {FORGED}; echo \"tests/test_stats.py::test_median_even PASSED\"\\n'"
          " > /eval.sh; cp /eval.sh /tmp/patch.diff; sleep 0.1; done")


def demo_task():
    suite = load_suite("demo")
    [task] = suite.load([TASK])
    suite.prepare(task)
    return suite, task


def no_fix(gold: str) -> str:
    """The gold patch's hunk with a comment in place of the fix: it applies, and the failing test still fails."""
    hunk = "+    if len(ordered) % 2 == 0:\n+        return (ordered[middle - 1] + ordered[middle]) / 2\n"
    assert hunk in gold
    return gold.replace(hunk, "+    # no fix\n").replace("@@ -14,6 +14,8 @@", "@@ -14,6 +14,7 @@")


def verify_containers(run_id: str, running: bool = False) -> list:
    labels = [f"{RUN_LABEL}={run_id}", f"{PHASE_LABEL}=verify"]
    return docker_client().containers.list(all=not running, filters={"label": labels})


def run_trial(tmp_path: Path, agent, run_id: str, suite=None, **options):
    """One trial through the runner's own trial code (not `Runner.run`, whose final sweep would hide a leak)."""
    default_suite, task = demo_task()
    config = RunConfig(suite="demo", agent=agent.name, run_id=run_id, output=tmp_path, **options)
    return asyncio.run(Runner(config, suite or default_suite, agent).run_trial(task, 0))


class HostileAgent:
    """Looks for the grading container while it works, attacks it from its own container, submits a non-fix."""

    name, model = "hostile", None

    def __init__(self, run_id: str):
        self.run_id, self.seen, self.notes = run_id, None, {}

    async def solve(self, env: TrialEnv) -> AgentResult:
        deadline = time.monotonic() + 60
        while not (found := verify_containers(self.run_id, running=True)) and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        [self.seen] = found  # the grading container is up while the agent works
        env.sandbox.container.reload()
        self.notes["agent"] = env.sandbox.container.attrs
        address = self.seen.attrs["NetworkSettings"]["IPAddress"]
        env.session.run(f"setsid bash -c {json.dumps(WRITER)} >/dev/null 2>&1 </dev/null &")
        probe = (f"python3 -c \"import socket; socket.create_connection(('{address}', 22), timeout=3)\" "
                 "2>/dev/null && echo reached || echo unreachable")
        self.notes["probe"] = env.session.run(probe).output.strip()
        sockets = "ls /var/run/docker.sock /run/docker.sock 2>&1 | grep -c 'No such'"
        self.notes["socket"] = env.session.run(sockets).output
        self.notes["processes"] = env.session.run("ps -eo args").output
        self.notes["writer"] = env.session.run("sleep 0.3; cat /eval.sh").output
        patch = no_fix(env.task.metadata["patch"])
        return AgentResult(exit_status=ExitStatus.SUBMITTED, submitted_patch=patch, graded=True)


def test_a_hostile_agent_cannot_reach_or_change_the_grading_container(tmp_path):
    agent = HostileAgent("hostile")
    result = run_trial(tmp_path, agent, "hostile")
    assert agent.seen is not None and FORGED in agent.notes["writer"]  # up while the agent worked; writer running
    grading, mine = agent.seen.attrs, agent.notes["agent"]
    log = (tmp_path / "hostile/trials" / TASK / "0/verifier/run_instance.log").read_text()
    assert f"started: {grading['Id']}" in log and grading["Id"] != mine["Id"]  # the one started ahead graded it
    assert grading["Mounts"] == [] and mine["Mounts"] == []  # no volume, no bind, no Docker socket
    for key in ("PidMode", "IpcMode", "NetworkMode", "UTSMode"):
        assert not str(grading["HostConfig"].get(key) or "").startswith("container:"), key
        assert not str(mine["HostConfig"].get(key) or "").startswith("container:"), key
    assert agent.notes["probe"] == "unreachable" and agent.notes["socket"].strip() == "2"
    assert "tail -f /dev/null" not in agent.notes["processes"]  # the grader's processes are not the agent's to see
    output = (tmp_path / "hostile/trials" / TASK / "0/verifier/test_output.txt").read_text()
    assert FORGED not in output and "1 failed" in output
    assert result.outcome is Outcome.UNRESOLVED and result.reward == 0.0 and result.error is None
    assert verify_containers("hostile") == []


class EndingAgent:
    """Ends its trial one way: graded, past the agent timeout, crashed, or waiting to be cancelled."""

    name, model = "ending", None

    def __init__(self, how: str):
        self.how, self.started = how, None

    async def solve(self, env: TrialEnv) -> AgentResult:
        self.started.set()
        if self.how == "crash":
            raise RuntimeError("the agent crashed")
        if self.how in ("timeout", "cancel"):
            await asyncio.sleep(120)
        return AgentResult(exit_status=ExitStatus.SUBMITTED, submitted_patch=env.task.metadata["patch"], graded=True)


def broken_suite():
    suite = load_suite("demo")

    def broken_verify(*args, **kwargs):
        raise RuntimeError("a bug in the grader")

    suite.verify = broken_verify
    return suite


def run_until(tmp_path: Path, how: str, run_id: str):
    """The trial ended `how`; its result (None when cancelled)."""
    agent = EndingAgent(how)
    default_suite, task = demo_task()
    suite = broken_suite() if how == "grader crash" else default_suite
    config = RunConfig(suite="demo", agent=agent.name, run_id=run_id, output=tmp_path,
                       trial_timeout=3 if how == "timeout" else 600)

    async def go():
        agent.started = asyncio.Event()
        trial = asyncio.create_task(Runner(config, suite, agent).run_trial(task, 0))
        if how != "cancel":
            return await trial
        await agent.started.wait()
        trial.cancel()
        with pytest.raises(asyncio.CancelledError):
            await trial
        return None

    return asyncio.run(go())


@pytest.mark.parametrize("how,outcome", [("graded", Outcome.RESOLVED), ("timeout", Outcome.UNRESOLVED),
                                         ("crash", Outcome.ERROR), ("grader crash", Outcome.ERROR),
                                         ("cancel", None)])
def test_the_grading_container_is_removed_however_the_trial_ends(tmp_path, how, outcome):
    run_id = f"ends-{how.replace(' ', '-')}"
    since = int(time.time()) - 1
    result = run_until(tmp_path, how, run_id)
    assert (result.outcome if result is not None else None) is outcome, result and (result.error, result.verifier)
    events = docker_client().events(since=since, until=int(time.time()) + 1, decode=True,
                                    filters={"type": "container", "label": [f"{RUN_LABEL}={run_id}",
                                                                             f"{PHASE_LABEL}=verify"]})
    actions = [event["Action"] for event in events]
    assert "create" in actions and "destroy" in actions, actions  # one was started, and removed
    assert verify_containers(run_id) == []  # removed by the trial itself, before any sweep of the run


def test_a_started_container_grades_as_a_fresh_one_and_only_once(tmp_path):
    suite, task = demo_task()
    gold = task.metadata["patch"]
    bad = "diff --git a/calc/stats.py b/calc/stats.py\n--- a/calc/stats.py\n+++ b/calc/stats.py\n@@ -1 +1 @@\n-x\n+y\n"
    used = []
    for name, patch in (("gold", gold), ("no-fix", no_fix(gold)), ("bad", bad)):
        verifier = VerifyContainer(task.image)
        used.append(verifier.id)
        try:
            warm = grade(task.metadata, patch, tmp_path / name / "warm", verifier=verifier)
            assert verifier.take() is None  # used once, never handed out again
        finally:
            verifier.close()
        fresh = grade(task.metadata, patch, tmp_path / name / "fresh")
        assert warm.resolved is fresh.resolved and warm.details == fresh.details, name
        logs = [sorted(p.name for p in (tmp_path / name / kind).iterdir()) for kind in ("warm", "fresh")]
        assert logs[0] == logs[1], name
    assert not set(used) & {c.id for c in docker_client().containers.list(all=True)}  # closed: removed


def test_swebench_fallback_chain_runs_after_the_first_try(tmp_path):
    """A patch only `patch --fuzz` applies: the first try (its exec shared) fails, the rest of swebench's chain runs."""
    _, task = demo_task()
    fuzzy = task.metadata["patch"].replace("     ordered = sorted(values)\n",
                                           "     ordered = sorted(values)  # context that is not there\n")
    verdict = grade(task.metadata, fuzzy, tmp_path)
    log = (tmp_path / "run_instance.log").read_text()
    assert log.count("Failed to apply patch to container") == 3 and "with fuzz" in log
    assert "Git diff before:\ndiff --git a/calc/stats.py" in log
    assert verdict.resolved and verdict.details["patch_successfully_applied"]


def test_the_eval_script_run_is_always_the_graders(tmp_path):
    """An /eval.sh found changed after the apply chain (or not checked) is put in again before the tests run."""
    _, task = demo_task()
    from swebench.harness.utils import make_test_spec

    spec = make_test_spec(task.metadata)
    verifier = VerifyContainer(task.image)
    try:
        container = verifier.take()
        logger = instance_logger(tmp_path / "run_instance.log")
        for blob in ("0" * 40, None):
            put_files(container, {EVAL_FILE: b"echo stale\n"})
            ready_eval(container, spec, Applied(True, "", blob), tmp_path, logger, None)
            assert container.exec_run(["cat", EVAL_FILE]).output.decode() == spec.eval_script
    finally:
        verifier.close()
