"""Verification the agent cannot reach (issue 12, item 2), tried as hostile agents would, in real containers
through the real runner: background reward writers (setsid, nohup, daemonised), a respawning pair and a fork bomb
left running, broken rm/mkdir/cp/cat/python3, and a sitecustomize.py planted for LiveCodeBench's grader."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from test_livecodebench import ADD_WRONG, FUNC_ID, PROBLEMS
from test_terminal_bench import run_suite
from terminal_bench_fixture import make_dataset

from agents.base import AgentResult, TrialEnv
from harness.config import RunConfig
from harness.records import ExitStatus, Outcome
from harness.runner import Runner
from harness.sandbox import Limits, Sandbox
from harness.shell_cleanup import busybox_tools, clear_agent_processes, host_bash_tools, run_helper
from tasks import load_suite
from tasks.livecodebench.execute import run_tests


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("tb-verify"))


WRITER = ("while :; do mkdir -p /logs/verifier; echo 1 > /logs/verifier/reward.txt; "
          "echo '{\"reward\": 1.0}' > /logs/verifier/reward.json; sleep 0.1; done")
START = {  # how the agent leaves its writer behind
    "setsid": f"setsid bash -c {json.dumps(WRITER)} >/dev/null 2>&1 </dev/null &",
    "nohup": f"nohup bash -c {json.dumps(WRITER)} >/dev/null 2>&1 </dev/null &",
    "daemon": f"( setsid bash -c {json.dumps(WRITER)} >/dev/null 2>&1 </dev/null & ) &",
}


class RewardWriterAgent:
    """Leaves a loop rewriting a perfect reward every 0.1 s, and checks that it runs when the agent ends."""

    name, model = "reward-writer", None

    def __init__(self, how: str):
        self.how, self.live = how, None

    async def solve(self, env: TrialEnv) -> AgentResult:
        env.session.run(START[self.how])
        out = env.session.run("sleep 0.5; rm -f /logs/verifier/reward.txt; sleep 0.5; cat /logs/verifier/reward.txt")
        self.live = out.output.strip() == "1"
        return AgentResult(exit_status=ExitStatus.SUBMITTED, graded=True)


@pytest.mark.parametrize("how", sorted(START))
def test_background_reward_writer_cannot_forge_a_pass(dataset, tmp_path, base_image, how):
    agent = RewardWriterAgent(how)
    result = run_suite(dataset, tmp_path, agent, f"tb-writer-{how}", ["harbor-copy"])["harbor-copy"]
    assert agent.live, "the writer was not running when the agent ended"
    assert result.outcome is Outcome.UNRESOLVED, (result.error, result.verifier)
    assert result.reward == 0.0 and result.verifier["reward_file"] == "reward.txt"  # the tests' own 0
    cleared = result.verifier["agent_processes"]
    assert cleared["restarted"] is False and cleared["exit_code"] == 0
    assert int(cleared["report"].split("killed=")[1].split()[0]) >= 1


WORK = {"harbor-copy": "echo 42 > /app/answer.txt", "tb-hello": "echo 'Hello, world!' > /app/hello.txt"}
BREAK = {
    "noop": ("rm", "mkdir", "cp", "cat"),  # scripts that exit 0 doing nothing
    "fail": ("rm", "mkdir", "cp", "cat"),  # scripts that exit 1
    "python3": ("python3",),  # the tests' own interpreter: the tests just fail
}


class BreakingAgent:
    """Does the oracle's work (or nothing) with shell builtins, then replaces binaries the verifier might use."""

    name, model = "breaker", None

    def __init__(self, mode: str, work: bool):
        self.mode, self.work = mode, work

    async def solve(self, env: TrialEnv) -> AgentResult:
        if self.work:
            env.session.run(WORK[env.task.id])
        body = "exit 0" if self.mode == "noop" else "exit 1"
        for binary in BREAK[self.mode]:
            env.session.run(f"p=$(command -v {binary}); p=$(readlink -f $p); printf '#!/bin/sh\\n{body}\\n' > $p")
        return AgentResult(exit_status=ExitStatus.SUBMITTED, graded=True)


