"""`cwm-eval resample`: CWM's rejection sampling on a finished run, and optionally SFT on what it found and an
evaluation of the trained model against the run (harness/resample.py, harness/resample_loop.py)."""

from __future__ import annotations

import copy
import functools
import inspect
import typing
from pathlib import Path
from typing import Optional

import typer

from harness.cli import app, console, given_options, model_urls, resolve_cwm_source, run
from harness.cli_run import exits_130
from harness.errors import UserError

# `cwm-eval run` options resample takes as `run` defines them (type, checks, help); only those given apply, over
# what RUN's run.json holds (the last three are the resample's own: where, which port, which id)
RUN_OPTIONS = ("model_url", "model", "api_key", "concurrency", "max_turns", "temperature", "top_p", "command_timeout",
               "trial_timeout", "max_tokens_per_turn", "context_size", "token_exact", "logprobs", "tokenizer",
               "cwm_source", "cpus", "memory", "disk", "network", "max_starting_containers", "max_model_requests",
               "serve_port", "output", "run_id")
OWN_DEFAULTS = {"serve_port": None, "api_key": None,
                "output": "where RUN ids are looked up, and where the new runs go (default: RUN's folder's)",
                "run_id": "the resample run's id (default: RUN-resample-kK; the same id resumes)"}


def borrowed(info, name: str):
    """`run`'s option, its help saying that RUN's value applies unless given (a few keep their own default)."""
    info = copy.copy(info)
    if name in OWN_DEFAULTS:
        info.help = OWN_DEFAULTS[name] or info.help
    else:
        info.help = f"{info.help or name.replace('_', ' ')}; RUN's unless given"
        info.show_default = False
    return info


def with_options_of(command, names: tuple[str, ...]):
    """Give the decorated command `command`'s definitions of the options `names`, passed to it as `options`."""
    theirs, hints = inspect.signature(command).parameters, typing.get_type_hints(command)

    def decorate(function):
        own = inspect.signature(function)
        extra = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=borrowed(theirs[name].default, name),
                                   annotation=hints[name]) for name in names]
        params = [p for p in own.parameters.values() if p.name != "options"]

        @functools.wraps(function)
        def wrapper(**kwargs):
            options = {name: kwargs.pop(name) for name in names}
            return function(**kwargs, options=options)

        wrapper.__signature__ = own.replace(parameters=[*params, *extra])
        wrapper.__annotations__ = {**{k: v for k, v in typing.get_type_hints(function).items() if k != "options"},
                                   **{name: hints[name] for name in names}}
        return wrapper

    return decorate


@app.command()
@exits_130
@with_options_of(run, RUN_OPTIONS)
def resample(
    ctx: typer.Context,
    source: str = typer.Argument(..., metavar="RUN", help="a finished run: its id under --output, or its folder"),
    k: int = typer.Option(..., "--k", help="new attempts per unresolved task"),
    out: Path = typer.Option(..., help="JSONL file of the passing trajectories (best-of-k per task); the summary "
                                       "goes beside it as OUT.summary.json"),
    format: str = typer.Option("openai", "--format", help="openai | sharegpt | tokens (tokens: a --token-exact run)"),
    train: Optional[Path] = typer.Option(None, help="then `train sft` on the data into this folder"),
    train_model: Optional[str] = typer.Option(None, help="weights --train starts from (default: the served model's "
                                                         "local folder, or smollm2-135m when the run used it)"),
    train_max_steps: Optional[int] = typer.Option(None, help="--train: stop after this many steps (default: 1 epoch)"),
    train_lr: float = typer.Option(1e-5, help="--train: peak learning rate"),
    train_max_len: int = typer.Option(4096, help="--train: tokens per row"),
    evaluate: bool = typer.Option(False, help="with --train: serve the trained model, re-run the run's tasks with "
                                              "its configuration, and compare before and after"),
    evaluate_run_id: Optional[str] = typer.Option(None, help="the evaluation run's id (default: RUN-after-resample; "
                                                             "the same id resumes)"),
    options: dict = None,
) -> None:
    """Rejection sampling: K new attempts on each unresolved task of RUN with its agent configuration; the passing
    trajectories (best-of-k: fewest tokens, then fewest turns) as SFT data, and pass@k."""
    from harness import resample as rs
    from harness.cli_run import execute
    from harness.export import FORMATS
    from harness.resample_loop import train as train_sft
    from harness.run_guard import check_writable

    if k < 1:
        raise UserError(f"--k must be at least 1, got {k}")
    if format not in FORMATS:
        raise UserError(f"unknown --format {format!r}; use {', '.join(FORMATS)}")
    if evaluate and train is None:
        raise UserError("--evaluate serves the model --train makes: pass --train OUT too")
    if train is not None and format == "sharegpt":
        raise UserError("--train reads openai or tokens rows: use --format openai or --format tokens")
    for value, option in ((train_max_steps, "--train-max-steps"), (train_max_len, "--train-max-len")):
        if value is not None and value < 1:
            raise UserError(f"{option} must be at least 1, got {value}")
    check_writable(out, "--out", folder=False)
    if train is not None:
        check_writable(train, "--train")
    given = given_options(ctx) & set(options)
    overrides = overrides_from(options, given)
    plan = rs.plan(source, k, options["output"], overrides, run_id=options["run_id"],
                   results=options["output"] if "output" in given else None)
    if not plan.selection.unresolved:
        console.print(nothing_to_do(plan))
        return
    config, suite, tasks, agent, spec = sampler(plan, options, given)
    base = None if train is None else training_base(plan, agent, train_model)  # known before hours of sampling
    execute(config, suite, tasks, agent, spec)  # resumable: the same command again keeps the finished trials
    summary = rs.write_data(plan, format, out)
    console.print(rs.summary_table(summary))
    console.print(f"wrote {summary['rows']} rows ({summary['tokens']} tokens) to {out}; summary: "
                  f"{rs.summary_path(out)}" + (f"; {summary['skipped_not_token_exact']} trajectories are not "
                                               "token-exact (run with --token-exact for tokens rows)"
                                               if summary["skipped_not_token_exact"] else ""))
    if train is None:
        return
    if not summary["rows"]:
        console.print("no passing trajectory: nothing to train on, so --train and --evaluate are skipped")
        return
    console.print(f"training {train} from {base} on {out}")
    train_sft(out, train, base, max_steps=train_max_steps, lr=train_lr, max_len=train_max_len,
              log=lambda text: console.print(text, highlight=False, markup=False, soft_wrap=True))
    if evaluate:
        evaluate_trained(plan, train, base, options, given, evaluate_run_id)


