"""Rejection sampling from a finished run (`cwm-eval resample`): the run's unresolved tasks get K new attempts with
the run's own agent configuration, and the passing trajectories, best-of-k, become SFT data.

Which tasks: a task is unresolved when none of its scored attempts passed. Infrastructure errors are not scored, so
a task whose attempts all ended in errors is left out (resume the run first: a resume redoes them). A pass flagged
as test tampering is not a pass, here and in the new attempts: the resample run scores tampering unresolved (as RL
rewards do), so a rigged pass never becomes training data. Errored attempts are never exported and do not count
as attempts in pass@k.

The new attempts are a run of their own (`<run>-resample-k<K>`), resumable like any run.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from rich.table import Table

from harness.config import RunConfig
from harness.errors import UserError
from harness.export import FORMATS, cost, export, total_tokens
from harness.records import Outcome, TrialResult
from harness.stats import pass_at_k
from harness.store import iter_results, write_json

TAMPERING = "test_tampering"
# `cwm-eval run` options a resample may change -> the RunConfig field each sets; every other setting is the run's
OVERRIDES: dict[str, tuple[str, ...]] = {
    "model_url": ("model_url",), "model": ("model",), "api_key": ("api_key",), "concurrency": ("concurrency",),
    "trial_timeout": ("trial_timeout",), "network": ("network",), "max_model_requests": ("max_model_requests",),
    "max_starting_containers": ("max_starting_containers",), "max_turns": ("cwm", "max_turns"),
    "command_timeout": ("cwm", "command_timeout"), "max_tokens_per_turn": ("cwm", "max_action_len"),
    "context_size": ("cwm", "context_size"), "token_exact": ("cwm", "token_exact"), "logprobs": ("cwm", "logprobs"),
    "tokenizer": ("cwm", "tokenizer"), "cwm_source": ("cwm", "cwm_source"),
    "temperature": ("sampling", "temperature"), "top_p": ("sampling", "top_p"),
    "cpus": ("limits", "cpus"), "memory": ("limits", "memory"), "disk": ("limits", "disk"),
}
SUITES = ("demo", "swebench", "terminal-bench")  # LiveCodeBench's selection is not in run.json: not rebuilt here


def find_run(name: str, output: Path) -> Path:
    """RUN as a run folder, or a run id under `output`; one line when it is not a finished run."""
    path = Path(name) if Path(name, "run.json").is_file() else Path(output) / name
    if not (path / "run.json").is_file():
        raise UserError(f"{name} is not a run: no run.json in {path}")
    if next(iter_results(path), None) is None:
        raise UserError(f"run {path.name} has no trial results yet: nothing to resample")
    return path


def recorded(run_dir: Path) -> dict:
    try:
        data = json.loads((run_dir / "run.json").read_text())
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot read {run_dir / 'run.json'}: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("config"), dict):
        raise UserError(f"{run_dir / 'run.json'} holds no run configuration (`config`)")
    return data


def run_config(run_dir: Path, given: dict[str, Any]) -> RunConfig:
    """The run's RunConfig from run.json, with the options the command line set put over it."""
    data = json.loads(json.dumps(recorded(run_dir)["config"]))
    unknown = sorted(set(given) - set(OVERRIDES))
    if unknown:
        raise ValueError(f"not a resample override: {unknown[0]}")
    for name, value in given.items():
        *parents, key = OVERRIDES[name]
        target = data
        for parent in parents:
            target = target.setdefault(parent, {})
        target[key] = str(value) if isinstance(value, Path) else value
    try:
        return RunConfig.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error["loc"])
        raise UserError(f"run {run_dir.name}: {where}: {error['msg']}") from None


def by_task(run_dir: Path) -> dict[str, list[TrialResult]]:
    trials: dict[str, list[TrialResult]] = defaultdict(list)
    for _, result in iter_results(run_dir):
        trials[result.task_id].append(result)
    return dict(trials)


def passed(result: TrialResult) -> bool:
    return result.resolved and TAMPERING not in result.flags


def scored(results: list[TrialResult]) -> list[TrialResult]:
    return [r for r in results if r.outcome is not Outcome.ERROR]


@dataclass
class Selection:
    """The run's tasks, grouped by what a resample does with them."""

    unresolved: list[str] = field(default_factory=list)
    resolved: list[str] = field(default_factory=list)
    only_errors: list[str] = field(default_factory=list)


def select_tasks(run_dir: Path) -> Selection:
    selection = Selection()
    for task, results in sorted(by_task(run_dir).items()):
        attempts = scored(results)
        group = (selection.only_errors if not attempts else selection.resolved if any(map(passed, attempts))
                 else selection.unresolved)
        group.append(task)
    return selection


@dataclass
class Plan:
    source: Path  # the finished run
    original: RunConfig  # its configuration, as run.json has it
    config: RunConfig  # the resample run's
    selection: Selection
    recorded_model: str | None  # the model the run's agent talked to