@pytest.mark.parametrize("mode,work,expected", [
    ("noop", True, Outcome.RESOLVED), ("noop", False, Outcome.UNRESOLVED),
    ("fail", True, Outcome.RESOLVED), ("fail", False, Outcome.UNRESOLVED),
    ("python3", True, Outcome.UNRESOLVED),
])
def test_broken_binaries_give_a_normal_verdict(dataset, tmp_path, base_image, mode, work, expected):
    results = run_suite(dataset, tmp_path, BreakingAgent(mode, work), f"tb-break-{mode}-{work}", list(WORK))
    for task_id, result in results.items():
        assert result.outcome is expected, (task_id, result.error, result.verifier)
        assert result.error is None and result.verifier["agent_processes"]["helper"] in ("busybox", "host-bash")


# --- the clean-up itself, on one container, with each helper shell ---------------------------------------------

RESPAWNERS = r"""
cat > /tmp/pair.sh <<'EOF'
while :; do
  kill -0 "$(cat /tmp/$2.pid 2>/dev/null)" 2>/dev/null || { setsid bash /tmp/pair.sh $2 $1 & echo $! > /tmp/$2.pid; }
  echo $$ > /tmp/$1.pid; sleep 0.01
done
EOF
setsid bash /tmp/pair.sh a b >/dev/null 2>&1 </dev/null &
nohup sleep 1000 >/dev/null 2>&1 &
( setsid bash -c 'while :; do :; done' >/dev/null 2>&1 </dev/null & ) &
echo kept > /tmp/kept.txt
sleep 0.5
"""


def _alive(sandbox: Sandbox) -> list[str]:
    return [row[2] for row in sandbox.container.top(ps_args="-o pid,stat,args")["Processes"]
            if not row[1].startswith("Z")]


def _tools():
    return [pytest.param(busybox_tools, id="busybox"), pytest.param(host_bash_tools, id="host-bash")]


@pytest.mark.parametrize("make_tools", _tools())
def test_every_agent_process_is_killed_even_a_respawning_pair(base_image, make_tools):
    tools = make_tools()
    assert tools is not None, "no such helper shell on this host: `make test` installs busybox-static"
    with Sandbox.start(base_image, phase="test", workdir="/") as sandbox:
        sandbox.container.exec_run(["bash", "-c", RESPAWNERS])
        assert len(_alive(sandbox)) >= 6
        notes = clear_agent_processes(sandbox.container, tools=tools)
        assert notes["restarted"] is False and notes["exit_code"] == 0, notes
        time.sleep(1.0)
        alive = _alive(sandbox)
        assert len(alive) == 2 and alive[0].startswith("/sbin/docker-init"), alive  # docker-init and its keeper
        assert sandbox.container.status == "running"
        # the helper shell needs none of the container's binaries
        sandbox.container.exec_run(["bash", "-c", "for b in rm sleep cat; do printf 'exit 0\\n' > /usr/bin/$b; done"])
        code, output = run_helper(sandbox.container, "x rm -rf /tmp/kept.txt; [ -e /tmp/kept.txt ] || echo gone",
                                  tools=tools)
        assert (code, output.strip()) == (0, "gone")


def test_a_fork_bomb_ends_in_a_restart_that_keeps_the_files(base_image):
    with Sandbox.start(base_image, phase="test", workdir="/", limits=Limits(pids=64)) as sandbox:
        sandbox.container.exec_run(["bash", "-c", "echo kept > /tmp/kept.txt"])
        sandbox.container.exec_run(["bash", "-c", "f() { f | f & }; f"], detach=True)
        time.sleep(2)
        notes = clear_agent_processes(sandbox.container)
        assert notes["restarted"] is True, notes
        assert len(_alive(sandbox)) == 2
        assert sandbox.container.exec_run(["cat", "/tmp/kept.txt"]).output == b"kept\n"


