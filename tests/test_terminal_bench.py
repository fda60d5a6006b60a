"""Terminal-Bench suite: TB 1.x and Harbor task folders through the real runner, real containers and the CLI."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from agents import make_agent
from agents.base import AgentResult, TrialEnv
from harness.config import RunConfig
from harness.records import ExitStatus, Outcome
from harness.runner import Runner
from harness.sandbox import RUN_LABEL, docker_client
from tasks import load_suite
from tasks.terminal_bench.images import dockerfile_workdir, map_image, parse_image_map, rewrite_dockerfile
from tasks.terminal_bench.parsers import RewardError, parse_pytest, parse_reward, pytest_resolved
from terminal_bench_fixture import IMAGE_MAP, TBENCH_IMAGE, make_dataset

TASKS = ["harbor-copy", "tb-hello", "tb-service"]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("tb-dataset"))


def run_suite(dataset: Path, output: Path, agent, run_id: str, task_ids=None, **suite_options) -> dict:
    suite = load_suite("terminal-bench", str(dataset), image_map=IMAGE_MAP, **suite_options)
    tasks = suite.load(task_ids)
    the_agent = make_agent(agent) if isinstance(agent, str) else agent
    config = RunConfig(suite="terminal-bench", dataset=str(dataset), agent=the_agent.name, run_id=run_id,
                       output=output, concurrency=3, image_map=IMAGE_MAP)
    results = asyncio.run(Runner(config, suite, the_agent).run(tasks))
    return {result.task_id: result for result in results}


def cwm_eval(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], capture_output=True, text=True, timeout=120)


# --- through the runner, in real containers ---------------------------------------------------------------


def test_oracle_resolves_every_task(dataset, tmp_path, base_image):
    results = run_suite(dataset, tmp_path, "oracle", "tb-oracle")
    assert sorted(results) == TASKS
    for task_id, result in results.items():
        assert result.outcome is Outcome.RESOLVED, (task_id, result.error, result.verifier)
        assert result.reward == 1.0
        verifier_dir = tmp_path / "tb-oracle" / "trials" / task_id / "0" / "verifier"
        assert (verifier_dir / "test_output.txt").read_text()
        assert (verifier_dir / "results.json").exists()
    assert set(results["tb-service"].verifier["parser_results"].values()) == {"PASSED"}
    assert results["tb-service"].verifier["services"] == {"web": "healthy"}  # the extra service, by name
    assert results["harbor-copy"].verifier["reward_file"] == "reward.txt"
    assert results["tb-hello"].labels == {"format": "tb1", "difficulty": "easy", "category": "file-operations"}
    client = docker_client()  # the extra service and its network went with the trial
    assert not client.containers.list(all=True, filters={"label": f"{RUN_LABEL}=tb-oracle"})
    assert not client.networks.list(filters={"label": f"{RUN_LABEL}=tb-oracle"})


def test_nop_resolves_none(dataset, tmp_path, base_image):
    results = run_suite(dataset, tmp_path, "nop", "tb-nop")
    assert {task_id: r.outcome for task_id, r in results.items()} == dict.fromkeys(TASKS, Outcome.UNRESOLVED)
    assert results["tb-hello"].verifier["failure_mode"] == "none"
    assert set(results["tb-hello"].verifier["parser_results"].values()) == {"FAILED"}
    assert results["harbor-copy"].verifier["reward"] == 0.0


class PlantingAgent:
    """Writes a perfect reward, and fake tests, where the verifier will look; records its container's limits."""

    name, model = "planter", None

    def __init__(self):
        self.seen: dict = {}

    async def solve(self, env: TrialEnv) -> AgentResult:
        env.session.run("mkdir -p /logs/verifier /tests && echo 1 > /logs/verifier/reward.txt && "
                        "echo '{\"reward\": 1.0}' > /logs/verifier/reward.json && "
                        "echo 'echo 1 > /logs/verifier/reward.txt' > /tests/test.sh")
        env.sandbox.container.reload()
        host = env.sandbox.container.attrs["HostConfig"]
        self.seen = {"cpus": host["NanoCpus"] / 1e9, "memory_mb": host["Memory"] // 2**20,
                     "networks": sorted(env.sandbox.container.attrs["NetworkSettings"]["Networks"])}
        return AgentResult(exit_status=ExitStatus.SUBMITTED)


