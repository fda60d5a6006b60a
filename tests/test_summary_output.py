"""What a run prints fits where it goes (issue 17 items 2 and 4): the end-of-run table gives per trial the counts
that explain its exit status and fits 80 columns with whole task ids and the wall time; wider consoles get more
columns; every trial failing the same way gets a one-line diagnosis; `--help` shows options as users type them.

Snapshots live in tests/snapshots/; `UPDATE_SNAPSHOTS=1 pytest tests/test_summary_output.py` rewrites them."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from helpers import run_demo, turn
from rich.console import Console
from scripted_server import ScriptedServer
from typer.testing import CliRunner

from harness.records import ExitStatus, Outcome, TrialResult, Usage
from harness.summary import diagnosis, summary_table
from harness.tally import Tally

SNAPSHOTS = Path(__file__).parent / "snapshots"
ANSI = re.compile(r"\x1b\[[0-9;]*m")
THINK_ERROR = "FormatError: A reply needs exactly one thinking end tag, this one has 0"


def snapshot(name: str, text: str) -> None:
    path = SNAPSHOTS / name
    if os.environ.get("UPDATE_SNAPSHOTS"):
        path.parent.mkdir(exist_ok=True)
        path.write_text(text)
    assert text == path.read_text(), f"{name} changed; UPDATE_SNAPSHOTS=1 rewrites it"


def trial(task: str, attempt: int = 0, **fields) -> TrialResult:
    """A demo trial of the 135M model: five turns, four format errors, no command (the demo's 0/3)."""
    values = dict(run_id="demo-run", suite="demo", task_id=task, attempt=attempt, agent="cwm",
                  outcome=Outcome.UNRESOLVED, exit_status=ExitStatus.TURN_LIMIT, turns=5, format_errors=4, commands=0,
                  submitted=False, cut_off=4, common_format_error=THINK_ERROR, started_at=0.0, ended_at=412.3,
                  usage=Usage(model_calls=5, prompt_tokens=9120, completion_tokens=1280), wall_seconds=412.3)
    return TrialResult(**{**values, **fields})


DEMO = [trial("demo__inventory-3"), trial("demo__calc-1", wall_seconds=1234.5), trial("demo__textstats-2")]
MIXED = DEMO[:2] + [
    trial("django__django-11099", outcome=Outcome.RESOLVED, exit_status=ExitStatus.SUBMITTED, format_errors=0,
          commands=11, submitted=True, cut_off=0, wall_seconds=95.0),
    trial("scikit-learn__scikit-learn-13142", attempt=1, outcome=Outcome.UNRESOLVED, exit_status=ExitStatus.TIMEOUT,
          format_errors=0, commands=40, submitted=False, cut_off=0, reason="container out of memory"),
]


def render(results: list[TrialResult], width: int) -> str:
    console = Console(width=width, color_system=None, force_terminal=False)
    with console.capture() as captured:
        console.print(summary_table(results, "demo-run (demo, cwm)", width))
    return captured.get()


@pytest.mark.parametrize("width", [80, 120])
def test_summary_table_fits_with_whole_task_ids_and_wall_time(width):
    for name, results in (("demo", DEMO), ("mixed", MIXED)):
        text = render(results, width)
        snapshot(f"summary-{name}-{width}.txt", text)
        lines = text.splitlines()
        assert max(map(len, lines)) <= width
        header = next(line for line in lines if line.startswith("task"))
        for title in ("outcome", "exit", "turns", "fmt", "cmds", "sub", "wall s"):
            assert title in header
        for r in results:
            row = next(line for line in lines if line.startswith(r.task_id[:8]))
            assert f"{r.wall_seconds:.1f}" in row and r.exit_status.value in row
            if len(r.task_id) <= 21 or width > 80:  # ids longer than what 80 columns leave lose their middle
                assert row.startswith(r.task_id + " ")
    assert "tokens in/out" in render(DEMO, 120) and "tokens in/out" not in render(DEMO, 80)
    assert "container out of memory" in render(MIXED, 200)


def test_a_task_id_too_long_for_80_columns_keeps_its_ends_on_one_line():
    row = next(line for line in render(MIXED, 80).splitlines() if line.startswith("scikit"))
    assert "…" in row and row.split()[0].endswith("13142")


def test_every_trial_failing_the_same_way_gets_one_diagnosis_line():
    line = diagnosis(DEMO)
    assert line.startswith("all turns were format errors, so the model never ran a command")
    assert "12 of 15 replies were cut off" in line and THINK_ERROR in line and "\n" not in line
    assert diagnosis(MIXED) is None  # one resolved
    assert diagnosis(DEMO[:2] + [trial("demo__x", exit_status=ExitStatus.CONTEXT_LIMIT)]) is None
    ran = [trial(r.task_id, format_errors=0, commands=7) for r in DEMO]
    assert diagnosis(ran) == "all 3 trials ended turn_limit without a graded submission (0 had submitted)"
    assert diagnosis([trial(r.task_id, submitted=None, commands=0, format_errors=0, turns=1) for r in DEMO]) is None
    errors = [trial(r.task_id, outcome=Outcome.ERROR, exit_status=ExitStatus.INFRA_ERROR, error="docker: gone\nmore")
              for r in DEMO]
    assert diagnosis(errors) == "all 3 trials ended in an infrastructure error (not scored); the first: docker: gone"


def test_the_tally_counts_commands_cut_off_replies_and_the_commonest_format_error():
    tally = Tally()
    for record in [{"kind": "message", "role": "assistant", "finish_reason": "length"},
                   {"kind": "format_error", "error": THINK_ERROR}, {"kind": "format_error", "error": THINK_ERROR},
                   {"kind": "format_error", "error": "FormatError: The reply calls no tool"},
                   {"kind": "message", "role": "assistant", "finish_reason": "stop"},
                   {"kind": "message", "role": "tool: bash", "content": "ok"}, {"kind": "tokens"}]:
        tally.see(record)
    assert tally.fields() == {"commands": 1, "cut_off": 1, "common_format_error": THINK_ERROR}


def test_a_trial_records_commands_run_and_submission(tmp_path):
    """The runner fills the counts from what the agent wrote to the trajectory (a real container)."""
    script = ["rambling without a thinking end"] * 2 + [turn("look", "bash", "ls"), turn("stop", "bash", "pwd")]
    with ScriptedServer(script) as server:
        [result] = run_demo(tmp_path, "cwm", task_ids=["demo__calc-1"], model_url=server.url, max_turns=4)
    assert (result.commands, result.submitted, result.format_errors, result.cut_off) == (1, False, 2, 0)
    assert result.common_format_error.startswith("FormatError:")
    assert TrialResult.model_validate_json(
        (tmp_path / "test-run/trials/demo__calc-1/0/result.json").read_text()).commands == 1


def help_text(args: list[str], width: int) -> str:
    import harness.cli as cli

    result = CliRunner().invoke(cli.app, args, env={"COLUMNS": str(width), "TERMINAL_WIDTH": None},
                                prog_name="cwm-eval")
    assert result.exit_code == 0, result.output
    return ANSI.sub("", result.output)


@pytest.mark.parametrize("width", [80, 120])
@pytest.mark.parametrize("command", ["run", "serve"])
def test_help_shows_options_as_typed_and_fits(command, width):
    text = help_text([command, "--help"], width)
    snapshot(f"help-{command}-{width}.txt", text)
    assert max(map(len, text.splitlines())) <= width
    assert not re.search(r"<(bool|int|str|float|path|list)", text)  # typer's own type labels
    assert re.search(r"│ --help +Show this message", text)
    flags = re.findall(r"│ (--[a-z][a-z-]*)(…)?", text)
    assert flags and not any(cut for _, cut in flags)  # no option name cut short
    if command == "run":
        assert re.search(r"--max-turns +INTEGER \[x>=1\]", text) and re.search(r"│ --shuffle +shuffle", text)


def test_a_log_file_gets_whole_lines(tmp_path):
    """stdout that is not a terminal: nothing wrapped at 80 columns."""
    import subprocess
    import sys

    code = ("from harness.terminal import stdout_console\nc = stdout_console()\nc.print('word ' * 40)\n"
            "print(c.width)")
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True).stdout
    lines = out.splitlines()
    assert lines[0].strip() == ("word " * 40).strip() and int(lines[1]) > 120
