"""`cwm-eval run`'s options, one object per concern; each is a panel of `run --help`.

A group is a dataclass whose fields carry their command-line definition (`option(...)`); `grouped(RunOptions)`
turns them into the flat options typer reads and hands the command one `RunOptions` built from them. The command's
signature stays flat, so `resample` can borrow `run`'s options by name.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import typer


def option(default, *decls: str, **kwargs):
    """A group's field: its default and how typer declares it (flags, help, bounds)."""
    factory = {"default_factory": list} if isinstance(default, list) else {"default": default}
    return field(**factory, metadata={"decls": decls, "typer": kwargs})


@dataclass
class TaskOptions:
    PANEL: typing.ClassVar[str] = "Tasks"
    dataset: Optional[str] = option(None, help="the suite's dataset (swebench: a task repo folder; terminal-bench: "
                                               "a folder of task folders)")
    split: str = option("test", help="dataset split")
    task: list[str] = option([], "--task", help="run only these task ids (repeatable)")
    filter: Optional[str] = option(None, "--filter", help="regex on task ids")
    limit: Optional[int] = option(None, min=1, help="at most N tasks")
    shuffle: bool = option(False, help="shuffle tasks (with --seed) before --limit")
    seed: int = option(0)
    exclude_file: Optional[Path] = option(None, help="file of task ids to leave out (one per line)")

    def selection(self) -> dict:
        """load_suite's selection options (--task goes to the suite's `load`)."""
        return {"filter": self.filter, "limit": self.limit, "shuffle": self.shuffle, "seed": self.seed,
                "exclude_file": self.exclude_file}


@dataclass
class AgentOptions:
    PANEL: typing.ClassVar[str] = "Agent and model"
    agent: str = option("cwm", help="cwm | oracle | nop")
    model_url: list[str] = option([], help="OpenAI-compatible base URL, e.g. http://127.0.0.1:8000/v1; repeat it (or "
                                           "@file of URLs) to spread requests over several")
    model: Optional[str] = option(None, help="model name (default: the first the server lists)")
    api_key: Optional[str] = option(None, envvar="OPENAI_API_KEY", show_envvar=True,
                                    help="the model endpoint's API key")
    serve_port: int = option(8000, help="port of the embedded model server started without --model-url")
    temperature: float = option(1.0)
    top_p: float = option(0.95)
    max_turns: int = option(128, min=1)
    command_timeout: float = option(120.0, help="seconds per bash command")
    max_tokens_per_turn: int = option(65536, min=1, help="CWM's max_action_len")
    context_size: int = option(131072, min=1, help="total context budget in tokens")
    cwm_source: Optional[Path] = option(None, help="a facebookresearch/cwm checkout: the agent uses CWM's own "
                                                   "prompts, messages and edit/create plugins from it (default: the "
                                                   "installed `cwm` package, else cwm-eval's own wording)")
    tools: str = option("bash,edit,create,submit", help="bash,edit,create,submit or bash,submit (CWM's bash-only "
                                                        "scaffold)")
    strict_format: bool = option(False, help="CWM's training mode: the first format error ends the episode")
    guided_format: bool = option(False, help="vLLM's structured-output decoding holds every reply to the turn format "
                                             "(a <think> block, then one tool call or a final answer): for small "
                                             "models such as the embedded one; not CWM's protocol")
    token_exact: bool = option(False, help="render with the model's tokenizer; send token ids")
    logprobs: bool = option(False, help="record the logprob of every sampled token")
    tokenizer: Optional[str] = option(None, help="token-exact: tokenizer folder (default: the server's)")


@dataclass
class ScoringOptions:
    PANEL: typing.ClassVar[str] = "Scoring"
    grade_worktree: bool = option(False, help="grade the work tree's diff when nothing was submitted, however the "
                                              "episode ended (not CWM's protocol)")
    reject_test_tampering: bool = option(False, help="score unresolved a patch that touches test infrastructure "
                                                     "(conftest.py, pytest config, ...)")


@dataclass
class SandboxOptions:
    PANEL: typing.ClassVar[str] = "Sandbox"
    trial_timeout: float = option(7200.0, help="wall-clock seconds for the agent phase of a trial (CWM's sandbox "
                                               "lifetime)")
    cpus: float = option(4.0, min=0.01, help="CPUs per agent container (capped at the host's)")
    memory: str = option("16g", help="memory per agent container, e.g. 16g (capped at the host's)")
    disk: str = option("10g", help="disk per agent container (its writable layer), e.g. 10g; 0: no bound; a Harbor "
                                   "task's storage_mb replaces it")
    network: bool = option(False, help="let the agent reach the network")


@dataclass
class ExecutionOptions:
    PANEL: typing.ClassVar[str] = "Execution"
    attempts: int = option(1, min=1, help="attempts per task")
    concurrency: int = option(2, min=1, help="trials at once")
    run_id: Optional[str] = option(None, help="re-use an id to resume a run")
    output: Path = option(Path("results"), help="results folder")
    executor: str = option("local", help="local | ray: run trials across a Ray cluster")
    ray_address: Optional[str] = option(None, help="Ray cluster to join (default: start a local one)")
    max_starting_containers: int = option(4, min=1, help="containers starting at once")
    max_model_requests: int = option(64, min=1, help="model requests in flight across endpoints")


