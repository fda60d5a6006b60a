"""Scale-out: every suite on a local Ray cluster (two worker processes) with the local executor's verdicts; a
worker killed mid-trial; workers killed and stopped while replies are corrupted on the way back; a model server
lost mid-run. Tests wait on events (a request reaching the server, a marker or a file appearing), never on time."""

from __future__ import annotations

import json
import threading
import time

import pytest
from helpers import run_demo, turn
from ray_fixture import CONT, KILL, STOP, ray_cluster, signal_worker, workers_of  # noqa: F401 (fixture)
from scripted_server import ScriptedServer
from swebench_fixture import make_task_repo
from terminal_bench_fixture import IMAGE_MAP
from terminal_bench_fixture import make_dataset as make_tb_dataset
from test_agent import SUMMARY, fix_and_submit
from test_livecodebench import ADD_CORRECT, CWM_FIXTURE, FUNC_ID, PROBLEMS, STDIN_ID, SUM_CORRECT, reply

from harness import ray_executor
from harness.records import Outcome
from tasks import load_suite

DEMO = ["demo__calc-1", "demo__inventory-3", "demo__textutils-2"]


def unique(tmp_path) -> str:
    return f"scale-out-{tmp_path.name}"


def verdicts(results):
    return {(r.task_id, r.attempt): (r.outcome, r.reason) for r in results}


def lcb_script() -> list[str]:
    return [turn("Write the solution.", "create", f"/workspace/solution.py\n{ADD_CORRECT}"),
            turn("Make the patch.", "bash", "cd /workspace && git add -A && git diff --cached > /tmp/s.patch"),
            turn("Submit it.", "submit", "/tmp/s.patch"), turn("Done.")]


def suite_case(name: str, root):
    """(suite, run options, task ids, agent, script) for one suite, its dataset made under `root`."""
    if name == "demo":
        return load_suite("demo"), {}, None, "oracle", None
    if name == "swebench":
        dataset = str(make_task_repo(root))
        return load_suite("swebench", dataset), {"dataset": dataset}, None, "oracle", None
    if name == "terminal-bench":  # tb-service runs a compose service beside the agent's container
        dataset = str(make_tb_dataset(root / "tb"))
        return (load_suite("terminal-bench", dataset, image_map=IMAGE_MAP),
                {"dataset": dataset, "image_map": IMAGE_MAP}, None, "oracle", None)
    path = root / "problems.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in PROBLEMS))
    if name == "livecodebench-codegen":  # two samples of one problem: two trials, one model call each
        return (load_suite("livecodebench", str(path), samples=2, cwm_source=CWM_FIXTURE),
                {"dataset": str(path), "attempts": 2}, [STDIN_ID], "codegen", [reply(SUM_CORRECT)] * 2)
    return (load_suite("livecodebench", str(path), scenario="agentic"), {"dataset": str(path)}, [FUNC_ID], "cwm",
            lcb_script())


def run_case(case, output, executor: str, run_id: str) -> list:
    suite, options, task_ids, agent, script = case
    if script is None:
        return run_demo(output, agent, suite=suite, task_ids=task_ids, concurrency=2, executor=executor,
                        run_options=options, run_id=run_id)
    with ScriptedServer(script) as server:
        return run_demo(output, agent, suite=suite, task_ids=task_ids, model_url=server.url, concurrency=2,
                        executor=executor, run_options=options, run_id=run_id)


@pytest.mark.parametrize("suite", ["demo", "swebench", "terminal-bench", "livecodebench-agentic",
                                   "livecodebench-codegen"])
def test_every_suite_has_the_local_verdicts_under_ray(ray_cluster, tmp_path, suite, base_image):
    case = suite_case(suite, tmp_path)
    run_id = unique(tmp_path)  # a run's start and end remove its id's containers: no id shared with other tests
    local = run_case(case, tmp_path / "local", "local", run_id)
    remote = run_case(case, tmp_path / "ray", "ray", run_id)
    assert verdicts(remote) == verdicts(local) and {v[0] for v in verdicts(remote).values()} == {Outcome.RESOLVED}
    for result in remote:  # the trajectory streamed back and the verifier files came with the result
        trial = tmp_path / "ray" / run_id / "trials" / result.task_id / str(result.attempt)
        local_trial = tmp_path / "local" / run_id / "trials" / result.task_id / str(result.attempt)
        assert (trial / "trajectory.jsonl").read_text().strip() and (trial / "result.json").exists()
        assert files_under(trial / "verifier") == files_under(local_trial / "verifier")


def files_under(folder) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def wait_for(condition, what: str, limit: float = 300.0):
    """Poll an event (a file, a counter) until it holds; the limit only turns a hang into a failure."""
    deadline = time.monotonic() + limit
    while not condition():
        assert time.monotonic() < deadline, f"waited {limit:.0f} s for {what}"
        time.sleep(0.05)


