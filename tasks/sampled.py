"""What every suite that samples a model without an agent container shares (CruxEval, trace prediction): the base
image for grading, no agent set-up or reference solution, grading inside the suite's own trial body, and the
leaderboard label of a sampled run."""

from __future__ import annotations

from pathlib import Path

from harness.errors import UserError
from harness.images import image_exists
from harness.sandbox import Sandbox
from tasks.base import Reference, Task, Verdict


class SampledSuite:
    name: str
    samples: int
    label: str

    def run_label(self, config) -> str:
        s = config.sampling
        return f"sampled T={s.temperature:g} top_p={s.top_p:g} n={self.samples} {self.label}"

    def prepare(self, task: Task) -> None:
        if not image_exists(task.image):
            raise RuntimeError(f"image {task.image} is missing: build it with `cwm-eval images bootstrap`")

    def setup(self, task: Task, sandbox: Sandbox) -> None:
        raise UserError(f"{self.name} samples a model without an agent container")

    def reference_solution(self, task: Task) -> Reference:
        raise UserError(f"{self.name} has no agent reference solution")

    def verify(self, task: Task, patch: str, log_dir: Path, sandbox: Sandbox | None = None) -> Verdict:
        return Verdict(resolved=False, reward=0.0, infra_error=f"{self.name} grades inside its own trial body")
