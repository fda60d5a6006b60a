"""One runner (issue 16): LiveCodeBench codegen samples are the runner's trials (resume, executors), task selection
is one function for every suite, suites carry no per-trial state (they pickle after a trial's setup), and
`run --help` groups its options by concern and suite."""

from __future__ import annotations

import asyncio
import json
import os
import pickle
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from scripted_server import ScriptedServer
from terminal_bench_fixture import IMAGE_MAP, make_dataset
from test_livecodebench import CWM_FIXTURE, PROBLEMS, STDIN_ID, SUM_CORRECT, SUM_WRONG, reply
from typer.testing import CliRunner

from agents import make_agent
from agents.oracle import NopAgent, OracleAgent
from harness.config import RunConfig
from harness.records import Outcome, TrialResult
from harness.runner import Runner
from harness.sandbox import RUN_LABEL, docker_client
from tasks import DEMO_PATH, load_suite

ROOT = Path(__file__).parent.parent


@pytest.fixture(scope="module")
def lcb_dataset(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("lcb") / "problems.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in PROBLEMS))
    return path


@pytest.fixture(scope="module")
def tb_dataset(tmp_path_factory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("tb"))


def result_dirs(run_dir: Path, task_id: str) -> list[str]:
    return sorted(p.parent.name for p in (run_dir / "trials" / task_id).glob("*/result.json"))


# --- LiveCodeBench codegen through the runner -------------------------------------------------------------------


def test_codegen_killed_mid_run_resumes_only_the_missing_samples(lcb_dataset, tmp_path, base_image):
    """SIGKILL while one sample's model call hangs: the resume asks for that sample alone, and the run ends with
    exactly one result per sample index (no duplicates), pass@1 over all three."""
    run_dir = tmp_path / "lcb-kill"
    args = [sys.executable, "-m", "harness.cli", "run", "livecodebench", "--dataset", str(lcb_dataset), "--task",
            STDIN_ID, "--samples", "3", "--run-id", "lcb-kill", "--output", str(tmp_path), "--cwm-source",
            str(CWM_FIXTURE)]
    with ScriptedServer([reply(SUM_CORRECT), reply(SUM_WRONG)], faults=["ok", "hang", "ok"]) as server:
        proc = subprocess.Popen([*args, "--model-url", server.url], cwd=ROOT, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, start_new_session=True)
        deadline = time.monotonic() + 120
        while len(result_dirs(run_dir, STDIN_ID)) < 2 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.2)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    done = result_dirs(run_dir, STDIN_ID)
    assert len(done) == 2, proc.stderr.read().decode()[-2000:]
    [missing] = {"0", "1", "2"} - set(done)
    with ScriptedServer([reply(SUM_CORRECT)]) as server:
        rerun = subprocess.run([*args, "--model-url", server.url], cwd=ROOT, capture_output=True, text=True,
                               timeout=180)
        assert rerun.returncode == 0, rerun.stdout + rerun.stderr
        assert len(server.requests) == 1  # only the killed sample is sampled again
    assert result_dirs(run_dir, STDIN_ID) == ["0", "1", "2"]
    trial = run_dir / "trials" / STDIN_ID / missing
    assert list(trial.glob("trajectory.interrupted-*.jsonl"))  # the killed try's log, kept aside
    results = [TrialResult.model_validate_json((run_dir / "trials" / STDIN_ID / i / "result.json").read_text())
               for i in ("0", "1", "2")]
    assert sorted(r.outcome.value for r in results) == ["resolved", "resolved", "unresolved"]
    assert all(r.agent == "codegen" and r.phases.get("generate") is not None for r in results)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["problems"][STDIN_ID]["n"] == 3 and metrics["overall"]["pass@3"] == 1.0
    assert abs(metrics["problems"][STDIN_ID]["pass@1"] - 2 / 3) < 1e-9
    assert not docker_client().containers.list(all=True, filters={"label": f"{RUN_LABEL}=lcb-kill"})


