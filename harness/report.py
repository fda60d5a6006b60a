"""Leaderboards across runs (pandas): one row per (model, agent config, suite), breakdowns, paired comparisons.

Infrastructure errors are excluded from every score and counted apart.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd

from harness.errors import UserError
from harness.index import ResultsIndex
from harness.stats import INTERVAL_METHOD, clustered_interval, effective_sample_size, mcnemar_exact, pass_at_k, \
    paired_bootstrap
from harness.tts_report import LOSSES, LOSSES_HEADING, leaderboard_columns, loss_tables

GROUP = ["model", "config", "suite"]
# column titles as a person writes them (the JSON keeps the keys)
TITLES = {"model": "Model", "config": "Agent configuration", "suite": "Suite", "tasks": "Tasks", "trials": "Trials",
          "infra_errors": "Infra errors (unscored)", "tampering": "Test tampering (flagged)", "resolved_pct": "Resolved %", "ci95": "95% interval",
          "n_eff": "Effective n", "pass@1": "pass@1 %", "k": "Attempts per task (k)", "pass@k": "pass@k %",
          "mean_turns": "Turns (mean)", "prompt_tokens": "Prompt tokens (mean)",
          "completion_tokens": "Completion tokens (mean)", "wall_s_per_trial": "Seconds per trial",
          "tokens_per_s": "Tokens/s", "exit_status": "Exit statuses"}
# means of a suite's own per-trial metrics (trace prediction), shown only for rows that record them
METRIC_TITLES = {"exact_match": "Exact trace %", "prefix_accuracy": "Prefix accuracy %",
                 "first_divergence": "First divergence (mean frame)"}
PERCENT_METRICS = {"exact_match", "prefix_accuracy"}
TITLES.update(METRIC_TITLES)
WHOLE = {"tasks", "trials", "infra_errors", "tampering", "k", "prompt_tokens", "completion_tokens"}  # counts and tokens
MISSING = "\u2013"  # an en dash where there is no number
HEADINGS = {LOSSES: LOSSES_HEADING}  # tables not by a label
FOOTNOTE = f"95% interval: {INTERVAL_METHOD}. Infrastructure errors are counted apart and never scored."


def heading(key: str) -> str:
    """The title of a breakdown table: its own, or "By <label>"."""
    return HEADINGS.get(key) or "By " + key.replace("_", " ")


def resolve_runs(names: list[str], root: Path) -> list[Path]:
    """Run folders from paths or ids (under `root`); none given means every run under `root`."""
    if not names:
        runs = sorted(p.parent for p in root.glob("*/run.json"))
        if not runs:
            raise UserError(f"no runs under {root}/ (a run folder holds run.json)")
        return runs
    runs = []
    for name in names:
        path = Path(name) if Path(name, "run.json").exists() else root / name
        if not (path / "run.json").exists():
            raise UserError(f"{name} is not a run: no run.json in {path}")
        runs.append(path)
    return runs


def load_results(runs: list[Path]) -> pd.DataFrame:
    frames = []
    for parent in sorted({run.parent for run in runs}):
        index = ResultsIndex(parent)
        mine = [run for run in runs if run.parent == parent]
        index.sync(mine)
        frames.append(index.frame([run.name for run in mine]))
    frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    if frame.empty:
        raise UserError("the runs hold no finished trials yet")
    frame["resolved"] = frame["outcome"] == "resolved"
    frame["model"] = frame["model"].replace("", "-")
    return frame


def _per_task(scored: pd.DataFrame) -> list[list[bool]]:
    return [list(group["resolved"]) for _, group in scored.groupby("task_id")]


def leaderboard_row(trials: pd.DataFrame) -> dict:
    scored = trials[trials["outcome"] != "error"]
    per_task = _per_task(scored)
    mean, low, high = clustered_interval(per_task)
    k = min((len(a) for a in per_task), default=0)
    row = {
        "tasks": scored["task_id"].nunique(), "trials": len(scored), "infra_errors": int((trials["outcome"] == "error").sum()),
        "tampering": int(scored["flags"].map(lambda flags: "test_tampering" in flags).sum()),
        "resolved_pct": 100 * mean, "ci95_low": 100 * low, "ci95_high": 100 * high,
        "n_eff": effective_sample_size(per_task) if per_task else float("nan"),
        "pass@1": 100 * _mean_pass(per_task, 1), "k": k, "pass@k": 100 * _mean_pass(per_task, k) if k else float("nan"),
        "mean_turns": scored["turns"].mean(), "prompt_tokens": scored["prompt_tokens"].mean(),
        "completion_tokens": scored["completion_tokens"].mean(), "wall_s_per_trial": scored["wall_seconds"].mean(),
        "tokens_per_s": scored["completion_tokens"].sum() / scored["model_seconds"].sum()
        if scored["model_seconds"].sum() > 0 else float("nan"),
        "exit_status": ", ".join(f"{s} {n}" for s, n in trials["exit_status"].value_counts().sort_index().items()),
    }
    return row


def metric_columns(trials: pd.DataFrame) -> dict:
    """The mean of each per-trial metric a suite records (index column `metrics`) over the scored trials that have it;
    the first divergence is averaged over the trials that diverged. {} when the trials record none."""
    if "metrics" not in trials:
        return {}
    scored = trials[trials["outcome"] != "error"]
    columns = {}
    for key in METRIC_TITLES:
        values = [m[key] for m in scored["metrics"] if isinstance(m, dict) and m.get(key) is not None]
        if values:
            columns[key] = sum(values) / len(values) * (100 if key in PERCENT_METRICS else 1)
    return columns


def _mean_pass(per_task: list[list[bool]], k: int) -> float:
    values = [pass_at_k(len(a), sum(a), k) for a in per_task if len(a) >= k]
    return sum(values) / len(values) if values else float("nan")


def leaderboard(frame: pd.DataFrame) -> pd.DataFrame:
    rows = [{**dict(zip(GROUP, key)), **leaderboard_row(group), **leaderboard_columns(group),  # tts: candidates
             **metric_columns(group)}
            for key, group in frame.groupby(GROUP)]
    return pd.DataFrame(rows).sort_values(["suite", "resolved_pct"], ascending=[True, False], ignore_index=True)


def breakdowns(frame: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Resolved % per label value (SWE-bench repo, Terminal-Bench category/difficulty, LCB difficulty/window)."""
    labels = frame["labels"].apply(pd.Series)
    tables = {}
    for key in labels.columns:
        with_label = frame.assign(**{key: labels[key]}).dropna(subset=[key])
        rows = [{**dict(zip([*GROUP, key], values)), **_short(group)}
                for values, group in with_label.groupby([*GROUP, key])]
        if rows:
            tables[key] = pd.DataFrame(rows)
    return {**tables, **loss_tables(frame)}  # tts runs: where selection lost against the oracle


