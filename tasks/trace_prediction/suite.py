"""Trace prediction as a suite: given a program and its entry call, the model predicts the execution trace in CWM's
format, one frame per request (trial.py), scored against the real trace (scoring.py). Each (program, sample) is a
trial of the runner; a trial is resolved when the whole trace is exact. metrics.json (`finalize`) and the leaderboard
hold the mean prefix accuracy, first-divergence frame and exact-trace rate."""

from __future__ import annotations

import functools
from collections import defaultdict
from pathlib import Path

from harness.errors import UserError
from harness.images import BASE_IMAGE
from harness.records import TrialResult
from harness.stats import clustered_interval
from harness.store import write_json
from harness.traces.tracer import TraceLimits
from tasks.base import Task
from tasks.sampled import SampledSuite
from tasks.selection import TaskSelection
from tasks.trace_prediction.dataset import BUNDLED, Program, load_programs
from tasks.trace_prediction.texts import from_cwm, load_trace_texts

METRICS = ("exact_match", "prefix_accuracy", "first_divergence")


class TracePredictionSuite(SampledSuite):
    def __init__(self, dataset: str | None, selection: TaskSelection, *, samples: int = 1,
                 limits: TraceLimits | None = None, cwm_source: Path | None = None, image: str = BASE_IMAGE,
                 name: str = "trace-prediction"):
        if samples < 1:
            raise UserError("--samples must be at least 1")
        self.dataset, self.selection, self.samples, self.image, self.name = dataset, selection, samples, image, name
        self.texts = load_trace_texts(cwm_source)  # the prompt: CWM's trace texts and the real entry call frame
        self.limits = limits or TraceLimits(max_frames=2_000, timeout=10.0)
        self._programs: dict[str, Program] = {}
        self.real_traces: dict = {}  # task id -> the real TraceResult, made once per process (deterministic)

    def __getstate__(self):  # a copy sent to a Ray worker traces again there
        return {**self.__dict__, "real_traces": {}}

    @property
    def label(self) -> str:
        texts = "CWM's trace texts" if from_cwm(self.texts) else "built-in trace texts: not comparable"
        return f"trace-prediction frame-by-frame ({texts})"

    @property
    def trial(self):
        from tasks.trace_prediction.trial import sample_trial

        return functools.partial(sample_trial, self)

    def describe(self) -> dict:
        return {"dataset": self.dataset or str(BUNDLED.name), "selection": self.selection.model_dump(mode="json"),
                "samples": self.samples, "tracer_limits": vars(self.limits), "image": self.image,
                "prompt_texts": {"origin": self.texts.origin, "marker": self.texts.marker}}

    def program(self, task_id: str) -> Program:
        return self._programs[task_id]

    def load(self, task_ids: list[str] | None = None) -> list[Task]:
        selection = self.selection.model_copy(update={"task_ids": task_ids or self.selection.task_ids})
        programs = load_programs(self.dataset, selection)
        if not programs:
            raise UserError("no trace-prediction program matches the selection")
        self._programs.update({p.id: p for p in programs})
        return [Task(id=p.id, suite=self.name, image=self.image, workdir="/tmp", instruction=f"trace {p.entry}",
                     metadata={"entry": p.entry, "args": p.args}) for p in programs]

    def finalize(self, run_dir: Path, results: list[TrialResult], tasks: list[Task]) -> list[str]:
        metrics = summarize(results)
        path = Path(run_dir) / "metrics.json"
        write_json(path, metrics)
        overall = metrics["overall"]
        if not overall["trials"]:
            return [f"trace-prediction: nothing scored -> {path}"]
        return [f"trace-prediction: {overall['programs']} programs, exact traces {overall['exact_match']:.3f}, "
                f"prefix accuracy {overall['prefix_accuracy']:.3f} -> {path}"]


def summarize(results: list[TrialResult]) -> dict:
    """Per program and overall: each metric's mean over the scored samples (first divergence over the diverged)."""
    per_task: dict[str, list[dict]] = defaultdict(list)
    for result in results:
        if result.finished and "metrics" in result.verifier:
            per_task[result.task_id].append(result.verifier["metrics"])

    def block(rows: list[dict]) -> dict:
        diverged = [r["first_divergence"] for r in rows if r.get("first_divergence") is not None]
        return {"trials": len(rows), "exact_match": mean([r["exact_match"] for r in rows]),
                "prefix_accuracy": mean([r["prefix_accuracy"] for r in rows]),
                "first_divergence": mean(diverged)}

    everything = [row for rows in per_task.values() for row in rows]
    exact = [[row["exact_match"] == 1.0 for row in rows] for rows in per_task.values()]
    _, low, high = clustered_interval(exact)
    overall = {"programs": len(per_task), **block(everything), "exact_match_ci95": [low, high] if exact else None}
    return {"overall": overall, "infra_errors": sum(1 for r in results if not r.finished),
            "programs": {task: block(rows) for task, rows in sorted(per_task.items())}}


def mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None
