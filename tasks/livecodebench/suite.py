"""LiveCodeBench as a suite: the problems, and the agentic scenario's workspace and verification.

Agentic: the agent's container holds /workspace/problem.md, the public tests (tests/public_N.in/.out and
tests/public_tests.json) and run_tests.py, in a git repository so the trial's diff is the solution. The hidden
tests never enter the agent's container: verification reads /workspace/solution.py out of it (Docker's archive
API) and runs it against every public and private test in a fresh container of the clean image holding only
that file (nothing else the agent left, a sitecustomize.py say, takes part). The codegen scenario (codegen.py)
uses the same problems and executor without an agent container: the suite gives the runner its own trial body.
"""

from __future__ import annotations

import functools
import io
import json
import posixpath
import tarfile
import tempfile
from pathlib import Path

import docker.errors

from harness.errors import UserError
from harness.images import BASE_IMAGE, image_exists
from harness.records import TrialResult
from harness.sandbox import Sandbox
from harness.store import write_json
from tasks.base import Reference, Task, Verdict
from tasks.livecodebench.dataset import Problem, Selection, load_problems
from tasks.livecodebench.execute import DEFAULT_TIMEOUT, ExecutionError, execute_problem, global_timeout, \
    job_tests, missing_result, write_runner
from tasks.livecodebench.metrics import default_ks, metrics_line, write_metrics
from tasks.livecodebench.prompts import PROTOCOLS, LcbTexts, agentic_instruction, load_lcb_texts, problem_markdown

WORKDIR = "/workspace"
SOLUTION = "solution.py"
MAX_SOLUTION_BYTES = 4 << 20
SCENARIOS = ("codegen", "agentic")
GIT_INIT = ("chown -R 0:0 . && chmod -R a+rX . && git init -q && git add -A && git -c user.name=cwm-eval -c user.email=cwm-eval@localhost "
            "commit -qm 'the problem'")


class SolutionMissing(Exception):
    """solution.py is absent, not a regular file, or too large: the agent's failure."""


def read_solution(container, path: str, hops: int = 8) -> str:
    """A file's text read out of a container with Docker's archive API (symbolic links followed, no binary of the
    container runs); SolutionMissing when there is no regular file of at most MAX_SOLUTION_BYTES there."""
    for _ in range(hops):
        try:
            stream, stat = container.get_archive(path)
        except docker.errors.NotFound:
            raise SolutionMissing(f"{path} does not exist") from None
        except docker.errors.APIError as exc:  # a path the agent made unreadable (a link loop, a socket)
            raise SolutionMissing(f"{path} cannot be read: {exc.explanation or exc}") from None
        target = stat.get("linkTarget") or ""
        if target:  # a symbolic link: Docker archives the link itself
            path = target if target.startswith("/") else f"{posixpath.dirname(path)}/{target}"
            continue
        if stat.get("size", 0) > MAX_SOLUTION_BYTES:
            raise SolutionMissing(f"{path} is larger than {MAX_SOLUTION_BYTES} bytes")
        with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as tar:
            member = tar.next()
            if member is None or not member.isfile():
                raise SolutionMissing(f"{path} is not a regular file")
            return tar.extractfile(member).read().decode(errors="surrogateescape")
    raise SolutionMissing(f"{path}: too many symbolic links")


