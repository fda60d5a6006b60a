"""The test-generation scenario of SWE-bench-shaped suites (`--scenario testgen`): CWM's `swerl_testgen_tool` env.

The CWM agent works on the instance as for a patch, but is asked for a reproduction test (agents/cwm/testgen.py has
its prompt, submission and the rule that any format error ends the episode). A trial is a run like any other through
the one runner; what differs is here: the agent's repository is not scrubbed (CWM's test-generation environment runs
only the start lines), and the submitted test is graded by running it on the unpatched repository in a fresh
container of the instance image (repro.py) instead of swebench's grading. The graded test is kept in the trial's
folder as `generated_test.py`, and the trial is resolved when the test passes CWM's criterion (it reproduces the
issue). No predictions file is written: a test is not a patch.
"""

from __future__ import annotations

from pathlib import Path

from harness.records import Outcome, TrialResult
from harness.sandbox import Sandbox
from tasks.base import Task, Verdict
from tasks.swebench.repro import EVAL_TIMEOUT, MARKERS, TEST_FILE, judge, run_test, static_problem, write_logs
from tasks.swebench.suite import SweBenchSuite

SCENARIO = "testgen"
SCENARIOS = ("patch", SCENARIO)  # the SWE-bench-shaped suites' --scenario values; patch is the default
GENERATED_TEST = "generated_test.py"  # in the trial's folder: results/RUN/trials/TASK/ATTEMPT/generated_test.py


def check_texts(cwm_source: Path | None) -> None:
    """With a CWM checkout, its test-generation texts are loaded now: a checkout without them fails before the run."""
    if cwm_source is not None:
        from agents.cwm.testgen import testgen_source
        from agents.cwm.texts import load_texts

        testgen_source(load_texts(Path(cwm_source)))


def check_run(config) -> None:
    """One line for the run options the scenario cannot honour."""
    from harness.errors import UserError

    if config.agent != "cwm":
        raise UserError(f"--scenario testgen has the model write a test: use --agent cwm, not {config.agent}")
    if config.grade_worktree:
        raise UserError("--grade-worktree grades a patch; --scenario testgen grades only a submitted test")


def generated_test_path(trial_dir: Path) -> Path:
    return trial_dir / GENERATED_TEST


class TestgenSuite(SweBenchSuite):
    """SWE-bench instances where the agent writes a reproduction test, graded by CWM's test-generation criterion."""

    __test__ = False  # not a pytest class
    scenario = SCENARIO
    agent_prompt = SCENARIO  # the CWM agent's task prompt, submit and format rule (agents/cwm/testgen.py)
    label = f"scenario={SCENARIO}"  # in the leaderboard's configuration label: never mixed with patch runs

    def setup(self, task: Task, sandbox: Sandbox) -> None:
        """Nothing: CWM's test-generation environment does not scrub the agent's repository."""

    def describe(self) -> dict:
        return {"scenario": SCENARIO, "test_file": TEST_FILE, "markers": list(MARKERS), "eval_timeout": EVAL_TIMEOUT}

    def verify(self, task: Task, patch: str, log_dir: Path, sandbox: Sandbox | None = None,
               verifier=None) -> Verdict:
        """`patch` is the submitted test. It lands in the trial's folder (the log folder's parent) as
        generated_test.py, then runs on the unpatched repository in the grading container started for the trial."""
        test = patch
        if test.strip():
            generated_test_path(log_dir.parent).write_text(test, errors="replace")
        problem = static_problem(test)
        run = None
        if problem is None:
            run = self._run(task, test, verifier)
            problem = judge(run)
        write_logs(log_dir, test, run)
        details = {"graded": True, "scenario": SCENARIO, "resolved": problem is None, "ran": run is not None,
                   "reason": problem}
        if run is not None:
            details.update(run.model_dump(exclude={"output_tail"}))
        return Verdict(resolved=problem is None, reward=0.0 if problem else 1.0, details=details)

    @staticmethod
    def _run(task: Task, test: str, verifier):
        from tasks.swebench.containers import create_container, remove_container

        warm = verifier.take() if verifier is not None else None
        container = warm or create_container(task.image)
        try:
            return run_test(container, test, task.workdir, task.startup)
        finally:
            if container is not warm:  # the warm one is removed by its owner, the runner
                remove_container(container)

    def finalize(self, run_dir: Path, results: list[TrialResult], tasks: list[Task]) -> list[str]:
        scored = [r for r in results if r.outcome is not Outcome.ERROR]
        kept = sum(generated_test_path(run_dir / "trials" / r.task_id / str(r.attempt)).exists() for r in scored)
        reproducing = sum(r.outcome is Outcome.RESOLVED for r in scored)
        return [f"generated tests: {kept} of {len(scored)} trials graded a test, {reproducing} reproduce the issue "
                f"(trials/TASK/ATTEMPT/{GENERATED_TEST})"]
