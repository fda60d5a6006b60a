"""A SQLite index of every trial result under a results folder, kept up to date by the runner, so reports over
hundreds of runs read one table instead of every result.json."""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from harness.records import TrialResult
from harness.store import read_result

if TYPE_CHECKING:
    import pandas as pd

INDEX_FILE = "index.sqlite"
COLUMNS = {
    "run_id": "TEXT", "task_id": "TEXT", "attempt": "INTEGER", "suite": "TEXT", "agent": "TEXT", "model": "TEXT",
    "config": "TEXT", "outcome": "TEXT", "reward": "REAL", "exit_status": "TEXT", "turns": "INTEGER",
    "format_errors": "INTEGER", "prompt_tokens": "INTEGER", "completion_tokens": "INTEGER",
    "model_seconds": "REAL", "wall_seconds": "REAL", "labels": "TEXT", "flags": "TEXT", "path": "TEXT",
    "mtime": "REAL", "metrics": "TEXT",
}


def row(result: TrialResult, path: Path) -> dict:
    return {
        "run_id": result.run_id, "task_id": result.task_id, "attempt": result.attempt, "suite": result.suite,
        "agent": result.agent, "model": result.model or "", "config": result.config or result.agent,
        "outcome": result.outcome.value, "reward": result.reward, "exit_status": result.exit_status.value,
        "turns": result.turns, "format_errors": result.format_errors,
        "prompt_tokens": result.usage.prompt_tokens, "completion_tokens": result.usage.completion_tokens,
        "model_seconds": result.usage.model_seconds, "wall_seconds": result.wall_seconds,
        "labels": json.dumps(result.labels, sort_keys=True), "flags": json.dumps(result.flags),
        "path": str(path.resolve()),
        "mtime": path.stat().st_mtime if path.exists() else 0.0,
        "metrics": json.dumps(trial_metrics(result), sort_keys=True),
    }


def trial_metrics(result: TrialResult) -> dict:
    """A suite's own per-trial numbers (trace prediction: prefix accuracy, first divergence...), from the verifier's
    `metrics`; numbers and None only."""
    metrics = result.verifier.get("metrics") if isinstance(result.verifier, dict) else None
    if not isinstance(metrics, dict):
        return {}
    return {str(k): v for k, v in metrics.items()
            if v is None or (isinstance(v, int | float) and not isinstance(v, bool))}


class ResultsIndex:
    def __init__(self, root: Path):
        root.mkdir(parents=True, exist_ok=True)
        self.path = root / INDEX_FILE
        self._lock = threading.Lock()
        with self._connect() as db:
            columns = ", ".join(f"{name} {kind}" for name, kind in COLUMNS.items())
            db.execute(f"CREATE TABLE IF NOT EXISTS trials ({columns}, PRIMARY KEY (run_id, task_id, attempt))")
            present = {info[1] for info in db.execute("PRAGMA table_info(trials)")}
            for name, kind in COLUMNS.items():  # an index written by an earlier version: add what it lacks
                if name not in present:
                    db.execute(f"ALTER TABLE trials ADD COLUMN {name} {kind}")

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=30)

    def upsert(self, result: TrialResult, path: Path) -> None:
        values = row(result, path)
        marks = ", ".join("?" for _ in values)
        with self._lock, self._connect() as db:
            db.execute(f"INSERT OR REPLACE INTO trials ({', '.join(values)}) VALUES ({marks})", list(values.values()))

    def sync(self, run_dirs: list[Path]) -> None:
        """Index results written elsewhere (copied in, or by an older version); unchanged files are skipped."""
        with self._connect() as db:
            known = dict(db.execute("SELECT path, mtime FROM trials").fetchall())
        for run_dir in run_dirs:
            for path in sorted(run_dir.glob("trials/*/*/result.json")):
                if known.get(str(path.resolve())) != path.stat().st_mtime:
                    result = read_result(path)  # a corrupt file: a warning naming it, and no row
                    if result is not None:
                        self.upsert(result, path)
                    else:
                        with self._lock, self._connect() as db:
                            db.execute("DELETE FROM trials WHERE path = ?", (str(path.resolve()),))

    def frame(self, run_ids: list[str] | None = None) -> pd.DataFrame:
        import pandas as pd  # only reports need it; the runner imports this module on its way to a container

        query, params = "SELECT * FROM trials", []
        if run_ids:
            query += f" WHERE run_id IN ({', '.join('?' for _ in run_ids)})"
            params = list(run_ids)
        with self._connect() as db:
            frame = pd.read_sql_query(query, db, params=params)
        frame["labels"] = frame["labels"].map(json.loads)
        frame["flags"] = frame["flags"].map(lambda text: json.loads(text) if text else [])
        # NULL for rows indexed before the column existed (pandas may read an all-NULL column as NaN)
        frame["metrics"] = frame["metrics"].map(lambda text: json.loads(text) if isinstance(text, str) and text else {})
        return frame