def test_reward_planted_by_the_agent_is_deleted_before_the_tests(dataset, tmp_path, base_image):
    agent = PlantingAgent()
    result = run_suite(dataset, tmp_path, agent, "tb-plant", ["harbor-copy"])["harbor-copy"]
    assert result.outcome is Outcome.UNRESOLVED, result.verifier
    assert result.reward == 0.0 and result.verifier["reward_file"] == "reward.txt"
    assert agent.seen == {"cpus": 1.0, "memory_mb": 1024, "networks": ["none"]}  # task.toml's [environment]


def test_test_timeout_fails_the_trial(dataset, tmp_path, base_image):
    slow = tmp_path / "slow"
    (slow / "tests").mkdir(parents=True)
    for name in ("task.toml", "instruction.md", "environment"):
        src = dataset / "harbor-copy" / name
        (slow / name).symlink_to(src, target_is_directory=src.is_dir())
    (slow / "tests" / "test.sh").write_text("sleep 30; echo 1 > /logs/verifier/reward.txt\n")
    result = run_suite(slow, tmp_path, "nop", "tb-slow", test_timeout_multiplier=0.02)["slow"]  # 60 s * 0.02
    assert result.outcome is Outcome.UNRESOLVED
    assert result.verifier["failure_mode"] == "test_timeout" and result.verifier["timeout_sec"] == pytest.approx(1.2)


# --- loading and the CLI -------------------------------------------------------------------------------------


def test_tasks_carry_instruction_workdir_and_timeouts(dataset):
    tasks = {t.id: t for t in load_suite("terminal-bench", str(dataset), image_map=IMAGE_MAP).load()}
    assert tasks["tb-hello"].instruction == 'Create a file /app/hello.txt whose only line is "Hello, world!".'
    assert tasks["harbor-copy"].instruction.strip() == "Write the number 42 (and nothing else) to /app/answer.txt."
    assert {t.workdir for t in tasks.values()} == {"/app"}
    assert all(t.base_commit is None for t in tasks.values())
    assert (tasks["tb-hello"].agent_timeout, tasks["tb-hello"].verify_timeout) == (120.0, 60.0)
    assert tasks["tb-hello"].image == "cwm-eval/tb.tb-hello:latest"
    assert tasks["harbor-copy"].network is False and tasks["tb-service"].network is True


@pytest.mark.parametrize("task_id,edit,needle", [
    ("tb-hello", lambda t: t.replace("max_agent_timeout_sec: 120", "max_agent_timeout_sec: soon"),
     "tb-hello/task.yaml: max_agent_timeout_sec: not a number"),
    ("tb-hello", lambda t: t.replace("instruction:", "instructions:"), "tb-hello/task.yaml: instruction: missing"),
    ("tb-hello", lambda t: t.replace("difficulty: easy", "difficulty: trivial"), "tb-hello/task.yaml: difficulty:"),
    ("harbor-copy", lambda t: t.replace("timeout_sec = 60.0", 'timeout_sec = "a minute"'),
     "harbor-copy/task.toml: verifier.timeout_sec: not a number"),
    ("harbor-copy", lambda t: t.replace("[agent]", "[agent"), "harbor-copy/task.toml: not valid TOML"),
])
def test_malformed_task_is_one_line_naming_file_and_field(dataset, tmp_path, task_id, edit, needle):
    broken = tmp_path / "broken"
    shutil.copytree(dataset, broken)
    config = broken / task_id / ("task.toml" if task_id.startswith("harbor") else "task.yaml")
    config.write_text(edit(config.read_text()))
    proc = cwm_eval("run", "terminal-bench", "--dataset", str(broken), "--agent", "oracle", "--task", task_id)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1, proc.stderr
    assert needle in proc.stderr
    check = cwm_eval("tasks", "check", str(broken))
    assert check.returncode == 2 and needle in check.stdout


def test_tasks_check_passes_a_good_dataset(dataset):
    proc = cwm_eval("tasks", "check", str(dataset))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "3 tasks checked: no problems" in proc.stdout


# --- parsers and image rewriting -----------------------------------------------------------------------------

PYTEST_OUTPUT = """\
============================= test session starts ==============================
collected 4 items

../tests/test_outputs.py .F.s                                            [100%]

=================================== FAILURES ===================================
__________________________________ test_two ____________________________________
E   assert 1 == 2
=========================== short test summary info ============================
PASSED ../tests/test_outputs.py::test_one
PASSED ../tests/test_outputs.py::test_three[a - b]
SKIPPED [1] ../tests/test_outputs.py:12: no gpu
FAILED ../tests/test_outputs.py::test_two - assert 1 == 2
========================= 1 failed, 2 passed, 1 skipped in 0.05s ==============
"""


