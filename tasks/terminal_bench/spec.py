"""A task folder, TB 1.x or Harbor, read into one TaskSpec: what to build, start, copy in and run.

`inspect_task` gathers every problem (for `cwm-eval tasks check`); `read_task` raises the first as a UserError.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from tasks.terminal_bench.compose import ComposeSpec, ServiceSpec, read_compose
from tasks.terminal_bench.formats import (
    HarborConfig,
    TaskFileError,
    Tb1Config,
    load_harbor_config,
    load_keystrokes,
    load_tb1_config,
)
from tasks.terminal_bench.images import dockerfile_workdir, image_tag

TB1_FILE, HARBOR_FILE = "task.yaml", "task.toml"
COMPOSE_NAMES = ("docker-compose.yaml", "docker-compose.yml", "compose.yaml", "compose.yml")
TESTS_IN_CONTAINER = "/tests"


class TaskSpec(BaseModel):
    id: str
    format: Literal["tb1", "harbor"]
    path: str
    instruction: str
    image: str  # the agent's image: our build tag, or the image the task names
    context: str | None = None  # build context and Dockerfile of the agent's image (None: use `image` as is)
    dockerfile: str | None = None
    image_env: dict[str, str] = Field(default_factory=dict)  # the agent service's environment, baked into the image
    workdir: str | None = None  # the Dockerfile's WORKDIR; None: the image's, else /app
    main_alias: str = "client"
    services: list[ServiceSpec] = Field(default_factory=list)
    agent_timeout: float | None = None
    verify_timeout: float = 60.0
    network: bool = True
    cpus: float | None = None
    memory_mb: int | None = None
    storage_mb: int | None = None  # Harbor's [environment] storage_mb: the container's disk bound
    tests_dir: str
    run_tests: str | None = None  # TB 1.x: run-tests.sh on the host, copied to /tests/run-tests.sh
    test_command: str  # what the verifier runs, in the container
    verifier_env: dict[str, str] = Field(default_factory=dict)
    parser: Literal["pytest", "reward"] = "pytest"
    solution: str | None = None  # solution.sh | solution.yaml | solution/ (Harbor)
    run_tests_in_same_shell: bool = False
    labels: dict[str, str] = Field(default_factory=dict)
    warnings: list[str] = Field(default_factory=list)


def find_task_dirs(root: Path) -> dict[str, Path]:
    """A dataset: a folder of task folders (or of `tasks/`), or one task folder."""
    if (root / TB1_FILE).is_file() or (root / HARBOR_FILE).is_file():
        return {root.resolve().name: root}
    found = {child.name: child for child in sorted(root.iterdir()) if child.is_dir()
             and ((child / TB1_FILE).is_file() or (child / HARBOR_FILE).is_file())}
    if not found and (root / "tasks").is_dir():
        return find_task_dirs(root / "tasks")
    return found


def inspect_task(task_dir: Path, task_id: str | None = None) -> tuple[TaskSpec | None, list[str]]:
    problems: list[str] = []
    task_id = task_id or task_dir.resolve().name
    try:
        if (task_dir / HARBOR_FILE).is_file():
            spec = _harbor(task_dir, task_id, problems)
        elif (task_dir / TB1_FILE).is_file():
            spec = _tb1(task_dir, task_id, problems)
        else:
            problems.append(f"{task_dir}: neither {TB1_FILE} (TB 1.x) nor {HARBOR_FILE} (Harbor)")
            spec = None
    except TaskFileError as exc:
        problems.append(str(exc))
        spec = None
    except (OSError, UnicodeDecodeError, ValueError) as exc:  # a file we could not read, a value of a wrong type
        problems.append(f"{task_dir}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
        spec = None
    if spec is not None and spec.solution is None:
        problems.append(f"{task_dir}: no reference solution ("
                        + ("solution.sh or solution.yaml" if spec.format == "tb1" else "solution/solve.sh") + ")")
    return spec, problems


def read_task(task_dir: Path, task_id: str | None = None) -> TaskSpec:
    """The task, or a UserError naming the first problem that stops it from running."""
    spec, problems = inspect_task(task_dir, task_id)
    if spec is None:
        raise TaskFileError(problems[0])
    return spec  # a missing reference solution only matters to the oracle


def _compose_file(folder: Path) -> Path | None:
    return next((folder / name for name in COMPOSE_NAMES if (folder / name).is_file()), None)


def _need(path: Path, problems: list[str], what: str = "file") -> bool:
    ok = path.is_file() if what == "file" else path.is_dir()
    if not ok:
        problems.append(f"{path}: missing ({'a file' if what == 'file' else 'a folder'} the task needs)")
    return ok


def _agent_image(task_id: str, folder: Path, compose: ComposeSpec | None, problems: list[str],
                 fallback_image: str | None = None) -> dict:
    """Where the agent's image comes from: the compose service's build, its image, the folder's Dockerfile."""
    tag = image_tag(task_id)
    main = compose.main if compose else ServiceSpec(name="main")
    fields: dict = {"image": tag, "image_env": main.environment}
    if main.context:
        fields.update(context=main.context, dockerfile=main.dockerfile)
    elif main.image and main.image != tag:
        fields["image"] = main.image
    elif (folder / "Dockerfile").is_file():
        fields.update(context=str(folder.resolve()), dockerfile=str((folder / "Dockerfile").resolve()))
    elif fallback_image:
        fields["image"] = fallback_image
    else:
        problems.append(f"{folder / 'Dockerfile'}: missing (the agent's image is built from it)")
        return fields
    if fields.get("dockerfile"):
        fields["workdir"] = dockerfile_workdir(Path(fields["dockerfile"]).read_text())
    fields["workdir"] = main.working_dir or fields.get("workdir")
    return fields


