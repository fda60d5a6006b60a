"""SWE-bench as a suite: instances from a hub dataset, a local file or a 5.x task repo; graded by swebench."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from swebench.task.repo import task_paths

from harness.outcomes import InfraError
from harness.records import Outcome, TrialResult
from harness.sandbox import Sandbox
from tasks.base import Reference, Task, Verdict
from tasks.swebench.dataset import Selection, is_task_repo, load_instances
# containers, formats, grading and images import swebench.harness or swebench.image_builder, which pull in
# datasets and modal (over a second): imported where used, after the run's first container is created

if TYPE_CHECKING:
    from tasks.swebench.containers import VerifyContainer

# CWM's anti-leak scrub: no remote, no ref but the current branch, no reflog, nothing unreachable
SCRUB_GIT = """
git remote | xargs -r -n1 git remote remove
current=$(git symbolic-ref -q HEAD || true)
git for-each-ref --format='%(refname)' | grep -vxF "${current:-HEAD}" | xargs -r -n1 git update-ref -d
git config --unset-all "branch.${current#refs/heads/}.merge" 2>/dev/null || true
git reflog expire --expire=now --all
git gc --prune=now --quiet
"""


class SweBenchSuite:
    """SWE-bench instances, verified in a fresh container of the instance image with swebench's grading."""

    def __init__(self, selection: Selection, image_source: str | None = None, name: str = "swebench"):
        self.selection = selection
        self.name = name
        repo = is_task_repo(selection.dataset)
        self.task_repo = str(selection.dataset) if repo else None  # swebench reads image assets from it
        self.task_dirs: dict[str, Path] = task_paths(selection.dataset) if repo else {}
        # task repos carry their Dockerfiles, so they build by default; datasets pull the official images
        self.image_source = image_source or ("build" if repo else "prebuilt")

    def load(self, task_ids: list[str] | None = None) -> list[Task]:
        from tasks.swebench.images import preflight_disk

        selection = self.selection.model_copy(update={"task_ids": task_ids or self.selection.task_ids})
        rows = load_instances(selection)
        preflight_disk(rows, self.image_source, self.task_dirs)
        return [self._task(row) for row in rows]

    def _task(self, row: dict) -> Task:
        return Task(id=row["instance_id"], suite=self.name, instruction=row["problem_statement"], image=row["image"],
                    base_commit=row["base_commit"], labels={"repo": row["repo"]}, metadata=row)

    def prepare(self, task: Task) -> None:
        from tasks.swebench.images import ensure_image

        ensure_image(task.metadata, self.image_source, self.task_dirs.get(task.id))

    def setup(self, task: Task, sandbox: Sandbox) -> None:
        """The agent sees the repo at the base commit, no later history, and no test patch."""
        result = sandbox.exec(SCRUB_GIT)
        if result.exit_code != 0:
            raise InfraError(f"git scrub failed in {task.id}: {result.output[-500:]}")

    def reference_solution(self, task: Task) -> Reference:
        return Reference(kind="patch", content=task.metadata["patch"])

    def start_verifier(self, task: Task) -> VerifyContainer:
        """A grading container of the task image, starting now (the runner calls this as the agent starts)."""
        from tasks.swebench.containers import VerifyContainer

        return VerifyContainer(task.image)

    def verify(self, task: Task, patch: str, log_dir: Path, sandbox: Sandbox | None = None,
               verifier: VerifyContainer | None = None) -> Verdict:
        from tasks.swebench.grading import grade

        return grade(task.metadata, patch, log_dir, task_repo=self.task_repo, verifier=verifier)

    def finalize(self, run_dir: Path, results: list[TrialResult], tasks: list[Task]) -> list[str]:
        """Official formats, and for the oracle the instances whose gold patch does not resolve."""
        from tasks.swebench.formats import write_predictions, write_run_report

        lines = [f"predictions: {', '.join(str(p) for p in write_predictions(run_dir, results))}"]
        scored = [r for r in results if r.outcome is not Outcome.ERROR]
        if scored:
            reports = write_run_report(run_dir, scored, [t.metadata for t in tasks])
            lines.append(f"swebench run report: {', '.join(str(p) for p in reports)}")
        if results and all(r.agent == "oracle" for r in results):
            broken = sorted({r.task_id for r in scored if not r.resolved})
            path = run_dir / "gold_failures.txt"
            path.write_text("".join(f"{iid}\n" for iid in broken))
            lines.append(f"gold patch does not resolve {len(broken)} instances"
                         + (f": {', '.join(broken)} (broken environments; leave them out with --exclude-file {path})"
                            if broken else ""))
        return lines
