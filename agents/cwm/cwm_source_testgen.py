"""CWM's test-generation texts, loaded at run time from the user's checkout (as agents/cwm/cwm_source.py loads the
rest).

`USER_TESTGEN` and that module's own `SUBMISSION_FEEDBACK_PROMPT` are read with `ast` from
`cwm/rl/envs/envs/swerl_testgen_tool.py` (never imported: it needs modal and CWM's tokenizers); the submit is
`submit_file` of the checkout's tools module, already loaded by `CwmSourceTexts`. They are loaded on first use, so a
checkout without that file still serves the patch task; the testgen scenario loads them before its run starts.
"""

from __future__ import annotations

import types
from pathlib import Path

from agents.cwm.cwm_source import TOOLS, RunBash, _Backend
from agents.cwm.source_reading import checkout_origin, not_cwm, parse_file, string_constants

TESTGEN = "cwm/rl/envs/envs/swerl_testgen_tool.py"
# its own constants, with their placeholders; every other text of the environment is swerl_tool.py's
TESTGEN_CONSTANTS = {
    "USER_TESTGEN": ("issue", "repo_root"),
    "SUBMISSION_FEEDBACK_PROMPT": ("test",),
}


class CwmTestgenTexts:
    """The test-generation environment's prompt, submission feedback and `submit_file`, from a checkout."""

    comparable = True

    def __init__(self, root: Path, tools: types.ModuleType):
        if not (root / TESTGEN).is_file():
            raise not_cwm(root, f"{TESTGEN} not found (needed by --scenario testgen)")
        self._constants = string_constants(root, parse_file(root, TESTGEN), TESTGEN_CONSTANTS, TESTGEN)
        if not callable(getattr(tools, "submit_file", None)):
            raise not_cwm(root, f"{TOOLS} has no submit_file (needed by --scenario testgen)")
        self._tools = tools
        self.origin = checkout_origin(root, (TESTGEN, TOOLS))

    def prompt(self, issue: str, repo_root: str) -> str:
        return self._constants["USER_TESTGEN"].format(issue=issue, repo_root=repo_root)

    def submission_feedback(self, test: str) -> str:
        return self._constants["SUBMISSION_FEEDBACK_PROMPT"].format(test=test)

    def submit(self, body: str, run_bash: RunBash) -> tuple[bool, str]:
        result = self._tools.submit_file(_Backend(run_bash), body)
        return bool(result.success), result.output
