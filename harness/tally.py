"""What a trial's trajectory shows of the agent, counted as its lines are written: the evidence the end-of-run
summary gives for each exit status (commands run, replies cut off, the commonest format error)."""

from __future__ import annotations

from collections import Counter
from typing import Any

ERROR_CHARS = 160  # a format error is kept to this many characters


class Tally:
    def __init__(self):
        self.commands = 0  # tool calls that ran (each has its observation, a message from a `tool: ...` role)
        self.cut_off = 0  # model replies that stopped at the token limit (finish_reason "length")
        self.format_errors: Counter[str] = Counter()

    def see(self, record: dict[str, Any]) -> None:
        kind = record.get("kind")
        if kind == "message":
            role = str(record.get("role") or "")
            if role.startswith("tool"):
                self.commands += 1
            elif role == "assistant" and record.get("finish_reason") == "length":
                self.cut_off += 1
        elif kind == "format_error":
            self.format_errors[" ".join(str(record.get("error") or "").split())[:ERROR_CHARS]] += 1

    def fields(self) -> dict[str, Any]:
        """The TrialResult fields this tally fills."""
        common = self.format_errors.most_common(1)
        return {"commands": self.commands, "cut_off": self.cut_off,
                "common_format_error": common[0][0] if common else None}