@dataclass
class SweBenchOptions:
    PANEL: typing.ClassVar[str] = "SWE-bench (and demo)"
    image_source: Optional[str] = option(None, help="swebench: prebuilt | build (default: build for task repos, "
                                                    "prebuilt for datasets)")
    namespace: str = option("swebench", help="swebench: registry namespace of prebuilt images")


@dataclass
class TerminalBenchOptions:
    PANEL: typing.ClassVar[str] = "Terminal-Bench"
    image_map: list[str] = option([], "--image-map", help="FROM=TO: rewrite this image in task Dockerfiles and "
                                                          "compose files (repeatable, or @file)")
    agent_timeout_multiplier: float = option(1.0, min=0.0, help="scales each task's own agent timeout")
    test_timeout_multiplier: float = option(1.0, min=0.0, help="scales each task's own test timeout (LiveCodeBench "
                                                               "too)")


@dataclass
class LiveCodeBenchOptions:
    PANEL: typing.ClassVar[str] = "LiveCodeBench"
    release: Optional[str] = option(None, help="livecodebench: v5 | v6 (CWM's sets: the hub's release_v5/v6 with "
                                               "contest_date in [2024-10-01, 2025-02-01) / [2024-08-01, "
                                               "2025-05-01)), or release_v1..release_v6 (the whole hub release; "
                                               "default release_latest)")
    since: Optional[str] = option(None, help="livecodebench: contest_date on or after YYYY-MM-DD (inclusive)")
    until: Optional[str] = option(None, help="livecodebench: contest_date before YYYY-MM-DD (exclusive, as CWM's "
                                             "windows)")
    difficulty: list[str] = option([], help="livecodebench: easy | medium | hard (repeatable or a,b)")
    platform: list[str] = option([], help="livecodebench: leetcode | codeforces | atcoder (repeatable)")
    scenario: Optional[str] = option(None, help="livecodebench: codegen (default: single turn, n samples, pass@k) | "
                                                "agentic (the agent writes /workspace/solution.py); demo, swebench: "
                                                "patch (default: fix the issue) | testgen (write a reproduction "
                                                "test, CWM's test generation)")
    samples: Optional[int] = option(None, min=1, help="samples per problem, the run's attempts (livecodebench codegen: "
                                                      "default 10; cruxeval, trace-prediction: default 1)")
    protocol: str = option("cwm", help="livecodebench: cwm (CWM's prompt, extraction and grading) | lcb_runner "
                                       "(lcb_runner's)")
    lcb_source: Optional[Path] = option(None, help="livecodebench --protocol lcb_runner: a LiveCodeBench checkout "
                                                   "whose prompts are used (default: the installed lcb_runner, else "
                                                   "cwm-eval's own wording)")

    def suite_options(self) -> dict:
        return {name: getattr(self, name) for name in ("release", "since", "until", "difficulty", "platform",
                                                       "scenario", "samples", "protocol", "lcb_source")}


@dataclass
class CodeExecutionOptions:
    PANEL: typing.ClassVar[str] = "CruxEval and trace prediction"
    prompt_style: str = option("plain", help="cruxeval: plain (reasoning in <think>, then assert f(input) == OUTPUT) "
                                             "| trace (the output read off a predicted execution trace)")

    def suite_options(self) -> dict:
        return {"prompt_style": self.prompt_style}


@dataclass
class RunOptions:
    tasks: TaskOptions
    agent: AgentOptions
    scoring: ScoringOptions
    sandbox: SandboxOptions
    execution: ExecutionOptions
    swebench: SweBenchOptions
    terminal_bench: TerminalBenchOptions
    livecodebench: LiveCodeBenchOptions
    code_execution: CodeExecutionOptions


def _groups(options_type) -> dict[str, type]:
    return {f.name: hint for f, hint in zip(dataclasses.fields(options_type),
                                            typing.get_type_hints(options_type).values())}


def flat_parameters(options_type) -> list[tuple[str, inspect.Parameter]]:
    """(group, parameter) for every option of every group, as typer reads them."""
    out = []
    for group_name, group in _groups(options_type).items():
        hints = typing.get_type_hints(group)
        for f in dataclasses.fields(group):
            default = f.default_factory() if f.default is dataclasses.MISSING else f.default
            info = typer.Option(default, *f.metadata["decls"], rich_help_panel=group.PANEL, **f.metadata["typer"])
            out.append((group_name, inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=info,
                                                      annotation=hints[f.name])))
    return out


def grouped(options_type):
    """The decorated command takes `options: options_type`; its command line is every group's options, flat."""
    flat = flat_parameters(options_type)

    def decorate(command):
        own = [p for p in inspect.signature(command).parameters.values() if p.name != "options"]

        @functools.wraps(command)
        def wrapper(*args, **kwargs):
            values: dict[str, dict] = {name: {} for name in _groups(options_type)}
            for group_name, param in flat:
                values[group_name][param.name] = kwargs.pop(param.name)
            groups = {name: group(**values[name]) for name, group in _groups(options_type).items()}
            return command(*args, **kwargs, options=options_type(**groups))

        wrapper.__signature__ = inspect.Signature([*own, *(param for _, param in flat)])
        hints = {k: v for k, v in typing.get_type_hints(command).items() if k not in ("options", "return")}
        wrapper.__annotations__ = {**hints, **{param.name: param.annotation for _, param in flat}}
        return wrapper

    return decorate
