"""The console the commands print to. On a terminal: the terminal's width, so wider terminals get wider tables.
Anywhere else (stdout sent to a log file or a pipe) rich would assume 80 columns and break lines there: lines are
not wrapped instead, and tables get LOG_WIDTH columns to lay out in (COLUMNS, when set, still decides)."""

from __future__ import annotations

import os
import sys

from rich.console import Console

LOG_WIDTH = 200


def stdout_console() -> Console:
    if os.environ.get("COLUMNS") or sys.stdout.isatty():
        return Console()
    return Console(width=LOG_WIDTH, soft_wrap=True)
