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


@pytest.mark.parametrize("content,needle", [
    ("datasets: [cwm-eval/demo\n", "not valid YAML"),
    ("- cwm-eval/demo\n", "expected a mapping"),
    ("datasets: cwm-eval/demo\n", "`datasets` must be a non-empty list"),
    ("", "an empty file"),
])
def test_malformed_sweb_yaml_is_one_line(tmp_path, content, needle):
    repo = tmp_path / "repo"
    shutil.copytree(DEMO_PATH, repo)
    (repo / "sweb.yaml").write_text(content)
    proc = cwm_eval("run", "swebench", "--dataset", str(repo), "--agent", "oracle", "--output", str(tmp_path / "out"))
    assert_one_line_error(proc, f"malformed {repo / 'sweb.yaml'}", needle)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("dataset", ["/nonexistent/task-repo", "./no-such-repo", "no/such/repo"])
def test_missing_dataset_path_is_named_as_a_path(dataset):
    proc = cwm_eval("run", "swebench", "--dataset", dataset, "--agent", "oracle")
    assert_one_line_error(proc, f"dataset path {dataset} does not exist")
    assert "hub" not in proc.stderr


@pytest.mark.parametrize("args,needle", [
    (["demo", "--release", "v2"], "suite demo does not use --release"),
    (["swebench", "--dataset", "verified", "--image-map", "a=b"], "suite swebench does not use --image-map"),
    (["terminal-bench", "--dataset", "/tmp", "--scenario", "agentic"], "suite terminal-bench does not use --scenario"),
    (["demo", "--dataset", "/tmp"], "suite demo does not use --dataset"),
])
def test_suite_option_for_another_suite_is_refused(args, needle):
    assert_one_line_error(cwm_eval("run", *args, "--agent", "oracle"), needle)


@pytest.mark.parametrize("args", [
    ["run", "demo", "--agent", "oracle", "--output", "{blocked}/results"],
    ["report", "--results", "{tmp}", "--out", "{blocked}/report.md"],
    ["export", "--results", "{tmp}", "--out", "{blocked}/export.jsonl"],
    ["grade", "swebench", "--dataset", "verified", "--predictions", "{tmp}/p.jsonl", "--output", "{blocked}/out"],
])
def test_unwritable_output_is_one_line(tmp_path, args):
    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    proc = cwm_eval(*[a.format(blocked=blocked, tmp=tmp_path) for a in args])
    assert_one_line_error(proc, str(blocked), "is a file, not a folder")
