"""The results folder of a run: run.json, and per trial result.json + trajectory.jsonl, written as it happens.

results/<run_id>/
    run.json
    trials/<task_id>/<attempt>/result.json
    trials/<task_id>/<attempt>/trajectory.jsonl
    trials/<task_id>/<attempt>/verifier/...   (patch.diff, eval.sh, test_output.txt, report.json)
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Iterator

from pydantic import ValidationError

from harness.records import TrialResult
from harness.tally import Tally


def warn(text: str) -> None:
    print(f"warning: {text}", file=sys.stderr, flush=True)


def read_result(path: Path) -> TrialResult | None:
    """A result.json, or None with a warning naming the file when it is corrupt (a resume redoes that trial)."""
    try:
        return TrialResult.model_validate_json(path.read_bytes())
    except (OSError, ValidationError, ValueError) as exc:
        reason = exc.errors()[0]["msg"] if isinstance(exc, ValidationError) and exc.errors() else str(exc)
        reason = reason.splitlines()[0] if reason else type(exc).__name__
        warn(f"skipped corrupt {path} ({reason})")
        return None


def iter_results(run_dir: Path) -> Iterator[tuple[Path, TrialResult]]:
    """Every readable result under a run folder, in path order; corrupt ones are skipped with a warning."""
    for path in sorted(Path(run_dir).glob("trials/*/*/result.json")):
        result = read_result(path)
        if result is not None:
            yield path, result


def write_json(path: Path, data: Any) -> None:
    """Atomic: a reader never sees half a file, a crash never leaves one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n")
    os.replace(tmp, path)


class Trajectory:
    """Append-only JSONL log of one trial; every line is flushed when written."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._fh = open(path, "a", buffering=1)
        self.tally = Tally()  # of this trial's lines (a redone trial appends to the file)

    def write(self, record: dict[str, Any]) -> None:
        self._fh.write(json.dumps(record, default=str) + "\n")
        self._fh.flush()
        self.tally.see(record)

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> Trajectory:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class RunStore:
    def __init__(self, output: Path, run_id: str):
        self.run_id = run_id
        self.dir = Path(output) / run_id
        self.dir.mkdir(parents=True, exist_ok=True)

    def trial_dir(self, task_id: str, attempt: int) -> Path:
        return self.dir / "trials" / task_id / str(attempt)

    def write_run(self, info: dict[str, Any]) -> None:
        path = self.dir / "run.json"
        if path.exists():  # a resumed run keeps its history of starts
            old = json.loads(path.read_text())
            info["resumes"] = old.get("resumes", []) + [old.get("started_at")]
        from harness.redact import scrub  # secrets out of run.json: a password in --model-url is masked

        write_json(path, scrub(info))

    def result(self, task_id: str, attempt: int) -> TrialResult | None:
        path = self.trial_dir(task_id, attempt) / "result.json"
        if not path.exists():
            return None
        return read_result(path)

    def write_result(self, result: TrialResult) -> None:
        write_json(self.trial_dir(result.task_id, result.attempt) / "result.json", result.model_dump(mode="json"))

    def open_trajectory(self, task_id: str, attempt: int) -> Trajectory:
        """A fresh trajectory; one left by an interrupted or failed try is kept beside it."""
        trial = self.trial_dir(task_id, attempt)
        path = trial / "trajectory.jsonl"
        if path.exists():
            path.rename(trial / f"trajectory.interrupted-{int(time.time() * 1000)}.jsonl")
        return Trajectory(path)

    def results(self) -> list[TrialResult]:
        return [result for _, result in iter_results(self.dir)]