def test_codegen_trials_go_through_the_runners_executor(lcb_dataset, tmp_path, base_image):
    """With an executor (what --executor ray installs), every sample is dispatched to it; here it runs the trial as a
    Ray worker does: a fresh runner, the agent made from its spec, the suite pickled and unpickled."""
    suite = load_suite("livecodebench", str(lcb_dataset), samples=2, cwm_source=CWM_FIXTURE)
    tasks = suite.load([STDIN_ID])
    config = RunConfig(suite="livecodebench", run_id="lcb-executor", output=tmp_path / "driver", attempts=2,
                       executor="ray")
    dispatched = []
    with ScriptedServer([reply(SUM_CORRECT), reply(SUM_WRONG)]) as server:
        spec = {"name": "codegen", "model_url": server.url, "cwm_config": config.cwm, "sampling": config.sampling}

        async def worker(task, attempt: int) -> TrialResult:
            dispatched.append((task.id, attempt))
            remote = config.model_copy(update={"output": tmp_path / "worker", "executor": "local"})
            shipped = pickle.loads(pickle.dumps(suite))
            return await Runner(remote, shipped, make_agent(**spec)).run_trial(task, attempt)

        results = asyncio.run(Runner(config, suite, make_agent(**spec), executor=worker).run(tasks))
    assert sorted(dispatched) == [(STDIN_ID, 0), (STDIN_ID, 1)]
    assert sorted(r.outcome.value for r in results) == ["resolved", "unresolved"]
    assert result_dirs(tmp_path / "driver" / "lcb-executor", STDIN_ID) == ["0", "1"]  # recorded by the driver
    assert all("codegen T=1 top_p=0.95 n=2 protocol=cwm" == r.config for r in results)


def test_cli_codegen_takes_the_one_runner_path_with_its_executor(lcb_dataset, tmp_path, monkeypatch):
    """`--executor ray` on codegen reaches the runner's `execute` (no second runner that ignored it): the codegen
    agent, the samples as attempts, the executor kept."""
    import harness.cli as cli

    seen = {}
    monkeypatch.setattr(cli, "execute", lambda config, suite, tasks, agent, spec: seen.update(
        config=config, suite=suite, tasks=tasks, agent=agent, spec=spec))
    with ScriptedServer([]) as server:
        result = CliRunner().invoke(cli.app, [
            "run", "livecodebench", "--dataset", str(lcb_dataset), "--samples", "4", "--executor", "ray",
            "--model-url", server.url, "--output", str(tmp_path), "--run-id", "lcb-ray"])
    assert result.exit_code == 0, result.output
    assert seen["config"].executor == "ray" and seen["config"].attempts == 4
    assert seen["agent"].name == "codegen" and seen["spec"]["name"] == "codegen"
    assert seen["suite"].trial is not None and len(seen["tasks"]) == 3


def test_codegen_refuses_attempts_and_model_free_agents(lcb_dataset, tmp_path):
    import harness.cli as cli

    for extra, needle in ((["--attempts", "2"], "use --samples"), (["--agent", "nop"], "samples a model")):
        result = CliRunner().invoke(cli.app, [
            "run", "livecodebench", "--dataset", str(lcb_dataset), "--output", str(tmp_path), *extra])
        assert result.exit_code != 0 and needle in str(result.exception), (result.output, result.exception)


# --- task selection, once for every suite ------------------------------------------------------------------------


def suite_with(name: str, datasets: dict, **options):
    extra = {"image_map": IMAGE_MAP} if name == "terminal-bench" else {}
    return load_suite(name, None if name == "demo" else str(datasets[name]), **extra, **options)


