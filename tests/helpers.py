"""Test helpers: run the real runner on the demo suite, turn a gold patch into CWM tool calls."""

from __future__ import annotations

import asyncio
import re
import shutil
from pathlib import Path

from agents import make_agent
from agents.cwm.agent import CwmConfig
from harness.config import RunConfig
from harness.runner import Runner
from tasks import load_suite


def run_demo(tmp_path: Path, agent: str, *, task_ids: list[str] | None = None, model_url=None,
             concurrency: int = 1, run_id: str = "test-run", executor: str = "local", run_options: dict | None = None,
             suite=None, **cwm) -> list:
    """The real runner on the demo suite (or `suite`); `run_options` are RunConfig fields, the rest CwmConfig's."""
    suite = suite or load_suite("demo")
    config = RunConfig(suite=suite.name, task_ids=task_ids or [], agent=agent, model_url=model_url,
                       concurrency=concurrency, run_id=run_id, output=tmp_path, cwm=CwmConfig(**cwm),
                       executor=executor, **(run_options or {}))
    tasks = suite.load(task_ids)
    spec = {"name": agent, "model_url": model_url, "cwm_config": config.cwm}
    the_agent = make_agent(**spec)
    config.model = the_agent.model
    runner = Runner(config, suite, the_agent)
    if executor == "ray":
        from harness.ray_executor import RayExecutor

        runner.executor = RayExecutor(runner, spec)
    return asyncio.run(runner.run(tasks))


def edit_from_patch(patch: str) -> str:
    """The body of a CWM `edit` call doing the first hunk of a one-file patch."""
    path = re.search(r"^\+\+\+ b/(.+)$", patch, re.M).group(1)
    hunk = patch.split("\n@@", 1)[1].split("\n", 1)[1]
    hunk = re.split(r"\n(?:@@|diff --git)", hunk)[0]
    old, new = [], []
    for line in hunk.split("\n"):
        if line.startswith("\\"):
            continue
        tag, text = line[:1], line[1:]
        if tag in (" ", "-"):
            old.append(text)
        if tag in (" ", "+"):
            new.append(text)
    return f"{path}\n<<<<<<< SEARCH\n" + "\n".join(old) + "\n=======\n" + "\n".join(new) + "\n>>>>>>> REPLACE"


def turn(thought: str, tool: str | None = None, body: str | None = None) -> str:
    text = f"<think>\n{thought}\n</think>\n"
    return text + (f"<tool: {tool}>\n{body}\n</tool>" if tool else "## Issue Summary\nDone.")


def copy_tree(tree: Path, root: Path) -> Path:
    """A writable copy of a fixture tree at `root`, without bytecode caches."""
    shutil.copytree(tree, root, ignore=shutil.ignore_patterns("__pycache__"))
    return root


def edit_file(path: Path, old: str, new: str) -> None:
    """Replace `old` (which must be there) with `new` in the file at `path`."""
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new))
