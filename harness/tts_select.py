"""Selection: one patch per task from its candidates, by the matrix of generated tests.

- cwm: CWM's rule. The distinct patch that the most kept tests pass; ties go to the patch submitted most often
  (majority over identical patches, compared by exact text as CWM's tts_majority_voting.py does, empty patches
  excluded); then to the fewest tokens. Without kept tests every patch passes none, and the rule is majority voting.
- majority: the patch submitted most often, then the fewest tokens (CWM's tts_majority_voting.py; it breaks ties by
  a seeded shuffle, here by tokens then attempt, so a rerun selects the same patch).
- first: the first attempt's patch, whatever it is: what a single rollout would have submitted.

Within a group of identical patches the attempt with the fewest tokens stands for it; the last tie-break is the
lower attempt.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

from harness.stats import clustered_interval, wilson_interval
from harness.tts_matrix import BASE, distinct_patches, kept, passes
from harness.tts_runs import Candidate, GeneratedTest

SELECTORS = ("cwm", "majority", "first")
Selector = Literal["cwm", "majority", "first"]


class PatchScore(BaseModel):
    attempts: list[int]  # the candidates that submitted this exact patch
    passed: int  # kept tests it passes
    votes: int
    tokens: int  # the fewest of its attempts
    representative: int  # the attempt with those tokens


def kept_tests(task_id: str, tests: list[GeneratedTest], cells: dict) -> list[int]:
    return [t.attempt for t in tests if t.problem is None and kept(cells.get((task_id, t.attempt, BASE)))]


def score_patches(task_id: str, candidates: list[Candidate], kept_attempts: list[int], cells: dict) -> list[PatchScore]:
    by_attempt = {c.attempt: c for c in candidates}
    scores = []
    for attempts in distinct_patches(candidates).values():
        cheapest = min(attempts, key=lambda a: (by_attempt[a].tokens, a))
        passed = sum(passes(cells.get((task_id, test, str(attempts[0])))) for test in kept_attempts)
        scores.append(PatchScore(attempts=attempts, passed=passed, votes=len(attempts),
                                 tokens=by_attempt[cheapest].tokens, representative=cheapest))
    return scores


def select(candidates: list[Candidate], scores: list[PatchScore], selector: Selector) -> Candidate | None:
    """The selected candidate, or None when there is nothing to select (no candidate, or only empty patches)."""
    by_attempt = {c.attempt: c for c in candidates}
    if selector == "first":
        return min(candidates, key=lambda c: c.attempt) if candidates else None
    if not scores:
        return None
    if selector == "majority":
        best = min(scores, key=lambda s: (-s.votes, s.tokens, s.representative))
    else:
        best = min(scores, key=lambda s: (-s.passed, -s.votes, s.tokens, s.representative))
    return by_attempt[best.representative]


class TaskSelection(BaseModel):
    """What tts.json records of one task."""

    task_id: str
    candidates: list[dict]  # attempt, resolved (the patch run's verdict), tokens, empty
    tests: list[dict]  # attempt, kept, why not (problem or base verdict)
    scores: list[PatchScore]
    matrix: list[dict]  # its cells without their output (matrix.jsonl has it)
    selector: str
    selected_attempt: int | None
    selected_resolved: bool | None = None  # the selected patch graded by swebench
    grading: dict = {}

    @property
    def oracle(self) -> bool:
        return any(c["resolved"] for c in self.candidates)

    @property
    def lost_to_oracle(self) -> bool:
        return self.oracle and not self.selected_resolved


def describe_tests(task_id: str, tests: list[GeneratedTest], cells: dict) -> list[dict]:
    rows = []
    for test in tests:
        base = cells.get((task_id, test.attempt, BASE))
        why = test.problem or (None if kept(base) else "not run (an infrastructure error; redone on resume)"
                               if base is None else f"on the unpatched repo: {base.verdict} (printed "
                               f"{', '.join(repr(m) for m in base.markers) or 'no verdict line'})")
        rows.append({"attempt": test.attempt, "kept": why is None, "discarded_because": why})
    return rows


def select_task(task_id: str, candidates: list[Candidate], tests: list[GeneratedTest], cells: dict,
                selector: Selector) -> tuple[TaskSelection, Candidate | None]:
    kept_attempts = kept_tests(task_id, tests, cells)
    scores = score_patches(task_id, candidates, kept_attempts, cells)
    chosen = select(candidates, scores, selector)
    matrix = [cell.model_dump(mode="json", exclude={"output"}) for cell in sorted(
        (cell for key, cell in cells.items() if key[0] == task_id),
        key=lambda c: (c.test_attempt, -1 if c.patch_attempt == BASE else c.patch_attempt))]
    return TaskSelection(
        task_id=task_id, selector=selector, scores=scores, matrix=matrix,
        candidates=[{"attempt": c.attempt, "resolved": c.resolved, "tokens": c.tokens, "empty": not c.patch.strip()}
                    for c in candidates],
        tests=describe_tests(task_id, tests, cells),
        selected_attempt=chosen.attempt if chosen else None), chosen


def figure(p: float, low: float, high: float) -> dict:
    return {"pct": 100 * p, "ci95": [100 * low, 100 * high]}


def figures(selections: list[TaskSelection]) -> dict:
    """pass@1 (mean over candidates, attempts clustered by task), oracle pass@k (any candidate resolves) and the
    selected accuracy, each with its 95% interval; over tasks with at least one candidate."""
    scored = [s for s in selections if s.candidates]
    n = len(scored)
    per_task = [[c["resolved"] for c in s.candidates] for s in scored]
    oracle = sum(s.oracle for s in scored) / n if n else float("nan")
    selected = sum(bool(s.selected_resolved) for s in scored) / n if n else float("nan")
    return {
        "tasks": n, "k": max((len(a) for a in per_task), default=0),
        "pass@1": figure(*clustered_interval(per_task)),
        "oracle_pass@k": figure(oracle, *wilson_interval(oracle, n)),
        "selected": figure(selected, *wilson_interval(selected, n)),
        "lost_to_oracle": [s.task_id for s in scored if s.lost_to_oracle],
    }