@pytest.mark.parametrize("name", ["demo", "swebench", "terminal-bench", "livecodebench"])
def test_selection_is_the_same_for_every_suite(name, lcb_dataset, tb_dataset, tmp_path):
    datasets = {"swebench": DEMO_PATH, "terminal-bench": tb_dataset, "livecodebench": lcb_dataset}
    every = [t.id for t in suite_with(name, datasets).load()]
    assert len(every) == 3
    excluded = tmp_path / "exclude.txt"
    excluded.write_text(f"# broken\n{every[0]}  # a comment\n")
    for seed in range(4):
        chosen = [t.id for t in suite_with(name, datasets, filter=".", shuffle=True, seed=seed, limit=1,
                                           exclude_file=excluded).load()]
        rest = every[1:]
        assert chosen == random.Random(seed).sample(rest, len(rest))[:1], seed  # exclude, filter, shuffle, limit
    named = [every[2], every[0]]
    assert [t.id for t in suite_with(name, datasets, limit=1, exclude_file=excluded).load(named)] == named
    with pytest.raises(Exception, match=r"unknown (task|question) id nope"):
        suite_with(name, datasets).load(["nope"])
    with pytest.raises(Exception, match="is not a valid regex"):
        suite_with(name, datasets, filter="(").load()


# --- no per-trial state on a suite --------------------------------------------------------------------------------


class PicklesTheSuite:
    """Pickles the suite while the trial is under way (after setup, before verify), then lets `inner` act."""

    def __init__(self, inner):
        self.inner, self.name, self.model, self.copies = inner, inner.name, None, []

    def __getattr__(self, name):  # the inner agent's traits (the oracle's grades_worktree)
        return getattr(self.inner, name)

    async def solve(self, env):
        self.copies.append(pickle.loads(pickle.dumps(env.suite)))
        return await self.inner.solve(env)


def run_with(suite, task_ids, agent, tmp_path, run_id):
    tasks = suite.load(task_ids)
    config = RunConfig(suite=suite.name, agent=agent.name, run_id=run_id, output=tmp_path, image_map=IMAGE_MAP)
    return asyncio.run(Runner(config, suite, agent).run(tasks))


def test_suites_pickle_during_a_trial(lcb_dataset, tb_dataset, tmp_path, base_image):
    tb = PicklesTheSuite(OracleAgent())
    [result] = run_with(load_suite("terminal-bench", str(tb_dataset), image_map=IMAGE_MAP), ["tb-service"], tb,
                        tmp_path, "tb-pickle")
    assert tb.copies and result.outcome is Outcome.RESOLVED, (result.error, result.verifier)
    assert result.verifier["services"] == {"web": "healthy"}  # the trial's services reached verify with the trial
    demo = PicklesTheSuite(OracleAgent())
    [result] = run_with(load_suite("demo"), ["demo__calc-1"], demo, tmp_path, "demo-pickle")
    assert demo.copies and result.outcome is Outcome.RESOLVED
    lcb = PicklesTheSuite(NopAgent())
    run_with(load_suite("livecodebench", str(lcb_dataset), scenario="agentic"), [STDIN_ID], lcb, tmp_path, "lcb-pickle")
    assert lcb.copies and lcb.copies[0].problem(STDIN_ID).question_id == STDIN_ID
    for suite in (load_suite("swebench", str(DEMO_PATH)), load_suite("livecodebench", str(lcb_dataset))):
        suite.load()
        assert pickle.loads(pickle.dumps(suite)).name == suite.name


# --- run --help ---------------------------------------------------------------------------------------------------


def test_run_help_groups_options_in_panels_per_concern_and_suite():
    import harness.cli as cli

    text = CliRunner().invoke(cli.app, ["run", "--help"], env={"COLUMNS": "200"}).output
    panels = ["Tasks", "Agent and model", "Scoring", "Sandbox", "Execution", "SWE-bench", "Terminal-Bench",
              "LiveCodeBench"]
    positions = [text.index(f"─ {panel}") for panel in panels]
    assert positions == sorted(positions)
    assert text.index("--samples") > positions[-1] and positions[-3] < text.index("--namespace") < positions[-2]
    assert positions[-2] < text.index("--image-map") < positions[-1]
