"""The CWM agent's tools (bash, edit, create, submit), all run through the one persistent session."""

from __future__ import annotations

import time
from dataclasses import dataclass

from agents.cwm.texts import Texts
from harness.sandbox import Sandbox
from harness.session import BashSession, CommandResult

PLUGIN_DIR = "/cwm-plugins"
PLUGINS = ("edit", "create")
HEREDOC = "EOF_938176592"


def install_plugins(sandbox: Sandbox, texts: Texts) -> None:
    """The text source's own plugin scripts, byte for byte."""
    sandbox.write_files({f"{PLUGIN_DIR}/{name}.py": (texts.plugin_dir / f"{name}.py").read_bytes() for name in PLUGINS})


def plugin_command(name: str, body: str) -> str:
    """edit and create are Python scripts fed the tool body through a heredoc, in the same shell."""
    return f"${{PYPLUGIN_PYTHON_PATH:-python3}} {PLUGIN_DIR}/{name}.py <<'{HEREDOC}'\n{body}\n{HEREDOC}"


def bash_result(result: CommandResult) -> dict:
    """A session result in the shape CWM's tool functions read."""
    return {"status": "success" if result.ok else "error", "output": result.output,
            "error_type": result.error, "exit_code": result.exit_code if result.ok else -1}


@dataclass
class ToolOutcome:
    feedback: str
    success: bool
    seconds: float
    patch: str | None = None  # a successful submission


def run_tool(name: str, body: str, session: BashSession, texts: Texts, submit_note: bool = False) -> ToolOutcome:
    started = time.monotonic()
    if name == "bash":
        result = session.run(body)
        feedback = result.output if result.ok else texts.bash_notice(result.error)
        return ToolOutcome(feedback, result.ok, result.seconds)
    if name in PLUGINS:
        result = session.run(plugin_command(name, body))  # on a session error: the raw partial output
        return ToolOutcome(result.output, result.ok and result.exit_code == 0, result.seconds)
    if submit_note:  # Terminal-Bench: the container is graded; [result] is only a note
        return ToolOutcome(body.strip(), True, 0.0, patch=body.strip())
    success, output = texts.submit(body, lambda command: bash_result(session.run(command)))
    return ToolOutcome(output, success, time.monotonic() - started, patch=output if success else None)
