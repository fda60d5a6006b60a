"""A Ray run that cannot work says so in one line before it starts: a cluster where no node can schedule a trial,
a suite that cannot be pickled, a package or a dataset path missing on a node. A local Ray that the harness starts
itself advertises the `docker` resource, so its trials run."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest
from ray_fixture import ray_cluster  # noqa: F401 (fixture)

from agents import make_agent
from harness.config import RunConfig
from harness.errors import UserError
from harness.ray_cluster import check_nodes, pack
from harness.ray_executor import RayExecutor
from harness.runner import Runner
from tasks import load_suite


def executor_for(suite, tmp_path) -> RayExecutor:
    config = RunConfig(suite="demo", agent="oracle", run_id="preflight", output=tmp_path, executor="ray")
    return RayExecutor(Runner(config, suite, make_agent("oracle")), {"name": "oracle"})


def test_a_suite_that_cannot_be_pickled_is_one_line(ray_cluster, tmp_path):
    suite = load_suite("demo")
    suite.lock = threading.Lock()
    with pytest.raises(UserError, match=r"^cannot ship the demo suite to Ray workers: TypeError: .*lock") as error:
        executor_for(suite, tmp_path)
    assert "\n" not in str(error.value)


def test_a_package_missing_on_the_nodes_is_one_line(ray_cluster, tmp_path, monkeypatch):
    (tmp_path / "only_here").mkdir()
    (tmp_path / "only_here" / "__init__.py").write_text(textwrap.dedent("""
        from tasks.swebench.suite import SweBenchSuite

        class LocalSuite(SweBenchSuite):
            pass
        """))
    monkeypatch.syspath_prepend(str(tmp_path))  # here only: the workers' path was fixed when Ray started
    from only_here import LocalSuite

    demo = load_suite("demo")
    suite = LocalSuite(demo.selection, demo.image_source, name="demo")
    with pytest.raises(UserError, match=r"^Ray node .* cannot run trials: cannot load the run's trials there "
                                        r"\(ModuleNotFoundError: No module named 'only_here'\)$"):
        executor_for(suite, tmp_path / "out")


def test_a_dataset_path_missing_on_a_node_is_one_line(ray_cluster, tmp_path):
    payload = pack(load_suite("demo"), {"name": "oracle"})
    check_nodes(payload, [str(tmp_path)])
    with pytest.raises(UserError, match=r"^Ray node .* cannot run trials: the dataset path .*/gone does not exist"):
        check_nodes(payload, [str(tmp_path / "gone")])


def python(script: str, timeout: float = 300) -> subprocess.CompletedProcess:
    tests = Path(__file__).parent
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tests), str(tests.parent)])}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(script)], capture_output=True, text=True,
                          timeout=timeout, env=env)


def test_a_cluster_where_no_node_advertises_docker_is_one_line(tmp_path):
    done = python(f"""
        import ray
        from harness.errors import UserError
        from test_ray_preflight import executor_for
        from tasks import load_suite
        from pathlib import Path

        ray.init(address="local", num_cpus=1, include_dashboard=False)
        try:
            executor_for(load_suite("demo"), Path({str(tmp_path)!r}))
        except UserError as exc:
            print("refused:", exc)
        """)
    assert "refused: no node of the Ray cluster advertises the `docker` resource" in done.stdout, done.stderr[-2000:]


def test_a_local_ray_started_by_the_harness_runs_trials(tmp_path, base_image):
    done = subprocess.run([sys.executable, "-m", "harness.cli", "run", "demo", "--agent", "oracle", "--executor",
                           "ray", "--task", "demo__calc-1", "--concurrency", "1", "--output", str(tmp_path),
                           "--run-id", "local-ray"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert '"outcome": "resolved"' in (tmp_path / "local-ray/trials/demo__calc-1/0/result.json").read_text()
