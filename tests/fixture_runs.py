"""Fixture runs: result.json and trajectory.jsonl files with known outcomes, for report and export tests."""

from __future__ import annotations

import json
import time

from harness.records import ExitStatus, Outcome, TrialResult, Usage
from harness.store import RunStore


def write_run(root, run_id, model, outcomes: dict[str, list[str]], repo_of=lambda t: t.split("-")[0],
              tokens_of=lambda task, attempt: 1000, turns_of=lambda task, attempt: 10 + attempt):
    store = RunStore(root, run_id)
    store.write_run({"run_id": run_id, "model": model})
    for task, per_attempt in outcomes.items():
        for attempt, outcome in enumerate(per_attempt):
            result = TrialResult(
                run_id=run_id, suite="swebench", task_id=task, attempt=attempt, agent="cwm", model=model,
                config="cwm T=1", labels={"repo": repo_of(task)}, outcome=Outcome(outcome),
                exit_status=ExitStatus.INFRA_ERROR if outcome == "error" else ExitStatus.SUBMITTED,
                turns=turns_of(task, attempt),
                usage=Usage(prompt_tokens=tokens_of(task, attempt), completion_tokens=100, model_seconds=4.0),
                patch="diff --git a/x b/x\n--- a/x\n+++ b/x\n@@ -1 +1 @@\n-a\n+b\n", started_at=time.time(),
                ended_at=time.time(), wall_seconds=20.0)
            store.write_result(result)
            messages = [{"role": "system", "content": "system prompt"}, {"role": "user", "content": f"fix {task}"},
                        {"role": "assistant", "content": f"attempt {attempt}\n</think>\n<tool: bash>\nls\n</tool>"}]
            (store.trial_dir(task, attempt) / "trajectory.jsonl").write_text(
                "".join(json.dumps({"kind": "message", **m}) + "\n" for m in messages))