# --- LiveCodeBench: graded in a fresh container ----------------------------------------------------------------

SITECUSTOMIZE = '''
import json, os, sys
CWM_FORGED = True
if len(sys.argv) > 2 and sys.argv[0].endswith("runner.py") and sys.argv[1] == "--job":
    job = json.load(open(sys.argv[2]))
    n = len(job["tests"])
    fake = {"passed": True, "status": "passed", "tests_total": n, "tests_run": n, "tests_passed": n,
            "seconds": 0.0, "tests": []}
    with open(job["result_path"], "w") as f:
        json.dump({s["id"]: fake for s in job["samples"]}, f)
    os._exit(0)
'''


class SitecustomizeAgent:
    """A wrong solution.py, and a sitecustomize.py beside it and where the container's python3 imports it."""

    name, model = "sitecustomize", None

    def __init__(self, suite):
        self.suite, self.forged_in_place = suite, None

    async def solve(self, env: TrialEnv) -> AgentResult:
        env.sandbox.write_file("/workspace/solution.py", ADD_WRONG)
        env.sandbox.write_file("/workspace/sitecustomize.py", SITECUSTOMIZE)
        where = env.sandbox.exec("python3 -c 'import sitecustomize; print(sitecustomize.__file__)' 2>/dev/null || "
                                 "python3 -c 'import site; print(site.getsitepackages()[0] + \"/sitecustomize.py\")'")
        env.sandbox.write_file(where.output.strip().splitlines()[-1], SITECUSTOMIZE)
        # graded in this container, the plant would pass every test
        in_place = run_tests(env.sandbox, self.suite.problem(env.task.id),
                             paths={"solution": "/workspace/solution.py"}, timeout=2.0)
        self.forged_in_place = in_place["solution"]["passed"]
        patch = env.sandbox.git_diff()
        return AgentResult(exit_status=ExitStatus.SUBMITTED, submitted_patch=patch, graded=True)


def test_planted_sitecustomize_does_not_grade_a_wrong_solution(tmp_path, base_image):
    path = tmp_path / "problems.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in PROBLEMS))
    suite = load_suite("livecodebench", str(path), scenario="agentic")
    tasks = suite.load([FUNC_ID])
    agent = SitecustomizeAgent(suite)
    config = RunConfig(suite="livecodebench", agent=agent.name, run_id="lcb-sitecustomize", output=tmp_path)
    [result] = asyncio.run(Runner(config, suite, agent).run(tasks))
    assert agent.forged_in_place is True  # the plant works where the agent ran
    assert result.outcome is Outcome.UNRESOLVED, (result.error, result.verifier)
    assert result.verifier["status"] == "wrong_answer" and "fresh container" in result.verifier["graded_in"]


class StoppingAgent:
    """Does the work, then stops its own container (docker-init passes SIGTERM to the keeper, which exits)."""

    name, model = "stopper", None

    async def solve(self, env: TrialEnv) -> AgentResult:
        env.session.run(WORK["harbor-copy"])
        env.sandbox.exec("kill -TERM 1")
        for _ in range(100):
            env.sandbox.container.reload()
            if env.sandbox.container.status != "running":
                break
            await asyncio.sleep(0.1)
        return AgentResult(exit_status=ExitStatus.SUBMITTED, graded=True)


def test_a_container_the_agent_stopped_is_started_again_for_the_tests(dataset, tmp_path, base_image):
    result = run_suite(dataset, tmp_path, StoppingAgent(), "tb-stopped", ["harbor-copy"])["harbor-copy"]
    assert result.outcome is Outcome.RESOLVED, (result.error, result.verifier)
    assert result.verifier["agent_processes"]["started"] is True, result.verifier
