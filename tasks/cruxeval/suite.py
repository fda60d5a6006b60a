"""CruxEval-O (output prediction) as a suite: each (problem, sample) is a trial of the runner with the suite's own
body (trial.py: one model call, the predicted OUTPUT graded in a fresh container). pass@1 with its 95% interval is
in metrics.json (`finalize`) and in the leaderboard, as every suite's resolved rate is."""

from __future__ import annotations

import functools
from collections import defaultdict
from pathlib import Path

from harness.errors import UserError
from harness.images import BASE_IMAGE
from harness.records import TrialResult
from harness.stats import clustered_interval, pass_at_k
from harness.store import write_json
from tasks.base import Task
from tasks.sampled import SampledSuite
from tasks.cruxeval.dataset import Problem, Selection, load_problems
from tasks.cruxeval.grader import DEFAULT_TIMEOUT
from tasks.cruxeval.prompts import STYLES, load_texts


class CruxEvalSuite(SampledSuite):
    def __init__(self, selection: Selection, *, prompt_style: str = "plain", samples: int = 1,
                 timeout: float = DEFAULT_TIMEOUT, cwm_source: Path | None = None, image: str = BASE_IMAGE,
                 name: str = "cruxeval"):
        if prompt_style not in STYLES:
            raise UserError(f"unknown --prompt-style {prompt_style!r}; use {' or '.join(STYLES)}")
        if samples < 1 or timeout <= 0:
            raise UserError("--samples must be at least 1 and the timeout positive")
        self.selection, self.prompt_style, self.samples, self.timeout = selection, prompt_style, samples, timeout
        self.image, self.name = image, name
        self.texts = load_texts(prompt_style, cwm_source)
        self._problems: dict[str, Problem] = {}

    @property
    def label(self) -> str:
        texts = "" if self.texts.comparable else " (own prompt texts: not comparable)"
        return f"cruxeval-O prompt={self.prompt_style}{texts}"

    @property
    def trial(self):
        from tasks.cruxeval.trial import sample_trial

        return functools.partial(sample_trial, self)

    def describe(self) -> dict:
        return {"prompt_style": self.prompt_style, "prompt_texts": {"origin": self.texts.origin,
                                                                    "comparable": self.texts.comparable},
                "selection": self.selection.model_dump(mode="json"), "samples": self.samples,
                "timeout": self.timeout, "image": self.image}

    def problem(self, task_id: str) -> Problem:
        return self._problems[task_id]

    def load(self, task_ids: list[str] | None = None) -> list[Task]:
        selection = self.selection.model_copy(update={"task_ids": task_ids or self.selection.task_ids})
        problems = load_problems(selection)
        if not problems:
            raise UserError("no CruxEval problem matches the selection")
        self._problems.update({p.id: p for p in problems})
        return [Task(id=p.id, suite=self.name, image=self.image, workdir="/tmp",
                     instruction=f"f({p.input}) == ??", metadata={"input": p.input}) for p in problems]

    def finalize(self, run_dir: Path, results: list[TrialResult], tasks: list[Task]) -> list[str]:
        metrics = summarize(results)
        path = Path(run_dir) / "metrics.json"
        write_json(path, metrics)
        overall = metrics["overall"]
        if overall["pass@1"] is None:
            return [f"cruxeval: nothing scored -> {path}"]
        return [f"cruxeval ({self.prompt_style}): {overall['problems']} problems, pass@1 {overall['pass@1']:.3f} "
                f"(95% interval {overall['ci95'][0]:.3f}-{overall['ci95'][1]:.3f}) -> {path}"]


def summarize(results: list[TrialResult]) -> dict:
    """pass@1 per problem (the mean over its samples) and overall, with the task-clustered 95% interval."""
    outcomes: dict[str, list[bool]] = defaultdict(list)
    for result in results:
        if result.finished:
            outcomes[result.task_id].append(result.resolved)
    problems = {task: {"n": len(v), "c": sum(v), "pass@1": pass_at_k(len(v), sum(v), 1)}
                for task, v in sorted(outcomes.items())}
    mean, low, high = clustered_interval(list(outcomes.values()))
    overall = {"problems": len(problems), "samples": sum(len(v) for v in outcomes.values()),
               "pass@1": mean if problems else None, "ci95": [low, high] if problems else None}
    return {"overall": overall, "infra_errors": sum(1 for r in results if not r.finished), "problems": problems}