def plan(run: str, k: int, output: Path, given: dict[str, Any], *, run_id: str | None = None,
         results: Path | None = None) -> Plan:
    """What `resample RUN --k K` runs: the run's unresolved tasks (RUN: a folder, or an id under `output`), K attempts
    each, under the run's configuration with the `given` options over it. The new run goes under `results`, by
    default next to RUN's folder."""
    if k < 1:
        raise UserError(f"--k must be at least 1, got {k}")
    source = find_run(run, output)
    info = recorded(source)
    original = run_config(source, {})
    if original.suite not in SUITES:
        raise UserError(f"resample rebuilds the tasks of {', '.join(SUITES)} runs; {source.name} is a "
                        f"{original.suite} run")
    if original.agent != "cwm":
        raise UserError(f"resample samples the model again, but run {source.name} used the {original.agent} agent")
    selection = select_tasks(source)
    config = run_config(source, given).model_copy(update={
        "run_id": run_id or f"{source.name}-resample-k{k}", "output": Path(results or source.parent), "attempts": k,
        "task_ids": selection.unresolved, "reject_test_tampering": True})
    return Plan(source=source, original=original, config=config, selection=selection,
                recorded_model=info.get("model"))


def load_tasks(config: RunConfig):
    """The suite of the run and the tasks named in `config.task_ids`."""
    from tasks import load_suite

    suite = load_suite(config.suite, config.dataset, image_map=config.image_map,
                       test_timeout_multiplier=config.test_timeout_multiplier, cwm_source=config.cwm.cwm_source)
    return suite, suite.load(config.task_ids or None)


def summarise(run_dir: Path, task_ids: list[str], k: int) -> dict:
    """Per task and in total: attempts (scored), passing attempts, infrastructure errors, pass@1, pass@k and the
    attempt best-of-k keeps. pass@k is the unbiased estimator over a task's scored attempts, averaged over the tasks
    with at least k of them (a task short of k because of errors is left out until a resume redoes them)."""
    trials = by_task(run_dir)
    tasks = []
    for task in task_ids:
        results = trials.get(task, [])
        attempts = scored(results)
        good = [r for r in attempts if passed(r)]
        best = min(good, key=cost) if good else None
        tasks.append({"task": task, "attempts": len(attempts), "passed": len(good),
                      "errors": len(results) - len(attempts),
                      "pass@1": len(good) / len(attempts) if attempts else None,
                      "pass@k": pass_at_k(len(attempts), len(good), k) if len(attempts) >= k else None,
                      "best": None if best is None else {"attempt": best.attempt, "tokens": total_tokens(best),
                                                         "turns": best.turns}})
    return {"run": run_dir.name, "k": k, "tasks_tried": len(tasks),
            "tasks_recovered": sum(1 for t in tasks if t["passed"]),
            "attempts": sum(t["attempts"] for t in tasks), "passing_attempts": sum(t["passed"] for t in tasks),
            "errors": sum(t["errors"] for t in tasks), "pass@1": _mean(t["pass@1"] for t in tasks),
            "pass@k": _mean(t["pass@k"] for t in tasks), "per_task": tasks}


def _mean(values) -> float | None:
    known = [v for v in values if v is not None]
    return sum(known) / len(known) if known else None


def summary_path(out: Path) -> Path:
    return out.with_name(out.stem + ".summary.json")


def write_data(plan_: Plan, fmt: str, out: Path) -> dict:
    """The passing trajectories of the resample run, best-of-k, as `fmt` rows in `out`; the summary (with the
    export's counts) as JSON beside it."""
    if fmt not in FORMATS:
        raise UserError(f"unknown --format {fmt!r}; use {', '.join(FORMATS)}")
    run_dir = plan_.config.output / plan_.config.run_id
    summary = summarise(run_dir, plan_.selection.unresolved, plan_.config.attempts)
    exported = export([run_dir], select="passed", fmt=fmt, best_of_k=True, out=out)
    summary.update({"source": plan_.source.name, "format": fmt, "out": str(out), "rows": exported["rows"],
                    "tokens": exported["tokens"], "skipped_not_token_exact": exported["skipped_not_token_exact"],
                    "dropped_secrets": exported["dropped_secrets"],
                    "left_out": {"resolved": len(plan_.selection.resolved),
                                 "only_errors": len(plan_.selection.only_errors)}})
    write_json(summary_path(out), summary)
    return summary


def _pct(value: float | None) -> str:
    return "\u2013" if value is None else f"{100 * value:.1f}"


def summary_table(summary: dict) -> Table:
    k = summary["k"]
    short = sum(1 for task in summary["per_task"] if task["attempts"] < k)
    table = Table("Task", "Attempts", "Passed", "Infra errors", "pass@1 %", f"pass@{k} %",
                  "Kept (attempt, tokens, turns)",
                  title=f"resample of {summary['source']}: {summary['tasks_recovered']} of {summary['tasks_tried']} "
                        f"unresolved tasks recovered",
                  caption=f"pass@{k} leaves out {short} tasks with fewer than {k} scored attempts (infrastructure "
                          "errors): the same command again redoes them" if short else None)
    table.columns[0].overflow = "fold"
    for task in summary["per_task"]:
        best = task["best"]
        table.add_row(task["task"], str(task["attempts"]), str(task["passed"]), str(task["errors"]),
                      _pct(task["pass@1"]), _pct(task["pass@k"]),
                      "\u2013" if best is None else f"{best['attempt']}, {best['tokens']}, {best['turns']}")
    table.add_row("all", str(summary["attempts"]), str(summary["passing_attempts"]), str(summary["errors"]),
                  _pct(summary["pass@1"]), _pct(summary["pass@k"]), f"rows: {summary['rows']}", style="bold")
    return table
