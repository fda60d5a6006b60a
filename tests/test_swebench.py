"""SWE-bench at full fidelity on a task repo the test builds: isolation, official grading and formats."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from swebench_fixture import make_task_repo

from harness.sandbox import Sandbox
from tasks import load_suite


@pytest.fixture(scope="module")
def task_repo(tmp_path_factory):
    root = make_task_repo(tmp_path_factory.mktemp("swebench"))
    tests = root / "tasks/proj__ops-3/tests.json"  # a broken environment: its gold patch cannot resolve
    tests.write_text(json.dumps({**json.loads(tests.read_text()), "PASS_TO_PASS": ["test_ops.py::test_gone"]}))
    return root


@pytest.fixture(scope="module")
def suite(task_repo):
    return load_suite("swebench", str(task_repo))


@pytest.fixture(scope="module")
def tasks(suite):
    tasks = {t.id: t for t in suite.load()}
    for task in tasks.values():
        suite.prepare(task)
    return tasks


def cli(*args: str) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "harness.cli", *args], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def verify(suite, task, patch, tmp_path):
    return suite.verify(task, patch, tmp_path / "verifier")


def test_gold_resolves_and_wrong_or_breaking_fixes_do_not(suite, tasks, tmp_path):
    task = tasks["proj__ops-1"]
    gold = task.metadata["patch"]
    verdict = verify(suite, task, gold, tmp_path / "gold")
    assert verdict.resolved and verdict.details["test_exit_code"] == 0
    wrong = gold.replace("return sum(values)", "return sum(values[:-1])")
    assert not verify(suite, task, wrong, tmp_path / "wrong").resolved
    report = verify(suite, task, _also_break_average(gold), tmp_path / "breaking").details
    assert report["tests_status"]["FAIL_TO_PASS"]["failure"] == []
    assert report["tests_status"]["PASS_TO_PASS"]["failure"] == ["test_ops.py::test_average"]
    assert not report["resolved"] and report["test_exit_code"] != 0


def _also_break_average(gold: str) -> str:
    hunk = ("@@ -14,4 +14,4 @@ def product(values):\n \n \n def average(values):\n"
            "-    return sum(values) / len(values)\n+    return sum(values) // len(values) + 1\n")
    return gold + hunk if gold.endswith("\n") else gold + "\n" + hunk


def test_a_patch_that_does_not_apply_is_recorded_as_such(suite, tasks, tmp_path):
    bad = "diff --git a/ops.py b/ops.py\n--- a/ops.py\n+++ b/ops.py\n@@ -1,2 +1,2 @@\n-no such line\n+x\n"
    verdict = verify(suite, tasks["proj__ops-1"], bad, tmp_path)
    assert not verdict.resolved and verdict.details["patch_successfully_applied"] is False
    assert verdict.details["reason"] == "patch does not apply"
    # swebench's layout: the apply log in run_instance.log; no test output and no report for an unapplied patch
    assert ">>>>> Patch Apply Failed" in (tmp_path / "verifier/run_instance.log").read_text()
    assert (tmp_path / "verifier/patch.diff").read_text() == bad
    assert not (tmp_path / "verifier/test_output.txt").exists() and not (tmp_path / "verifier/report.json").exists()


def test_agent_container_hides_later_history_and_test_patch(suite, tasks):
    task = tasks["proj__ops-1"]
    with Sandbox.start(task.image, workdir="/testbed") as sandbox:
        assert "THE FIX" in sandbox.exec("git log --all --oneline").output  # the image does hold it...
        suite.setup(task, sandbox)
        log = sandbox.exec("git log --all --oneline; git tag; git remote; git reflog; git branch -a").output
        assert "THE FIX" not in log and "v2" not in log and "origin" not in log and "future" not in log
        assert len(sandbox.exec("git log --all --oneline").output.splitlines()) == 2
        unreachable = sandbox.exec("git fsck --unreachable --no-reflogs 2>/dev/null | wc -l").output.strip()
        assert unreachable == "0"  # ...and after the scrub not even as a loose object
        assert "test_total" not in sandbox.exec("cat test_ops.py").output  # no test patch


def test_agent_commands_cannot_reach_the_network_by_default(tasks):
    with Sandbox.start(tasks["proj__ops-1"].image, workdir="/testbed") as sandbox:
        probe = "python3 -c \"import socket; socket.create_connection(('deb.debian.org', 80), timeout=5)\""
        result = sandbox.exec(probe)
    assert result.exit_code != 0


def test_gold_validation_lists_broken_environments_and_exclude_file(task_repo, tmp_path):
    out = cli("run", "swebench", "--dataset", str(task_repo), "--agent", "oracle", "--output", str(tmp_path),
              "--run-id", "gold")
    assert "gold patch does not resolve 1 instances: proj__ops-3" in " ".join(out.stdout.split())
    failures = tmp_path / "gold" / "gold_failures.txt"
    assert failures.read_text() == "proj__ops-3\n"
    report = json.loads((tmp_path / "gold" / "cwm-eval-oracle.gold.json").read_text())
    assert report["resolved_ids"] == ["proj__ops-1", "proj__ops-2"] and report["schema_version"] == 2
    # the predictions the run wrote are graded again to the same results
    cli("grade", "swebench", "--dataset", str(task_repo), "--predictions", str(tmp_path / "gold/predictions.jsonl"),
        "--output", str(tmp_path), "--run-id", "regrade")
    again = json.loads((tmp_path / "regrade" / "cwm-eval-oracle.regrade.json").read_text())
    assert again["resolved_ids"] == report["resolved_ids"] and again["unresolved_ids"] == report["unresolved_ids"]
    # saved logs are re-graded without running anything, to the same per-instance reports
    saved = {p: p.read_text() for p in (tmp_path / "gold/trials").rglob("report.json")}
    logs = cli("grade", "swebench", "--dataset", str(task_repo), "--logs", str(tmp_path / "gold" / "trials"))
    assert "re-graded 3 logs: 2 resolved, 0 differ" in " ".join(logs.stdout.split())
    assert all(json.loads(p.read_text()) == json.loads(text) for p, text in saved.items())
    # and the broken instance can be left out
    out = cli("run", "swebench", "--dataset", str(task_repo), "--agent", "oracle", "--output", str(tmp_path),
              "--run-id", "excluded", "--exclude-file", str(failures))
    assert not (tmp_path / "excluded/trials/proj__ops-3").exists()
    assert "resolved 2/2" in out.stdout


def test_local_jsonl_and_selection(task_repo, tasks, tmp_path):
    rows = [t.metadata for t in tasks.values()]
    path = tmp_path / "instances.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    suite = load_suite("swebench", str(path), filter=r"ops-[12]$", shuffle=True, seed=3, limit=1)
    [task] = suite.load()
    assert task.id in ("proj__ops-1", "proj__ops-2") and task.metadata["eval_script"]
    assert suite.image_source == "prebuilt"  # a dataset pulls the official images by default


def test_hub_names_go_through_datasets_load_dataset(monkeypatch, tasks):
    import swebench.harness.utils as swebench_utils

    calls = []

    def fake_load_dataset(name, split):  # records the call instead of downloading
        calls.append((name, split))
        return [t.metadata for t in tasks.values()]

    monkeypatch.setattr(swebench_utils, "load_dataset", fake_load_dataset)
    loaded = load_suite("swebench", "verified", split="test", task_ids=None).load(["proj__ops-2"])
    assert calls == [("SWE-bench/SWE-bench_Verified", "test")]
    assert [t.id for t in loaded] == ["proj__ops-2"]


def test_grading_runs_as_swebench_run_instance_does(suite, tasks, tmp_path):
    """swebench's container settings (root, default network, SYS_ADMIN, no limits) and its log-folder layout."""
    from swebench.harness.constants import APPLY_PATCH_PASS, START_TEST_OUTPUT

    from swebench.harness.utils import make_test_spec

    from tasks.swebench.grading import create_container, remove_container

    task = tasks["proj__ops-1"]
    container = create_container(task.image)
    try:
        host = container.attrs["HostConfig"]
        assert container.attrs["Config"]["User"] == "root" and host["CapAdd"] == ["SYS_ADMIN"]
        assert host["NetworkMode"] in ("default", "bridge")
        assert not host["Memory"] and not host["NanoCpus"] and not host["PidsLimit"]
        assert container.attrs["Config"]["Labels"]["cwm-eval.phase"] == "verify"
    finally:
        remove_container(container)
    verdict = verify(suite, task, task.metadata["patch"], tmp_path)
    logs = tmp_path / "verifier"
    assert sorted(p.name for p in logs.iterdir()) == ["eval.sh", "patch.diff", "report.json", "run_instance.log",
                                                     "test_output.txt"]
    output = (logs / "test_output.txt").read_text()
    assert APPLY_PATCH_PASS not in output and START_TEST_OUTPUT in output  # the eval script's output only
    assert APPLY_PATCH_PASS in (logs / "run_instance.log").read_text()
    assert (logs / "eval.sh").read_text() == make_test_spec(task.metadata).eval_script  # with the exit-code record
    assert verdict.resolved and verdict.details["flags"] == []
