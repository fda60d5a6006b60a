"""Terminal-Bench as a suite: a folder of TB 1.x and/or Harbor task folders, graded in the agent's container."""

from __future__ import annotations

from pathlib import Path

from harness.errors import UserError
from harness.sandbox import Sandbox
from tasks.base import Reference, Task, Verdict
from tasks.selection import TaskSelection, select_ids
from tasks.terminal_bench.images import build_task_image, ensure_present, image_tag, image_workdir, map_image
from tasks.terminal_bench.services import ServiceGroup, apply_resources, start_services
from tasks.terminal_bench.solution import reference_script
from tasks.terminal_bench.spec import TaskSpec, find_task_dirs, read_task
from tasks.terminal_bench.verify import run_verifier

DEFAULT_WORKDIR = "/app"
SETUP = "mkdir -p /logs/agent /logs/verifier /agent-logs"


class TerminalBenchSuite:
    """Tasks from a local folder; images built with --image-map applied; verified in place after the agent."""

    agent_prompt = "task"  # no patch to submit: cwm-eval's own task prompt (CWM published no Terminal-Bench one)
    grading = "final_state"  # the container is graded however the episode ended, as Terminal-Bench's harness does

    def __init__(self, dataset: Path, *, name: str = "terminal-bench", image_map: dict[str, str] | None = None,
                 test_timeout_multiplier: float = 1.0, selection: TaskSelection | None = None):
        if not dataset.is_dir():
            raise UserError(f"dataset {dataset} is not a folder (terminal-bench needs a folder of task folders)")
        self.name = name
        self.task_dirs = find_task_dirs(dataset)
        if not self.task_dirs:
            raise UserError(f"{dataset} holds no Terminal-Bench task (a folder with task.yaml or task.toml)")
        self.image_map = image_map or {}
        self.test_timeout_multiplier = test_timeout_multiplier
        self.selection = selection or TaskSelection()
        self._prepared: dict[str, str] = {}  # task id -> workdir, once its images exist (the runner serialises
        # the prepare of one image)

    def load(self, task_ids: list[str] | None = None) -> list[Task]:
        selection = self.selection.model_copy(update={"task_ids": task_ids or self.selection.task_ids})
        return [self._task(read_task(self.task_dirs[tid], tid)) for tid in select_ids(list(self.task_dirs), selection)]

    def _task(self, spec: TaskSpec) -> Task:
        image = spec.image if spec.context else map_image(spec.image, self.image_map)
        return Task(id=spec.id, suite=self.name, instruction=spec.instruction, image=image,
                    workdir=spec.workdir or DEFAULT_WORKDIR, base_commit=None, network=spec.network,
                    agent_timeout=spec.agent_timeout, verify_timeout=spec.verify_timeout, labels=spec.labels,
                    metadata=spec.model_dump())

    @staticmethod
    def spec(task: Task) -> TaskSpec:
        return TaskSpec.model_validate(task.metadata)

    def prepare(self, task: Task) -> None:
        """Build (or find) the agent's image and the extra services' images; settle the working directory."""
        workdir = self._prepared.get(task.id)
        if workdir is None:
            spec = self.spec(task)
            if spec.context:
                build_task_image(Path(spec.context), Path(spec.dockerfile), task.image, self.image_map,
                                 env=spec.image_env)
            else:
                ensure_present(task.image)
            for service in spec.services:
                if service.context:
                    build_task_image(Path(service.context), Path(service.dockerfile), image_tag(task.id, service.name),
                                     self.image_map)
                else:
                    ensure_present(map_image(service.image, self.image_map))
            workdir = spec.workdir or image_workdir(task.image) or DEFAULT_WORKDIR
            self._prepared[task.id] = workdir
        task.workdir = workdir

    def setup(self, task: Task, sandbox: Sandbox) -> ServiceGroup | None:
        """Log folders; the task's own CPU/memory/disk limits; extra services on a private network the agent joins
        (returned: the trial's state, which the runner hands to `verify`)."""
        spec = self.spec(task)
        result = sandbox.exec(SETUP, workdir="/")
        if result.exit_code != 0:
            raise RuntimeError(f"setup of {task.id} failed: {result.output[-300:]}")
        apply_resources(sandbox, spec.cpus, spec.memory_mb)
        if spec.storage_mb:
            sandbox.bound_disk(spec.storage_mb * 2**20)  # the task's disk bound, in place of --disk
        if spec.services:
            images = {s.name: image_tag(task.id, s.name) if s.context else map_image(s.image, self.image_map)
                      for s in spec.services}
            return start_services(spec.services, images, sandbox, spec.main_alias, internet=task.network)
        return None

    def reference_solution(self, task: Task) -> Reference:
        spec = self.spec(task)
        return Reference(kind="script", content=reference_script(spec.solution, task.id),
                         timeout=spec.agent_timeout or 600.0)

    def verify(self, task: Task, patch: str, log_dir: Path, sandbox: Sandbox | None = None,
               state: ServiceGroup | None = None) -> Verdict:
        """Tests in the agent's container (still running), once every process the agent left is killed, in a fresh
        shell, under the task's test timeout (verify.py)."""
        if sandbox is None:
            return Verdict(resolved=False, reward=0.0,
                           infra_error="terminal-bench verifies in the agent's container, and none was given")
        spec, group = self.spec(task), state
        try:
            timeout = (task.verify_timeout or spec.verify_timeout) * self.test_timeout_multiplier
            verdict = run_verifier(spec, sandbox, log_dir, timeout)
            if group is not None:
                verdict.details["services"] = group.started
            if spec.warnings:
                verdict.details["warnings"] = spec.warnings
            return verdict
        finally:
            if group is not None:
                group.remove(sandbox)
