"""An agent that hands over an external prediction, so the runner grades it like any trial."""

from __future__ import annotations

from agents.base import AgentResult, TrialEnv
from harness.records import ExitStatus


class PredictionsAgent:
    name = "predictions"

    def __init__(self, predictions: dict[str, dict]):
        self.predictions = predictions
        models = {p.get("model_name_or_path") for p in predictions.values()} - {None}
        self.model = models.pop() if len(models) == 1 else None

    async def solve(self, env: TrialEnv) -> AgentResult:
        patch = self.predictions[env.task.id].get("model_patch") or None
        return AgentResult(exit_status=ExitStatus.SUBMITTED, submitted_patch=patch, graded=True)