class LiveCodeBenchSuite:
    def __init__(self, selection: Selection, *, scenario: str = "codegen", samples: int = 10,
                 timeout: float = DEFAULT_TIMEOUT, protocol: str = "cwm", cwm_source: Path | None = None,
                 lcb_source: Path | None = None, image: str = BASE_IMAGE, name: str = "livecodebench"):
        """`protocol`: whose prompt, extraction and grading - CWM's evaluation (`cwm`) or lcb_runner's."""
        if scenario not in SCENARIOS:
            raise UserError(f"unknown --scenario {scenario!r}; use {' or '.join(SCENARIOS)}")
        if protocol not in PROTOCOLS:
            raise UserError(f"unknown --protocol {protocol!r}; use {' or '.join(PROTOCOLS)}")
        if samples < 1 or timeout <= 0:
            raise UserError("--samples must be at least 1 and the test timeout positive")
        self.selection, self.scenario, self.samples, self.timeout = selection, scenario, samples, timeout
        self.protocol, self.image, self.name = protocol, image, name
        # the codegen prompt's texts: the reference's own (loaded from its source) or ours, labelled
        self.texts: LcbTexts | None = (load_lcb_texts(protocol, cwm_source, lcb_source) if scenario == "codegen"
                                       else None)
        self._problems: dict[str, Problem] = {}

    @property
    def label(self) -> str:
        """The leaderboard's word for how this suite prompts and grades."""
        texts = "" if self.texts is None or self.texts.comparable else " (own prompt texts: not comparable)"
        return f"protocol={self.protocol}{texts}"

    @property
    def trial(self):
        """codegen: the runner's trial body for one sample (codegen.py); agentic: None (the agent in a container)."""
        if self.scenario != "codegen":
            return None
        from tasks.livecodebench.codegen import sample_trial

        return functools.partial(sample_trial, self)

    def run_label(self, config) -> str | None:
        """The leaderboard's configuration label of a codegen run (sampling, n, protocol); agentic: the agent's."""
        if self.scenario != "codegen":
            return None
        from tasks.livecodebench.codegen import run_label

        return run_label(config, self)

    def describe(self) -> dict:
        """What run.json records about the selection and the protocol."""
        texts = None if self.texts is None else {"origin": self.texts.origin, "comparable": self.texts.comparable,
                                                 "max_prompt_tokens": self.texts.max_prompt_tokens}
        return {"scenario": self.scenario, "protocol": self.protocol, "prompt_texts": texts,
                "selection": self.selection.model_dump(mode="json"), "samples": self.samples,
                "test_timeout": self.timeout, "image": self.image}

    def problem(self, task_id: str) -> Problem:
        return self._problems[task_id]

    def load(self, task_ids: list[str] | None = None) -> list[Task]:
        selection = self.selection.model_copy(update={"task_ids": task_ids or self.selection.task_ids})
        problems = load_problems(selection)
        if not problems:
            raise UserError("no LiveCodeBench problem matches the selection (check --release, --since/--until, "
                            "--difficulty, --platform)")
        self._problems.update({p.question_id: p for p in problems})
        return [self._task(p) for p in problems]

    def _task(self, problem: Problem) -> Task:
        labels = {key: value for key, value in (("difficulty", problem.difficulty), ("platform", problem.platform))
                  if value}
        metadata = {"question_id": problem.question_id, "question_title": problem.question_title,
                    "contest_id": problem.contest_id, "contest_date": problem.contest_date,
                    "fn_name": problem.fn_name, "public_tests": len(problem.public_tests),
                    "private_tests": len(problem.private_tests)}
        return Task(id=problem.question_id, suite=self.name, image=self.image, workdir=WORKDIR, labels=labels,
                    instruction=agentic_instruction(problem, WORKDIR, self.timeout), metadata=metadata,
                    verify_timeout=global_timeout(len(problem.tests), 1, self.timeout))

    def prepare(self, task: Task) -> None:
        if not image_exists(task.image):
            raise RuntimeError(f"image {task.image} is missing: build it with `cwm-eval images bootstrap`")

    def setup(self, task: Task, sandbox: Sandbox) -> None:
        """The workspace: the problem, the public tests and their checker, committed so the diff is the work."""
        problem = self.problem(task.id)
        public = job_tests(problem, public_only=True)
        with tempfile.TemporaryDirectory(prefix="cwm-eval-lcb-ws-") as tmp:
            folder = Path(tmp)
            (folder / "tests").mkdir()
            (folder / "problem.md").write_text(problem_markdown(problem))
            write_runner(folder, "run_tests.py")
            (folder / "tests" / "public_tests.json").write_text(
                json.dumps({"fn_name": problem.fn_name, "protocol": self.protocol, "tests": public}, indent=1))
            for number, test in enumerate(public, 1):
                (folder / "tests" / f"public_{number}.in").write_text(test["input"])
                (folder / "tests" / f"public_{number}.out").write_text(test["output"])
            sandbox.copy_in(folder, task.workdir)
        result = sandbox.exec(GIT_INIT, workdir=task.workdir)
        if result.exit_code != 0:
            raise RuntimeError(f"setting up {task.workdir} for {task.id} failed: {result.output[-500:]}")

    def reference_solution(self, task: Task) -> Reference:
        raise UserError("livecodebench has no reference solutions")

    def verify(self, task: Task, patch: str, log_dir: Path, sandbox: Sandbox | None = None) -> Verdict:
        """solution.py, read out of the agent's container with Docker's archive API, against every test (public +
        hidden) in a fresh container of the clean image holding that one file: nothing else the agent left (a
        sitecustomize.py, a patched interpreter) takes part."""
        if sandbox is None:
            return Verdict(resolved=False, reward=0.0,
                           infra_error="livecodebench reads solution.py from the agent's container, and none was given")
        log_dir.mkdir(parents=True, exist_ok=True)
        problem = self.problem(task.id)
        try:
            code = read_solution(sandbox.container, f"{task.workdir}/{SOLUTION}")
        except SolutionMissing as exc:
            result = missing_result("missing_solution", str(exc), len(problem.tests)) | {"reason": str(exc)}
        else:
            try:
                results = execute_problem(problem, {"solution": code}, image=self.image, timeout=self.timeout,
                                          phase="verify", protocol=self.protocol)
            except (ExecutionError, docker.errors.DockerException) as exc:
                return Verdict(resolved=False, reward=0.0, infra_error=f"{type(exc).__name__}: {exc}")
            result = results["solution"]
        result["graded_in"] = "a fresh container of the clean image with only solution.py"
        write_json(log_dir / "report.json", result)
        return Verdict(resolved=result["passed"], reward=1.0 if result["passed"] else 0.0, details=result)

    def finalize(self, run_dir: Path, results: list[TrialResult], tasks: list[Task]) -> list[str]:
        """metrics.json: pass@k over the attempts of each problem."""
        metrics = write_metrics(run_dir, results, default_ks(self.samples) if self.scenario == "codegen" else None)
        return [metrics_line(metrics, Path(run_dir) / "metrics.json")]