def nothing_to_do(plan) -> str:
    errors = len(plan.selection.only_errors)
    return (f"nothing to resample: {plan.source.name} has no unresolved task ({len(plan.selection.resolved)} resolved"
            + (f"; {errors} with infrastructure errors only: resume the run to redo them)" if errors else ")"))


def overrides_from(options: dict, given: set[str]) -> dict:
    """The given run options as RunConfig values (several URLs, the cwm checkout found and checked)."""
    converters = {"model_url": model_urls, "cwm_source": resolve_cwm_source, "memory": checked_memory}
    return {name: converters.get(name, lambda v: v)(options[name]) for name in given
            if name not in ("output", "run_id", "serve_port")}


def checked_memory(value: str) -> str:
    from harness.sandbox import memory_bytes

    memory_bytes(value)  # one line if it is not a size
    return value


def sampler(plan, options: dict, given: set[str]):
    """The resample run's configuration, suite, tasks, agent and agent spec."""
    from agents import make_agent
    from harness.resample import load_tasks
    from harness.serve import EMBEDDED, ensure_embedded_server

    config = plan.config
    if "model_url" not in given and plan.recorded_model == EMBEDDED:  # as `run` does: reuse or start the server
        port = options["serve_port"] if "serve_port" in given else _port(config.model_url, options["serve_port"])
        config.model_url = ensure_embedded_server(port, log=console.print)
    suite, tasks = load_tasks(config)
    spec = {"name": config.agent, "model_url": config.model_url, "model": config.model, "cwm_config": config.cwm,
            "sampling": config.sampling, "max_inflight": config.max_model_requests, "api_key": config.api_key}
    return config, suite, tasks, make_agent(**spec), spec


def _port(url, default: int) -> int:
    from urllib.parse import urlparse

    first = url[0] if isinstance(url, list) else url
    return (urlparse(first).port if first else None) or default


def training_base(plan, agent, choice: str | None) -> str:
    from harness.resample_loop import train_base

    client = getattr(agent, "client", None)
    return train_base(choice, getattr(client, "model_root", None), plan.recorded_model or agent.model)


def evaluate_trained(plan, folder: Path, base: str, options: dict, given: set[str], run_id: str | None) -> None:
    from agents import make_agent
    from harness.cli_report import compare_md
    from harness.cli_run import execute
    from harness.resample import load_tasks
    from harness.resample_loop import evaluation_config, serving, side_by_side

    with serving(folder, base, log=console.print) as server:
        config = evaluation_config(plan, server.url, {name: options[name] for name in given}, run_id)
        suite, tasks = load_tasks(config)
        spec = {"name": config.agent, "model_url": config.model_url, "model": None, "cwm_config": config.cwm,
                "sampling": config.sampling, "max_inflight": config.max_model_requests, "api_key": None}
        execute(config, suite, tasks, make_agent(**spec), spec)
    board, comparison = side_by_side(plan.source, config.output / config.run_id)
    console.print(board, markup=False, highlight=False)
    console.print(compare_md(comparison), markup=False, highlight=False)
