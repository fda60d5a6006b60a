"""`cwm-eval prompt SUITE --task ID`: the first messages the CWM agent would send, with no container and no model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from harness.cli import app, parse_tools, resolve_cwm_source
from harness.errors import UserError


@app.command()
def prompt(
    suite: str = typer.Argument(..., help="demo | swebench | terminal-bench | livecodebench"),
    task: str = typer.Option(..., "--task", help="the task id"),
    dataset: Optional[str] = typer.Option(None, help="the suite's dataset, as for `run`"),
    split: str = typer.Option("test", help="dataset split"),
    cwm_source: Optional[Path] = typer.Option(None, help="a facebookresearch/cwm checkout (CWM's own texts)"),
    tools: str = typer.Option("bash,edit,create,submit", help="bash,edit,create,submit or bash,submit"),
    max_turns: int = typer.Option(128, min=1),
    command_timeout: float = typer.Option(120.0, help="seconds per bash command"),
    context_size: int = typer.Option(131072, min=1, help="total context budget in tokens"),
    format: str = typer.Option("json", "--format", help="json | text"),
) -> None:
    """Print exactly the first messages (system, user) the agent would send for one task."""
    from agents.cwm.agent import CwmConfig, initial_messages
    from agents.cwm.texts import load_texts
    from harness.conversation import CharEstimate
    from tasks import load_suite

    if format not in ("json", "text"):
        raise UserError(f"unknown --format {format!r}; use json or text")
    config = CwmConfig(tools=parse_tools(tools), max_turns=max_turns, command_timeout=command_timeout,
                       context_size=context_size, cwm_source=resolve_cwm_source(cwm_source))
    the_suite = load_suite(suite, dataset, split=split)
    [the_task] = the_suite.load([task])
    texts = load_texts(config.cwm_source)
    messages = initial_messages(the_task, the_suite, texts, config, CharEstimate(config.chars_per_token))
    if format == "json":
        print(json.dumps({"messages": messages, "workdir": the_task.workdir}, indent=2, ensure_ascii=False))
        return
    for message in messages:
        print(f"=== {message['role']} ===\n{message['content']}\n")
    print(f"=== workdir ===\n{the_task.workdir}")
