"""Runs cannot hurt each other: one live process per run id, Ctrl-C to the process group, `clean` that spares
live runs, resume only with the same configuration, and corrupt results skipped (and redone) by name."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time

import docker
import pytest
from fixture_runs import write_run
from helpers import turn
from scripted_server import ScriptedServer
from test_cli_errors import assert_one_line_error, cwm_eval

from harness.ownership import OWNER_LABEL
from harness.report import load_results, resolve_runs
from harness.sandbox import RUN_LABEL

TASK = "demo__calc-1"
SLEEP = turn("Wait for the build.", "bash", "sleep 30")  # keeps the trial's container up while the test acts


def containers(run_id: str) -> list:
    return docker.from_env().containers.list(all=True, filters={"label": f"{RUN_LABEL}={run_id}"})


def wait_for(predicate, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.2)


def start(tmp_path, run_id: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "harness.cli", "run", "demo", "--run-id", run_id, "--output",
                             str(tmp_path), "--concurrency", "1", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


def sleeping_run(tmp_path, run_id: str, server: ScriptedServer) -> subprocess.Popen:
    """A cwm run on one task whose container stays up for the scripted `sleep 30` (with its grading container,
    started while the agent works)."""
    asked = len(server.requests)
    proc = start(tmp_path, run_id, "--task", TASK, "--agent", "cwm", "--model-url", server.url, "--max-turns", "3")
    wait_for(lambda: len(containers(run_id)) == 2 and len(server.requests) > asked or proc.poll() is not None)
    assert proc.poll() is None, proc.communicate()
    return proc


def outcome(tmp_path, run_id: str) -> str:
    return json.loads((tmp_path / run_id / "trials" / TASK / "0" / "result.json").read_text())["outcome"]


def test_a_second_run_with_a_live_id_is_refused_and_touches_nothing(tmp_path):
    with ScriptedServer([SLEEP]) as server:
        first = sleeping_run(tmp_path, "same", server)
        before = {c.id for c in containers("same")}
        run_json = (tmp_path / "same" / "run.json").read_text()
        second = cwm_eval("run", "demo", "--agent", "oracle", "--run-id", "same", "--output", str(tmp_path))
        assert_one_line_error(second, "run same is live", f"pid {first.pid}", "--run-id")
        assert {c.id for c in containers("same")} == before  # the live run's container is untouched
        assert (tmp_path / "same" / "run.json").read_text() == run_json
        out, err = first.communicate(timeout=300)
    assert first.returncode == 0, out + err
    assert outcome(tmp_path, "same") == "unresolved"  # the turn limit: the model's verdict, not an error
    assert not containers("same")


def test_sigint_to_the_process_group_exits_130_without_traceback_or_container(tmp_path):
    proc = start(tmp_path, "sigint", "--agent", "oracle")
    wait_for(lambda: containers("sigint") or proc.poll() is not None)
    time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, out + err
    assert "Traceback" not in out + err and "Error" not in err, out + err
    assert "interrupted" in out
    assert not containers("sigint"), out


def test_clean_removes_only_dead_runs_containers_and_a_killed_runs_lock_does_not_block(tmp_path):
    with ScriptedServer([SLEEP, SLEEP]) as server:
        live = sleeping_run(tmp_path, "live", server)
        dead = sleeping_run(tmp_path, "dead", server)
        os.killpg(dead.pid, signal.SIGKILL)
        dead.communicate()
        orphans = containers("dead")
        assert orphans and all(c.labels.get(OWNER_LABEL) for c in orphans)
        kept = {c.id for c in containers("live")}
        proc = cwm_eval("clean", "--results", str(tmp_path))
        assert proc.returncode == 0, proc.stdout + proc.stderr
        text = " ".join(proc.stdout.split())
        assert re.search(r"finished runs \([^)]*\bdead\b", text) and re.search(r"live runs \([^)]*\blive\b", text)
        assert not containers("dead")
        assert kept <= {c.id for c in containers("live")}
        # the killed run's lock died with it: the same id resumes at once
        again = start(tmp_path, "dead", "--task", TASK, "--agent", "cwm", "--model-url", server.url, "--max-turns",
                      "3")
        out, err = again.communicate(timeout=300)
        assert again.returncode == 0, out + err
        out, err = live.communicate(timeout=300)
    assert live.returncode == 0, out + err
    assert outcome(tmp_path, "live") == "unresolved" and outcome(tmp_path, "dead") == "unresolved"


def test_clean_all_without_a_terminal_is_refused():
    proc = subprocess.run([sys.executable, "-m", "harness.cli", "clean", "--all"], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=120)
    assert_one_line_error(proc, "clean --all", "--yes")


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("resume")
    proc = cwm_eval("run", "demo", "--agent", "oracle", "--task", TASK, "--task", "demo__textutils-2", "--run-id", "r",
                    "--output", str(root))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return root


@pytest.mark.parametrize("args,needle", [
    (["--agent", "nop"], "agent 'oracle' then, 'nop' now"),
    (["--agent", "oracle", "--max-turns", "64"], "cwm.max_turns 128 then, 64 now"),
    (["--agent", "oracle", "--tools", "bash,submit"], "cwm.tools"),
    (["--agent", "oracle", "--temperature", "0.2"], "sampling.temperature 1.0 then, 0.2 now"),
    (["--agent", "oracle", "--grade-worktree"], "grade_worktree False then, True now"),
])
def test_resume_with_another_configuration_is_refused(finished_run, args, needle):
    run_json = (finished_run / "r" / "run.json").read_text()
    proc = cwm_eval("run", "demo", "--task", TASK, "--run-id", "r", "--output", str(finished_run), *args)
    assert_one_line_error(proc, "run r was started with another configuration", needle, "--run-id")
    assert (finished_run / "r" / "run.json").read_text() == run_json


def test_resume_redoes_a_trial_whose_result_is_corrupt(finished_run):
    corrupt = finished_run / "r" / "trials" / TASK / "0" / "result.json"
    kept = finished_run / "r" / "trials" / "demo__textutils-2" / "0" / "result.json"
    kept_text = kept.read_text()
    corrupt.write_text('{"outcome": "resol')
    proc = cwm_eval("run", "demo", "--agent", "oracle", "--task", TASK, "--task", "demo__textutils-2", "--run-id", "r",
                    "--output", str(finished_run))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"warning: skipped corrupt {corrupt}" in proc.stderr
    assert json.loads(corrupt.read_text())["outcome"] == "resolved"  # redone
    assert kept.read_text() == kept_text  # not redone


@pytest.fixture
def runs_with_a_corrupt_result(tmp_path):
    write_run(tmp_path, "run-a", "model-a", {"alpha-1": ["resolved", "unresolved"], "beta-1": ["unresolved"]})
    corrupt = tmp_path / "run-a" / "trials" / "alpha-1" / "1" / "result.json"
    corrupt.write_text("{not json")
    return tmp_path, corrupt


def test_report_skips_a_corrupt_result_with_a_warning_naming_it(runs_with_a_corrupt_result, capsys):
    root, corrupt = runs_with_a_corrupt_result
    proc = cwm_eval("report", "--results", str(root))
    assert proc.returncode == 0, proc.stderr
    assert f"warning: skipped corrupt {corrupt}" in proc.stderr and "Traceback" not in proc.stderr
    frame = load_results(resolve_runs([], root))
    assert sorted(zip(frame["task_id"], frame["attempt"])) == [("alpha-1", 0), ("beta-1", 0)]
    assert f"warning: skipped corrupt {corrupt}" in capsys.readouterr().err


def test_export_skips_a_corrupt_result_with_a_warning_naming_it(runs_with_a_corrupt_result):
    root, corrupt = runs_with_a_corrupt_result
    out = root / "export.jsonl"
    proc = cwm_eval("export", "--results", str(root), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert f"warning: skipped corrupt {corrupt}" in proc.stderr
    assert len(out.read_text().splitlines()) == 2


def test_an_interrupted_runs_clean_up_waits_out_a_removal_already_in_progress(base_image):
    """A forced removal that meets another caller's removal in progress (Docker's 409) must not return while the
    container is still listed: the interrupt's clean-up keeps at it until the run has none (the CI flake where Ctrl-C
    left a container behind on a loaded daemon)."""
    from harness.sandbox import LABEL, labelled, remove_labelled

    run_id = "removing"
    box = docker.from_env().containers.run(  # a big writable layer: its removal takes a while
        base_image, "bash -c 'mkdir /d && cd /d && seq 1 40000 | xargs touch && touch /done && sleep 600'",
        detach=True, labels={LABEL: "1", RUN_LABEL: run_id})
    wait_for(lambda: box.exec_run("test -e /done").exit_code == 0, timeout=120)
    other = threading.Thread(target=box.remove, kwargs={"force": True})
    other.start()
    try:
        wait_for(lambda: box.reload() or box.status == "removing", timeout=30)
        assert labelled(run_id)[0], "the container is listed while its removal is in progress"
        assert remove_labelled(run_id, settle=60)[0] == 1
        assert not labelled(run_id)[0]
    finally:
        other.join()
