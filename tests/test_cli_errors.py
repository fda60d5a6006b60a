"""Errors users will hit: one clear line on stderr, exit code 2, never a traceback."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from tasks import DEMO_PATH


def cwm_eval(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], capture_output=True, text=True,
                          env=env, timeout=120)


def assert_one_line_error(proc: subprocess.CompletedProcess, *needles: str) -> None:
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    text = " ".join(proc.stderr.split())
    assert text.startswith("error:")
    for needle in needles:
        assert needle in text


def test_unknown_suite_lists_the_valid_ones():
    assert_one_line_error(cwm_eval("run", "nosuch", "--agent", "oracle"), "unknown suite", "demo", "swebench")


def test_unknown_task_lists_the_valid_ids():
    assert_one_line_error(cwm_eval("run", "demo", "--agent", "oracle", "--task", "nope__nope-1"),
                          "unknown task id nope__nope-1", "demo__calc-1")


def test_unreachable_model_endpoint_is_caught_before_any_container(tmp_path):
    proc = cwm_eval("run", "demo", "--model-url", "http://127.0.0.1:9/v1", "--output", str(tmp_path))
    assert_one_line_error(proc, "unreachable", "127.0.0.1:9")
    assert not any(tmp_path.iterdir())


def test_no_docker_engine_says_how_to_start_one(monkeypatch):
    import os

    env = {**os.environ, "DOCKER_HOST": "unix:///nonexistent/docker.sock"}
    assert_one_line_error(cwm_eval("run", "demo", "--agent", "oracle", env=env), "no Docker engine", "dockerd")


@pytest.mark.parametrize("broken,needles", [
    (lambda task: (task / "tests.json").write_text("{not json"), ("tests.json", "not valid JSON")),
    (lambda task: (task / "eval.sh").unlink(), ("missing", "eval.sh")),
    (lambda task: (task / "task.yaml").write_text((task / "task.yaml").read_text().replace("base_commit", "x")),
     ("task.yaml has no base_commit",)),
])
def test_malformed_task_folder_names_file_and_field(tmp_path, broken, needles):
    repo = tmp_path / "repo"
    shutil.copytree(DEMO_PATH, repo)
    broken(repo / "tasks" / "demo__calc-1")
    proc = cwm_eval("run", "swebench", "--dataset", str(repo), "--agent", "oracle")
    assert_one_line_error(proc, "demo__calc-1", *needles)


@pytest.mark.parametrize("args,needle", [
    (["--memory", "lots"], "--memory 'lots'"),
    (["--tools", "bash,python"], "--tools bash,python"),
    (["--cwm-source", "/nonexistent/cwm"], "/nonexistent/cwm"),
])
def test_bad_agent_options_are_one_line(args, needle):
    assert_one_line_error(cwm_eval("run", "demo", "--model-url", "http://127.0.0.1:9/v1", *args), needle)