def _tb1(task_dir: Path, task_id: str, problems: list[str]) -> TaskSpec | None:
    config: Tb1Config | None = load_tb1_config(task_dir / TB1_FILE, problems)
    compose_path = _compose_file(task_dir)
    variables = {"T_BENCH_TASK_DOCKER_CLIENT_IMAGE_NAME": image_tag(task_id), "T_BENCH_TEST_DIR": TESTS_IN_CONTAINER,
                 "T_BENCH_TASK_DOCKER_CLIENT_CONTAINER_NAME": f"tb-{task_id}", "T_BENCH_CONTAINER_LOGS_PATH": "/logs",
                 "T_BENCH_CONTAINER_AGENT_LOGS_PATH": "/agent-logs", "T_BENCH_TASK_DOCKER_NAME_PREFIX": f"tb-{task_id}"}
    compose = read_compose(compose_path, "client", variables, problems) if compose_path else None
    _need(task_dir / "run-tests.sh", problems)
    _need(task_dir / "tests", problems, "folder")
    solution = next((task_dir / name for name in ("solution.sh", "solution.yaml") if (task_dir / name).is_file()),
                    None)
    if solution is not None and solution.suffix == ".yaml":
        load_keystrokes(solution, problems)
    image = _agent_image(task_id, task_dir, compose, problems)
    if config is None or problems:
        return None
    return TaskSpec(
        id=task_id, format="tb1", path=str(task_dir), instruction=config.instruction, **image,
        main_alias="client", services=compose.services if compose else [],
        agent_timeout=config.max_agent_timeout_sec, verify_timeout=config.max_test_timeout_sec, network=True,
        tests_dir=str(task_dir / "tests"), run_tests=str(task_dir / "run-tests.sh"),
        test_command=f"bash {TESTS_IN_CONTAINER}/run-tests.sh", verifier_env={"TEST_DIR": TESTS_IN_CONTAINER},
        parser="pytest", solution=str(solution) if solution else None,
        run_tests_in_same_shell=config.run_tests_in_same_shell,
        labels={"format": "tb1", "difficulty": config.difficulty, "category": config.category},
        warnings=compose.warnings if compose else [],
    )


def _harbor(task_dir: Path, task_id: str, problems: list[str]) -> TaskSpec | None:
    config: HarborConfig | None = load_harbor_config(task_dir / HARBOR_FILE, problems)
    instruction_path = task_dir / "instruction.md"
    instruction = instruction_path.read_text() if _need(instruction_path, problems) else ""
    if instruction_path.is_file() and not instruction.strip():
        problems.append(f"{instruction_path}: empty")
    _need(task_dir / "tests" / "test.sh", problems)
    environment = task_dir / "environment"
    docker_image = config.environment.docker_image if config else None
    compose_path = _compose_file(environment) if environment.is_dir() else None
    variables = {"MAIN_IMAGE_NAME": image_tag(task_id), "CONTEXT_DIR": str(environment.resolve()),
                 "HOST_VERIFIER_LOGS_PATH": "", "HOST_AGENT_LOGS_PATH": "", "ENV_VERIFIER_LOGS_PATH": "/logs/verifier",
                 "ENV_AGENT_LOGS_PATH": "/logs/agent"}
    compose = read_compose(compose_path, "main", variables, problems) if compose_path else None
    if not environment.is_dir() and not docker_image:
        problems.append(f"{environment}: missing (a folder with a Dockerfile, or set [environment].docker_image "
                        f"in {task_dir / HARBOR_FILE})")
        image: dict = {}
    else:
        image = _agent_image(task_id, environment, compose, problems, fallback_image=docker_image)
    solution = task_dir / "solution"
    if config is None or problems:
        return None
    env = config.environment
    if env.gpus:
        problems.append(f"{task_dir / HARBOR_FILE}: environment.gpus: GPUs are not supported")
        return None
    warnings = list(compose.warnings if compose else [])
    if env.network_mode == "allowlist":
        warnings.append(f"{task_dir / HARBOR_FILE}: environment.network_mode: allowlist is run without network")
    for section, user in (("agent", config.agent.user), ("verifier", config.verifier.user)):
        if user and user != "root":
            warnings.append(f"{task_dir / HARBOR_FILE}: {section}.user: {user!r} is not supported; "
                            "runs as the image's user")
    metadata = {key: str(config.metadata[key]) for key in ("difficulty", "category") if key in config.metadata}
    return TaskSpec(
        id=task_id, format="harbor", path=str(task_dir), instruction=instruction, **image, main_alias="main",
        services=compose.services if compose else [], agent_timeout=config.agent.timeout_sec,
        verify_timeout=config.verifier.timeout_sec, network=env.internet, cpus=env.cpus,
        memory_mb=env.memory_limit_mb, storage_mb=env.storage_mb, tests_dir=str(task_dir / "tests"), run_tests=None,
        test_command=f"bash {TESTS_IN_CONTAINER}/test.sh", verifier_env=config.verifier.env, parser="reward",
        solution=str(solution) if (solution / "solve.sh").is_file() else None,
        labels={"format": "harbor", **metadata}, warnings=warnings,
    )
