"""Every text the CWM agent shows the model, behind one interface.

Two sources implement it: `ProjectTexts` (cwm-eval's own wording, used when no CWM checkout is given; results are
labelled "not comparable to CWM") and `agents.cwm.cwm_source.CwmSourceTexts` (CWM's texts and plugins, loaded at run
time from the user's checkout). The behaviour around the texts (what is checked, in which order) is the same.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Callable, Protocol

from harness.errors import UserError

PLUGIN_TOOLS = ("bash", "edit", "create", "submit")
BASH_ONLY_TOOLS = ("bash", "submit")
TOOL_CALL = re.compile(r"<tool:\s([a-zA-Z_]+)>\n(.*?)\n</tool>", re.DOTALL)
RunBash = Callable[[str], dict]  # command -> {"status", "output", "error_type", "exit_code"}


class FormatError(Exception):
    """The turn breaks the tool-call format; in eval mode the message goes back to the model."""


class NoSuchToolError(Exception):
    """The turn calls a tool the environment does not have."""


class Texts(Protocol):
    comparable: bool  # True only for CWM's own texts
    origin: str
    plugin_dir: Path  # holds edit.py and create.py, copied into the container as they are
    budget_template: str  # unfilled: CWM estimates the observation's size with it

    def system_prompt(self, tools: list[str], *, session_timeout: float, context_size: int,
                      max_turns: int) -> str: ...

    def issue_prompt(self, issue: str, repo_root: str) -> str: ...

    def submission_feedback(self, patch: str) -> str: ...

    def output(self, feedback: str) -> str: ...

    def budget(self, remaining_turns: int, remaining_tokens: int) -> str: ...

    def think_end_error(self, count: int) -> str: ...

    def parse_tool_calls(self, answer: str) -> tuple[str, str]: ...

    def no_such_tool(self, name: str) -> str: ...

    def bash_notice(self, error_type: str) -> str: ...

    def submit(self, body: str, run_bash: RunBash) -> tuple[bool, str]: ...


def check_tools(tools: list[str]) -> None:
    if set(tools) not in (set(PLUGIN_TOOLS), set(BASH_ONLY_TOOLS)):
        raise UserError(f"--tools {','.join(tools)}: use bash,edit,create,submit (CWM's default) or bash,submit "
                        "(CWM's bash-only scaffold)")


THINK_SYSTEM = (
    "You are a helpful AI assistant. Before every answer you think it through, laid out like this:\n\n"
    "<think>\nprivate reasoning\n</think>\nthe answer the user sees"
)

TOOL_SPECS = {
    "bash": ("<tool: bash>\n[command(s)]\n</tool>\n"
             "Runs [command(s)], one or several lines of non-interactive bash, in the persistent session."),
    "edit": ("<tool: edit>\n[path]\n<<<<<<< SEARCH\n[search_lines]\n=======\n[replacement_lines]\n>>>>>>> REPLACE\n"
             "</tool>\nIn the existing file [path], swaps [search_lines] for [replacement_lines]. [search_lines] must "
             "be whole consecutive lines of the file, whitespace and indentation included, found exactly once."),
    "create": ("<tool: create>\n[path]\n[content]\n</tool>\n"
               "Writes [content] to a new file [path]; [path] must not exist yet and its folder must."),
    "submit": ("<tool: submit>\n[result]\n</tool>\n"
               "Hands in [result] as your final submission; the task says what [result] has to be."),
}

ENVIRONMENT = (
    "Your shell runs in a Linux container. It keeps its state between turns, but it is restarted after an error or "
    "when a turn's command runs past the {session_timeout} limit. The whole conversation must fit in {context_size} "
    "tokens, and you have at most {max_turns} turns with the tools described below.\n\n{specs}\n\n"
    "RULES:\n"
    "* Call at most one tool per step.\n"
    "* Until you have called <tool: submit>, every step must call exactly one tool.\n"
    "* Once a submission succeeded, answer without a tool call if the task is done, or keep working. Never answer "
    "without a tool call before a submission."
)

ISSUE_PROMPT = (
    "Fix the issue below by changing the code, then submit a patch file.\n\n"
    "<issue_description>\n{issue}\n</issue_description>\n\n"
    "For this task, [result] in <tool: submit> is the path of a patch file, in `git diff` format and reachable from "
    "the current directory, holding all of your changes. You may submit again after improving the patch.\n\n"
    "After at least one submission, when you are sure of the fix, reply without a tool call, with a summary under "
    "these headings (adapt them as needed):\n\n"
    "## Issue Summary\n## Investigation and Reproduction\n## Solution and Code Changes\n## Testing and Verification\n\n"
    "What counts is a correct patch: read the code carefully, reproduce the problem, and run plenty of code — new "
    "tests for the fix and the existing tests against regressions — before you submit.\n\n"
    "The repository is at {repo_root}, with its dependencies installed. The shell is already running there."
)

TERMINAL_PROMPT = (
    "Carry out the task below in this container.\n\n<task_description>\n{task}\n</task_description>\n\n"
    "Nothing needs to be handed in as a file: the container's final state is checked by the task's tests once "
    "you finish. For this task, [result] in <tool: submit> is a one-line note of what you did. When the task is "
    "done, call <tool: submit>, then reply once more without a tool call to finish.\n\n"
    "The shell is already running in {workdir}."
)


class ProjectTexts:
    """cwm-eval's own wording of CWM's scaffold: the same facts and rules, other sentences."""

    comparable = False
    origin = "cwm-eval (not CWM's texts: numbers are not comparable to CWM's)"
    plugin_dir = Path(__file__).parent / "plugins"
    budget_template = "<budget>\n* Remaining turns: {remaining_turns}\n* Remaining tokens: {remaining_tokens}\n</budget>"

    def system_prompt(self, tools: list[str], *, session_timeout: float, context_size: int, max_turns: int) -> str:
        check_tools(tools)
        specs = "\n\n".join(TOOL_SPECS[name] for name in PLUGIN_TOOLS if name in tools)
        environment = ENVIRONMENT.format(session_timeout=f"{int(session_timeout)}-second", context_size=context_size,
                                         max_turns=max_turns, specs=specs)
        return f"{THINK_SYSTEM}\n\n# Environment\n\n{environment}"

    def think_system(self) -> str:
        return THINK_SYSTEM

    def issue_prompt(self, issue: str, repo_root: str) -> str:
        return ISSUE_PROMPT.format(issue=issue, repo_root=repo_root)

    def submission_feedback(self, patch: str) -> str:
        return (f"Your submission is now this patch:\n\n<submission>\n{patch}\n</submission>\n\n"
                "Check that it really fixes the issue; you may keep improving it and submit again.")

    def output(self, feedback: str) -> str:
        return f"<output>\n{feedback}\n</output>"

    def budget(self, remaining_turns: int, remaining_tokens: int) -> str:
        return self.budget_template.format(remaining_turns=remaining_turns, remaining_tokens=remaining_tokens)

    def think_end_error(self, count: int) -> str:
        return f"A reply needs exactly one thinking end tag, this one has {count}"

    def parse_tool_calls(self, answer: str) -> tuple[str, str]:
        """CWM's checks in CWM's order: several calls, tag counts, no call, empty body."""
        calls = TOOL_CALL.findall(answer)
        if len(calls) > 1:
            raise FormatError(f"{len(calls)} tool calls in one reply ({', '.join(name for name, _ in calls)}); "
                              "keep a single <tool:...></tool> block.")
        opened, closed = answer.count("<tool:"), answer.count("</tool>")
        if len(calls) != opened or len(calls) != closed:
            raise FormatError(f"The tool tags do not pair up: {len(calls)} well-formed calls, {opened} opening and "
                              f"{closed} closing tags.")
        if not calls:
            raise FormatError("The reply calls no tool")
        name, body = calls[0]
        if not body.strip():
            raise FormatError(f"The call to '{name.strip()}' has an empty or blank body.")
        return name.strip(), body

    def no_such_tool(self, name: str) -> str:
        return f"There is no tool called '{name}'."

    def bash_notice(self, error_type: str) -> str:
        reason = {"timeout": "the command ran past the time limit",
                  "too_long": "the command printed too much output"}.get(error_type, "the shell stopped unexpectedly")
        return f"The session was ended because {reason}. A new session is running, back in the default directory."

    def submit(self, body: str, run_bash: RunBash) -> tuple[bool, str]:
        path = body.strip()
        result = run_bash(f"cat {path}")
        if result["status"] == "error" or result["exit_code"] != 0:
            return False, f"Could not submit {path}: it is missing or unreadable."
        if result["output"].strip() == "":
            return False, f"Could not submit {path}: the file is empty."
        if not result["output"].startswith("diff"):
            return False, f"Could not submit {path}: it is not a patch in `git diff` format."
        return True, result["output"]


def terminal_prompt(task: str, workdir: str) -> str:
    """Terminal-Bench's task prompt: CWM published none, so this wording is cwm-eval's for every text source."""
    return TERMINAL_PROMPT.format(task=task, workdir=workdir)


def submit_note(body: str) -> tuple[bool, str]:
    """Terminal-Bench's submit: the container is graded, [result] is only a note."""
    return True, body.strip()


def load_texts(cwm_source: Path | None) -> Texts:
    if cwm_source is None:
        return ProjectTexts()
    from agents.cwm.cwm_source import load_cwm_texts

    return load_cwm_texts(Path(cwm_source))
