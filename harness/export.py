"""Trajectories as training data: `openai` and `sharegpt` chat rows, and `tokens` rows for the RL trainer.

`--select passed --best-of-k` is rejection sampling (per task, the passing trajectory with the fewest tokens, ties
by fewest turns); `--select failed` gives the failures with their reasons. Secrets are redacted from every exported
string (harness/redact.py: detect-secrets' plugins); a `tokens` row cannot be redacted without changing the sampled
sequence, so a trajectory whose text holds a secret is dropped from it and counted (`dropped_secrets`).
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path
from typing import Any, Iterator

from harness.errors import UserError
from harness.redact import holds_secret, scrub
from harness.records import TrialResult
from harness.store import iter_results

FORMATS = ("openai", "sharegpt", "tokens")
SELECTIONS = ("failed", "passed", "all")
SCHEMAS = Path(__file__).parent / "schemas"
SHAREGPT_ROLES = {"system": "system", "user": "human", "assistant": "gpt"}


def schema(fmt: str) -> dict:
    return json.loads((SCHEMAS / f"export-{fmt}.schema.json").read_text())


def total_tokens(result: TrialResult) -> int:
    return result.usage.prompt_tokens + result.usage.completion_tokens


def failure_reason(result: TrialResult) -> str | None:
    if result.resolved:
        return None
    verifier = result.verifier or {}
    tests = verifier.get("tests_status") or {}
    failing = [t for group in ("FAIL_TO_PASS", "PASS_TO_PASS") for t in tests.get(group, {}).get("failure", [])]
    if result.patch_note:
        detail = result.patch_note
    elif verifier.get("patch_successfully_applied") is False:
        detail = "the patch did not apply"
    elif failing:
        detail = f"failing tests: {', '.join(failing[:5])}" + (" ..." if len(failing) > 5 else "")
    else:
        detail = "not resolved"
    return f"{result.exit_status.value}: {detail}"


def trials(run_dirs: list[Path], select: str, suite: str | None) -> Iterator[tuple[TrialResult, list[dict]]]:
    wanted = {"passed": {"resolved"}, "failed": {"unresolved"}, "all": {"resolved", "unresolved"}}[select]
    for run_dir in run_dirs:
        for path, result in iter_results(run_dir):
            if result.outcome.value not in wanted or (suite and result.suite != suite):
                continue  # infrastructure errors are never training data
            trajectory = path.with_name("trajectory.jsonl")
            events = [json.loads(l) for l in trajectory.read_text().splitlines()] if trajectory.exists() else []
            yield result, events


def metadata(result: TrialResult) -> dict:
    return {"task": result.task_id, "suite": result.suite, "run": result.run_id, "attempt": result.attempt,
            "reward": result.reward, "outcome": result.outcome.value, "exit_status": result.exit_status.value,
            "model": result.model, "agent": result.agent, "failure_reason": failure_reason(result),
            "prompt_tokens": result.usage.prompt_tokens, "completion_tokens": result.usage.completion_tokens}


def messages(events: list[dict]) -> list[dict]:
    """The chat exactly as the model saw it: system, user, assistant turns with thinking, tool observations."""
    return [{"role": e["role"], "content": e["content"]} for e in events if e.get("kind") == "message"
            and "role" in e and e.get("content") is not None]


def to_row(fmt: str, result: TrialResult, events: list[dict]) -> dict | None:
    meta = metadata(result)
    if fmt == "openai":
        return {"messages": messages(events), "metadata": meta}
    if fmt == "sharegpt":
        turns = [{"from": SHAREGPT_ROLES.get(m["role"], "tool"), "value": m["content"]} for m in messages(events)]
        return {"conversations": turns, "metadata": meta}
    tokens = next((e for e in events if e.get("kind") == "tokens"), None)
    if tokens is None:
        return None  # not a token-exact trajectory
    versions = [e.get("policy_version") for e in events if e.get("role") == "assistant"]
    return {"input_ids": tokens["input_ids"], "loss_mask": tokens["loss_mask"], "logprobs": tokens["logprobs"],
            "policy_versions": versions, "reward": result.reward, "metadata": meta}


def token_text(events: list[dict]) -> list[str]:
    """The text behind a token-exact row: every message, and any text the tokens record carries."""
    texts = [str(e.get("content") or "") for e in events if e.get("kind") == "message"]
    for e in events:
        if e.get("kind") == "tokens":
            texts += [v for v in e.values() if isinstance(v, str) and v != "tokens"]
    return texts


def cost(result: TrialResult) -> tuple[int, int]:
    """What best-of-k minimises: total tokens, then turns."""
    return total_tokens(result), result.turns


def best_per_task(chosen: list[tuple[TrialResult, list[dict]]]) -> list[tuple[TrialResult, list[dict]]]:
    """Per task, the trajectory of least cost (fewest tokens, ties by fewest turns; then the first found)."""
    best: dict[tuple[str, str], tuple[TrialResult, list[dict]]] = {}
    for result, events in chosen:
        key = (result.suite, result.task_id)
        if key not in best or cost(result) < cost(best[key][0]):
            best[key] = (result, events)
    return list(best.values())


def export(run_dirs: list[Path], *, select: str, fmt: str, suite: str | None = None, best_of_k: bool = False,
           dedupe: bool = False, out: Path) -> dict:
    if fmt not in FORMATS:
        raise UserError(f"unknown --format {fmt!r}; use {', '.join(FORMATS)}")
    if select not in SELECTIONS:
        raise UserError(f"unknown --select {select!r}; use {', '.join(SELECTIONS)}")
    if best_of_k and select != "passed":
        raise UserError("--best-of-k keeps the best passing trajectory per task: use it with --select passed")
    chosen = list(trials(run_dirs, select, suite))
    if best_of_k:
        chosen = best_per_task(chosen)
    summary: dict[str, Any] = {"rows": 0, "skipped_not_token_exact": 0, "duplicates": 0, "dropped_secrets": 0,
                               "tokens": 0, "per_suite": Counter()}
    seen: set[str] = set()
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w") as fh:
        for result, events in chosen:
            row = to_row(fmt, result, events)
            if row is None:
                summary["skipped_not_token_exact"] += 1
                continue
            if fmt == "tokens" and holds_secret(token_text(events)):
                summary["dropped_secrets"] += 1  # token ids cannot be redacted without changing the sequence
                continue
            row = scrub(row)
            digest = hashlib.sha256(json.dumps(row.get("messages") or row.get("conversations") or row.get("input_ids"),
                                               sort_keys=True).encode()).hexdigest()
            if dedupe and digest in seen:
                summary["duplicates"] += 1
                continue
            seen.add(digest)
            fh.write(json.dumps(row) + "\n")
            summary["rows"] += 1
            summary["tokens"] += total_tokens(result)
            summary["per_suite"][result.suite] += 1
    summary["per_suite"] = dict(summary["per_suite"])
    return summary