def test_a_killed_worker_is_retried(ray_cluster, tmp_path):
    """The trial's first request hangs at the server; its worker is killed then, never sooner or later."""
    run_id = unique(tmp_path)
    with ScriptedServer(fix_and_submit() + [SUMMARY], faults=["hang"]) as server:
        def kill_when_hung():
            wait_for(lambda: server.faulted and workers_of(ray_cluster, run_id, "demo__calc-1"), "the hung request")
            killed.extend(pid for pid in workers_of(ray_cluster, run_id, "demo__calc-1") if signal_worker(pid, KILL))

        killed: list[int] = []
        killer = threading.Thread(target=kill_when_hung, daemon=True)
        killer.start()
        [result] = run_demo(tmp_path, "cwm", task_ids=["demo__calc-1"], model_url=server.url, executor="ray",
                            run_id=run_id)
        killer.join()
    assert killed and len(workers_of(ray_cluster, run_id, "demo__calc-1")) == 2  # the killed try, and the retry
    assert result.outcome is Outcome.RESOLVED, (result.error, result.reason)
    trial = tmp_path / unique(tmp_path) / "trials/demo__calc-1/0"
    assert list(trial.glob("trajectory.interrupted-*.jsonl"))
    assert "submit" in (trial / "trajectory.jsonl").read_text()


class Chaos:
    """Kills the first worker of one trial and stops (SIGSTOP) another's until the killed trial is done; the first
    reply of a third trial arrives cut short. Each acts once the trial is under way (its trajectory has a line)."""

    def __init__(self, pid_dir, run_dir, kill: str, stop: str):
        self.pid_dir, self.run_dir, self.kill, self.stop = pid_dir, run_dir, kill, stop
        self.run_id = run_dir.name
        self.killed: list[int] = []
        self.stopped: list[int] = []
        self.thread = threading.Thread(target=self.act, daemon=True)

    def under_way(self, task_id: str) -> bool:
        path = self.run_dir / "trials" / task_id / "0" / "trajectory.jsonl"
        return path.exists() and bool(path.read_text().strip()) and bool(workers_of(self.pid_dir, self.run_id, task_id))

    def done(self, task_id: str) -> bool:
        return (self.run_dir / "trials" / task_id / "0" / "result.json").exists()

    def act(self):
        wait_for(lambda: self.under_way(self.kill) or self.done(self.kill), "the trial to kill")
        self.killed = [pid for pid in workers_of(self.pid_dir, self.run_id, self.kill) if signal_worker(pid, KILL)]
        wait_for(lambda: self.under_way(self.stop) or self.done(self.stop), "the trial to stop")
        self.stopped = [pid for pid in workers_of(self.pid_dir, self.run_id, self.stop) if signal_worker(pid, STOP)]
        try:
            wait_for(lambda: self.done(self.kill), "the killed trial's retry")
        finally:
            for pid in self.stopped:
                signal_worker(pid, CONT)


def test_killed_and_stopped_workers_and_cut_replies_change_no_verdict(ray_cluster, tmp_path, monkeypatch):
    run_id = unique(tmp_path)
    local = run_demo(tmp_path / "local", "oracle", concurrency=2, run_id=run_id)
    cut = []

    def receive(reply, trial_dir):  # the first reply of inventory-3 loses the start of its test output
        name = "verifier/test_output.txt"
        if "inventory-3" in str(trial_dir) and not cut and name in reply["files"]:
            cut.append(reply["files"][name][100:])
            reply = {**reply, "files": {**reply["files"], name: cut[0]}}
        return original(reply, trial_dir)

    original = ray_executor.receive
    monkeypatch.setattr(ray_executor.RayExecutor, "receive", lambda self, reply, trial_dir: receive(reply, trial_dir))
    chaos = Chaos(ray_cluster, tmp_path / "ray" / run_id, kill="demo__calc-1", stop="demo__textutils-2")
    chaos.thread.start()
    remote = run_demo(tmp_path / "ray", "oracle", concurrency=2, executor="ray", run_id=run_id,
                      run_options={"max_starting_containers": 1})
    chaos.thread.join()
    assert cut and chaos.killed and chaos.stopped
    assert verdicts(remote) == verdicts(local) and {v[0] for v in verdicts(remote).values()} == {Outcome.RESOLVED}
    for task_id in DEMO:  # what arrived is a whole test output (stdout and stderr may interleave differently)
        output = (tmp_path / "ray" / run_id / "trials" / task_id / "0" / "verifier" / "test_output.txt").read_bytes()
        assert b">>>>> Start Test Output" in output and b">>>>> End Test Output" in output and output not in cut
        report = (tmp_path / "ray" / run_id / "trials" / task_id / "0" / "verifier" / "report.json").read_text()
        assert '"patch_successfully_applied": true' in report


def test_a_dead_model_server_is_taken_out_and_its_turns_retried(tmp_path):
    script = [turn("Look around.", "bash", "ls")] * 20
    with ScriptedServer(script, die_after=2) as dying, ScriptedServer(script) as healthy:
        results = run_demo(tmp_path, "cwm", task_ids=["demo__calc-1", "demo__textutils-2"],
                           model_url=[dying.url, healthy.url], concurrency=2, max_turns=4, run_id=unique(tmp_path))
    assert all(r.outcome is Outcome.UNRESOLVED and r.turns == 4 for r in results), [r.error for r in results]
    assert len(dying.requests) == 2 and len(healthy.requests) == 8 - 2