def _short(trials: pd.DataFrame) -> dict:
    full = leaderboard_row(trials)
    return {name: full[name] for name in ("tasks", "trials", "resolved_pct", "ci95_low", "ci95_high", "n_eff")}


def compare(frame: pd.DataFrame, run_a: str, run_b: str) -> dict:
    """Per-task flips between two runs, exact McNemar on the flips, and the change with a bootstrap interval."""
    scored = frame[frame["outcome"] != "error"]
    a = scored[scored["run_id"] == run_a].groupby("task_id")["resolved"].mean()
    b = scored[scored["run_id"] == run_b].groupby("task_id")["resolved"].mean()
    if a.empty or b.empty:
        raise UserError(f"--compare needs two runs with scored trials: {run_a}, {run_b}")
    common = sorted(set(a.index) & set(b.index))
    if not common:
        raise UserError(f"{run_a} and {run_b} share no task")
    gained = [t for t in common if a[t] < 0.5 <= b[t]]
    lost = [t for t in common if b[t] < 0.5 <= a[t]]
    change, low, high = paired_bootstrap([a[t] for t in common], [b[t] for t in common])
    return {"run_a": run_a, "run_b": run_b, "tasks": len(common), "resolved_a_pct": 100 * a[common].mean(),
            "resolved_b_pct": 100 * b[common].mean(), "change_pct": 100 * change, "change_ci95": [100 * low, 100 * high],
            "gained": gained, "lost": lost, "mcnemar_p": mcnemar_exact(len(lost), len(gained))}


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA


def _cell(key: str, value) -> str:
    if _missing(value):
        return MISSING
    if key in WHOLE and isinstance(value, (int, float)):
        return str(int(round(value)))
    if isinstance(value, float):
        return f"{value:.1f}"
    return str(value)


def title(key: str) -> str:
    return TITLES.get(key) or key.replace("_", " ").capitalize()


def display(table: pd.DataFrame) -> pd.DataFrame:
    """The table as text a person reads: plain titles, one interval column, whole counts, a dash for no number."""
    rows = []
    for record in table.to_dict(orient="records"):
        row = {}
        for key, value in record.items():
            if key == "ci95_high":
                continue
            if key == "ci95_low":
                low, high = value, record.get("ci95_high")
                row[title("ci95")] = MISSING if _missing(low) or _missing(high) else f"{low:.1f}\u2013{high:.1f}"
            else:
                row[title(key)] = _cell(key, value)
        rows.append(row)
    return pd.DataFrame(rows, columns=list(rows[0]) if rows else [title(c) for c in table.columns])


def _markdown_table(table: pd.DataFrame) -> str:
    shown = display(table)
    numeric = [all(c == MISSING or c.replace(".", "", 1).lstrip("-").isdigit() for c in shown[col])
               for col in shown.columns]
    return shown.to_markdown(index=False, disable_numparse=True,
                             colalign=["right" if n else "left" for n in numeric])


def markdown(board: pd.DataFrame, tables: dict[str, pd.DataFrame]) -> str:
    parts = ["# Leaderboard", "", _markdown_table(board), "", FOOTNOTE, ""]
    for key, table in tables.items():
        parts += [f"## {heading(key)}", "", _markdown_table(table), ""]
    return "\n".join(parts)


def as_json(board: pd.DataFrame, tables: dict[str, pd.DataFrame]) -> str:
    data = {"interval_method": INTERVAL_METHOD, "leaderboard": json.loads(board.to_json(orient="records")),
            "breakdowns": {k: json.loads(t.to_json(orient="records")) for k, t in tables.items()}}
    return json.dumps(data, indent=2)


def write_run_report(run_dir: Path) -> Path:
    """The Markdown report written at the end of a run."""
    path = run_dir / "report.md"
    try:
        frame = load_results([run_dir])
    except UserError as exc:
        path.write_text(f"# {run_dir.name}\n\n{exc}\n")
        return path
    path.write_text(markdown(leaderboard(frame), breakdowns(frame)))
    return path