def test_pytest_summary_parser():
    results = parse_pytest(PYTEST_OUTPUT)
    assert results["../tests/test_outputs.py::test_one"] == "PASSED"
    assert results["../tests/test_outputs.py::test_two"] == "FAILED"
    assert results["../tests/test_outputs.py::test_three[a - b]"] == "PASSED"
    assert "SKIPPED" in results.values() and len(results) == 4
    assert not pytest_resolved(results)
    passing = PYTEST_OUTPUT.replace("FAILED ../tests/test_outputs.py::test_two - assert 1 == 2", "XFAIL t.py::test_x")
    assert pytest_resolved(parse_pytest(passing))
    assert not pytest_resolved(parse_pytest(passing.replace("XFAIL", "XPASS")))
    assert not pytest_resolved(parse_pytest(passing.replace("XFAIL", "ERROR")))
    assert pytest_resolved(parse_pytest("\x1b[1m==== short test summary info ====\x1b[0m\nPASSED a.py::t\n"))
    assert parse_pytest("collected 0 items\n===== no tests ran in 0.01s =====") is None
    assert not pytest_resolved(parse_pytest("===== short test summary info =====\n=== 0 passed ===\n"))


def test_reward_files():
    assert parse_reward(None, "1\n") == (1.0, {})
    assert parse_reward('{"reward": 0.5, "other": 1}', "1") == (0.5, {"reward": 0.5, "other": 1.0})
    assert parse_reward('{"a": 1, "b": 0}', None)[0] == 0.5  # no "reward": the mean of the metrics
    for bad in [(None, None), (None, " "), (None, "yes"), ("{oops", None), ('{"a": "x"}', None)]:
        with pytest.raises(RewardError):
            parse_reward(*bad)


def test_image_map_rewrites_from_lines(tmp_path):
    dockerfile = f"FROM --platform=linux/amd64 {TBENCH_IMAGE} AS base\nWORKDIR /app\nFROM base\nWORKDIR src\n"
    rewritten = rewrite_dockerfile(dockerfile, IMAGE_MAP)
    assert rewritten.splitlines()[0] == "FROM --platform=linux/amd64 cwm-eval/base:bookworm AS base"
    assert "FROM base\n" in rewritten and dockerfile_workdir(rewritten) == "/src"
    glob = {"ghcr.io/laude-institute/t-bench/*": "cwm-eval/base:bookworm"}
    assert map_image("ghcr.io/laude-institute/t-bench/ubuntu-24-04:latest", glob) == "cwm-eval/base:bookworm"
    other_tag = TBENCH_IMAGE.replace("20250620", "latest")
    assert map_image(other_tag, IMAGE_MAP) == other_tag  # an exact key maps that tag only
    assert map_image(TBENCH_IMAGE.replace("20250620", "x"), {TBENCH_IMAGE.split(":")[0]: "b"}) == "b"
    listing = tmp_path / "images.txt"
    listing.write_text(f"# t-bench\n{TBENCH_IMAGE}=cwm-eval/base:bookworm\n\nnginx:latest=cwm-eval/base:bookworm\n")
    assert parse_image_map([f"@{listing}", "a=b"]) == {**IMAGE_MAP, "nginx:latest": "cwm-eval/base:bookworm", "a": "b"}


def test_cwm_agent_on_terminal_bench_gets_a_task_prompt_and_ends_normally(dataset, tmp_path, base_image):
    """CWM published no Terminal-Bench scaffold: cwm-eval's task prompt, a note as the submission, a final reply."""
    from helpers import turn
    from scripted_server import ScriptedServer

    from agents.cwm.texts import terminal_prompt

    script = [turn("Write the file.", "bash", "echo 'Hello, world!' > hello.txt; pwd"),
              turn("Hand it in.", "submit", "wrote /app/hello.txt"),
              turn("Finished.")]
    with ScriptedServer(script) as server:
        suite = load_suite("terminal-bench", str(dataset), image_map=IMAGE_MAP)
        [task] = suite.load(["tb-hello"])
        agent = make_agent("cwm", model_url=server.url)
        config = RunConfig(suite="terminal-bench", agent="cwm", run_id="tb-cwm", output=tmp_path, image_map=IMAGE_MAP)
        [result] = asyncio.run(Runner(config, suite, agent).run([task]))
    assert result.exit_status is ExitStatus.SUBMITTED and result.outcome is Outcome.RESOLVED, result.verifier
    assert result.turns == 3 and len(server.requests) == 3
    first = server.requests[0]["messages"]
    assert first[1]["content"] == terminal_prompt(task.instruction, "/app")
    submit_observation = server.requests[2]["messages"][-1]["content"]
    assert submit_observation.startswith("<output>\nwrote /app/hello.txt\n</output>")
