"""Test-time scaling in reports: a tts run's own report.md, its leaderboard row's pass@1 and pass@k (over the
candidates, from tts.json), and the instances where selection lost against the oracle."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

AGENT = "tts"  # the agent name of a tts run's trials (the selected patch, graded)
TTS_FILE = "tts.json"
LOSSES = "tts_losses"
LOSSES_HEADING = "Test-time scaling: where selection lost against the oracle"


def _figure(name: str, value: dict) -> str:
    low, high = value["ci95"]
    return f"| {name} | {value['pct']:.1f} | {low:.1f}\u2013{high:.1f} |"


def loss_rows(summary: dict) -> list[dict]:
    """Per instance where some candidate resolves and the selected patch does not."""
    rows = []
    for task in summary["tasks"]:
        resolving = [c["attempt"] for c in task["candidates"] if c["resolved"]]
        if resolving and not task.get("selected_resolved"):
            kept = sum(t["kept"] for t in task["tests"])
            scores = {s["representative"]: s["passed"] for s in task["scores"]}
            rows.append({"run_id": summary["run_id"], "task_id": task["task_id"],
                         "candidates": len(task["candidates"]), "resolving attempts": ", ".join(map(str, resolving)),
                         "tests kept": f"{kept}/{len(task['tests'])}", "selected attempt": task["selected_attempt"],
                         "tests passed (selected)": scores.get(task["selected_attempt"], 0)})
    return rows


def markdown(summary: dict) -> str:
    fig = summary["figures"]
    parts = [f"# {summary['run_id']}: test-time scaling", "",
             f"Candidates from {summary['patches']}, generated tests from {summary['tests']}, selector "
             f"{summary['selector']}; {fig['tasks']} tasks, up to {fig['k']} candidates each.", "",
             "| Figure | % | 95% interval |", "|---|---:|---:|",
             _figure("pass@1 (mean over candidates)", fig["pass@1"]),
             _figure(f"oracle pass@k (any candidate resolves, k={fig['k']})", fig["oracle_pass@k"]),
             _figure(f"selected ({summary['selector']}), graded by swebench", fig["selected"]), ""]
    losses = loss_rows(summary)
    parts += [f"## {LOSSES_HEADING}", ""]
    parts += [pd.DataFrame(losses).to_markdown(index=False), ""] if losses else ["none", ""]
    return "\n".join(parts)


def _summary(run_dir: Path) -> dict | None:
    path = run_dir / TTS_FILE
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _run_dirs(trials: pd.DataFrame) -> list[Path]:
    """The tts runs among these trials (their result.json sits at <run>/trials/<task>/<attempt>/)."""
    tts = trials[trials["agent"] == AGENT] if "agent" in trials else trials.iloc[0:0]
    return sorted({Path(path).parents[3] for path in tts["path"]})


def leaderboard_columns(trials: pd.DataFrame) -> dict:
    """For a row of tts trials: pass@1 and pass@k over the candidates (the row's resolved % is the selection)."""
    from harness.report import _mean_pass

    per_task = []
    for run_dir in _run_dirs(trials):
        summary = _summary(run_dir)
        if summary is not None:
            wanted = set(trials["task_id"])
            per_task += [[c["resolved"] for c in t["candidates"]] for t in summary["tasks"]
                         if t["task_id"] in wanted and t["candidates"]]
    if not per_task:
        return {}
    k = min(len(a) for a in per_task)
    return {"pass@1": 100 * _mean_pass(per_task, 1), "k": k, "pass@k": 100 * _mean_pass(per_task, k)}


def loss_tables(frame: pd.DataFrame) -> dict[str, pd.DataFrame]:
    rows = []
    for run_dir in _run_dirs(frame):
        summary = _summary(run_dir)
        if summary is not None:
            rows += loss_rows(summary)
    return {LOSSES: pd.DataFrame(rows)} if rows else {}
