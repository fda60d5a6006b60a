"""The inputs of test-time scaling: the candidate patches of a patch run and the reproduction tests of a testgen run.

A patch run is an ordinary `cwm-eval run`: each scored trial's submitted patch is a candidate, with its own swebench
verdict (for pass@1 and the oracle). A testgen run (`--scenario testgen`) leaves each trial's test at
trials/<task>/<attempt>/generated_test.py. Runs are checked before anything starts: a missing run, a run of the other
scenario, or a run of another suite (or dataset) is one line of error.
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel

from harness.errors import UserError
from harness.records import ExitStatus, Outcome, Usage
from harness.store import iter_results
from tasks.swebench.repro import static_problem  # CWM's checks of a test before it runs
from tasks.swebench.testgen import GENERATED_TEST

TEST_FILE = GENERATED_TEST
MAX_TEST_BYTES = 1_000_000


class Candidate(BaseModel):
    """One trial of the patch run."""

    task_id: str
    attempt: int
    patch: str
    resolved: bool  # the patch run's own swebench verdict of this patch
    tokens: int  # completion tokens the model spent on the trajectory: the last tie-break
    exit_status: ExitStatus
    turns: int = 0
    usage: Usage = Usage()
    model: str | None = None
    config: str | None = None
    labels: dict[str, str] = {}


class GeneratedTest(BaseModel):
    """One trial's reproduction test; `problem` says why it is not run at all (CWM's checks before any container)."""

    task_id: str
    attempt: int
    code: str
    problem: str | None = None


class RunInputs(BaseModel):
    run_id: str
    path: Path
    suite: str
    dataset: str | None = None
    scenario: str
    model: str | None = None
    concurrency: int | None = None


def find_run(name: str, root: Path, flag: str) -> Path:
    """A run folder from a path or an id under `root`."""
    path = Path(name) if Path(name, "run.json").is_file() else root / name
    if not (path / "run.json").is_file():
        raise UserError(f"{flag} {name}: no run there (no run.json in {path})")
    return path


def _scenario(path: Path, info: dict) -> str:
    """The scenario run.json records (at the top, in its config, or in the suite's own entry); a run that left
    generated tests and records none is a testgen run, any other an agentic (patch) run."""
    places = [info, info.get("config") or {}, *(v for v in info.values() if isinstance(v, dict))]
    for place in places:
        if isinstance(place.get("scenario"), str):
            return place["scenario"]
    return "testgen" if next(path.glob(f"trials/*/*/{TEST_FILE}"), None) else "agentic"


def read_run(name: str, root: Path, flag: str) -> RunInputs:
    path = find_run(name, root, flag)
    try:
        info = json.loads((path / "run.json").read_text())
    except (OSError, ValueError) as exc:
        raise UserError(f"{flag} {name}: {path / 'run.json'} is not readable JSON ({exc})") from None
    config = info.get("config") or {}
    suites = {result.suite for _, result in iter_results(path)}
    suite = config.get("suite") or (suites.pop() if len(suites) == 1 else None)
    if suite is None:
        raise UserError(f"{flag} {name}: the run records no suite")
    return RunInputs(run_id=path.name, path=path, suite=suite, dataset=config.get("dataset"),
                     scenario=_scenario(path, info), model=info.get("model"), concurrency=config.get("concurrency"))


def check_runs(suite: str, dataset: str | None, patches: RunInputs, tests: RunInputs) -> None:
    """Both runs of `suite` (and `dataset`), the patch run agentic, the test run testgen."""
    for flag, run, wanted in (("--patches", patches, "agentic"), ("--tests", tests, "testgen")):
        if run.suite != suite:
            raise UserError(f"{flag} {run.run_id} is a run of suite {run.suite}, not {suite}")
        if dataset and run.dataset and str(run.dataset) != str(dataset):
            raise UserError(f"{flag} {run.run_id} ran on dataset {run.dataset}, not {dataset}")
        if wanted == "testgen" and run.scenario != "testgen":
            raise UserError(f"{flag} {run.run_id} is a run of scenario {run.scenario}, not testgen (it left no "
                            f"{TEST_FILE}); make one with `cwm-eval run {suite} --scenario testgen`")
        if wanted == "agentic" and run.scenario in ("testgen", "tts"):
            raise UserError(f"{flag} {run.run_id} is a {run.scenario} run; --patches takes a run whose trials "
                            "submit patches")
    if patches.dataset and tests.dataset and str(patches.dataset) != str(tests.dataset):
        raise UserError(f"--patches {patches.run_id} ran on {patches.dataset} but --tests {tests.run_id} on "
                        f"{tests.dataset}")


def load_candidates(run: RunInputs) -> dict[str, list[Candidate]]:
    """Per task, the patch run's scored trials (infrastructure errors are no candidates), by attempt."""
    found: dict[str, list[Candidate]] = {}
    for _, result in iter_results(run.path):
        if result.outcome is Outcome.ERROR:
            continue
        found.setdefault(result.task_id, []).append(Candidate(
            task_id=result.task_id, attempt=result.attempt, patch=result.patch or "", resolved=result.resolved,
            tokens=result.usage.completion_tokens, exit_status=result.exit_status, turns=result.turns,
            usage=result.usage, model=result.model, config=result.config, labels=result.labels))
    return {task: sorted(found[task], key=lambda c: c.attempt) for task in sorted(found)}


def load_tests(run: RunInputs) -> dict[str, list[GeneratedTest]]:
    """Per task, the generated test of every finished trial that left one, by attempt."""
    found: dict[str, list[GeneratedTest]] = {}
    for path, result in iter_results(run.path):
        if result.outcome is Outcome.ERROR:
            continue
        test_file = path.parent / TEST_FILE
        if not test_file.is_file():
            continue
        data = test_file.read_bytes()
        code = data.decode(errors="replace") if len(data) <= MAX_TEST_BYTES else ""
        problem = static_problem(code) if len(data) <= MAX_TEST_BYTES else f"larger than {MAX_TEST_BYTES} bytes"
        found.setdefault(result.task_id, []).append(
            GeneratedTest(task_id=result.task_id, attempt=result.attempt, code=code, problem=problem))
    return {task: sorted(found[task], key=lambda t: t.attempt) for task in sorted(found)}
