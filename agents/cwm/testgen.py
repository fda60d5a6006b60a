"""The CWM agent's texts for the test-generation scenario (CWM's `swerl_testgen_tool` environment).

The system prompt, output wrapper, budget and error texts are the SWE environment's; what differs is the task prompt
(write a reproduction script that prints one of three verdict lines), the submit (any readable file: its contents are
the test) and the feedback after a successful submit. And any format error ends the episode: graded when a test was
submitted, failed otherwise (`any_format_error_ends`, read by the agent's loop).

With `--cwm-source` these come from the same checkout as the rest (`CwmSourceTexts.testgen()`); without it from the
wording below, cwm-eval's own (the same facts, other sentences), labelled not comparable like every other text.
"""

from __future__ import annotations

from typing import Protocol

from agents.cwm.texts import RunBash, Texts
from tasks.swebench.repro import OTHER, REPRODUCED, RESOLVED, TEST_FILE

TESTGEN_PROMPT = (
    "Your job is not to fix the issue below but to write a script that shows it, and that can later tell whether "
    "it has been fixed.\n\n<issue_description>\n{issue}\n</issue_description>\n\n"
    f"Write the script to `{TEST_FILE}`. It has to run on its own as `python {TEST_FILE}` from the repository "
    "root: plain Python, no pytest or unittest. Import from the repository only what you need, build the smallest "
    "situation in which the problem shows, keep every piece of logic inside the script, and make it finish quickly "
    "by itself, leaving no server or other process behind.\n\n"
    "For each case it checks, the script reports with exactly one of these lines, spelled as here:\n"
    f"  - `{REPRODUCED}` when the behaviour the issue complains about shows up;\n"
    f"  - `{RESOLVED}` when the code behaves as the issue says it should;\n"
    f"  - `{OTHER}` when something else goes wrong, such as an unexpected exception.\n\n"
    "A sketch of the shape (the names are placeholders):\n\n"
    "```python\nfrom package.module import function_from_the_issue\n\n\ndef check():\n    try:\n"
    "        value = function_from_the_issue(example_input)\n    except Exception:\n"
    f"        print(\"{OTHER}\")\n        return\n    if value == value_the_issue_expects:\n"
    f"        print(\"{RESOLVED}\")\n    else:\n        print(\"{REPRODUCED}\")\n\n\ncheck()\n```\n\n"
    f"For this task, [result] in <tool: submit> is the path of the script:\n\n<tool: submit>\n{TEST_FILE}\n</tool>\n\n"
    "After submitting, reply without a tool call, explaining how the test works. The repository is at {repo_root} "
    "with its dependencies installed, and the shell is already running there."
)


class TestgenSource(Protocol):
    comparable: bool

    def prompt(self, issue: str, repo_root: str) -> str: ...

    def submission_feedback(self, test: str) -> str: ...

    def submit(self, body: str, run_bash: RunBash) -> tuple[bool, str]: ...


class ProjectTestgenTexts:
    """cwm-eval's own wording of the test-generation texts."""

    comparable = False

    def prompt(self, issue: str, repo_root: str) -> str:
        return TESTGEN_PROMPT.format(issue=issue, repo_root=repo_root)

    def submission_feedback(self, test: str) -> str:
        return (f"Your submission is now this test:\n\n<submission>\n{test}\n</submission>\n\n"
                "Check that it shows the issue; you may keep improving it and submit again.")

    def submit(self, body: str, run_bash: RunBash) -> tuple[bool, str]:
        """Any readable file: its contents, as `cat` printed them, are the test (no other check, as CWM's)."""
        path = body.strip()
        result = run_bash(f"cat {path}")
        if result["status"] == "error" or result["exit_code"] != 0:
            return False, f"Could not submit {path}: it is missing or unreadable."
        return True, result["output"]


def testgen_source(texts: Texts) -> TestgenSource:
    """The test-generation texts of the same source as `texts`: CWM's checkout's, else ours."""
    own = getattr(texts, "testgen", None)
    return own() if callable(own) else ProjectTestgenTexts()


class TestgenTexts:
    """`texts` (the SWE environment's) with the test-generation prompt, submit and submission feedback."""

    __test__ = False  # not a pytest class
    any_format_error_ends = True

    def __init__(self, texts: Texts):
        self.base = texts
        self.testgen = testgen_source(texts)
        self.comparable = texts.comparable and self.testgen.comparable
        self.origin = texts.origin

    def __getattr__(self, name: str):  # every other text is the SWE environment's
        return getattr(self.base, name)

    def issue_prompt(self, issue: str, repo_root: str) -> str:
        return self.testgen.prompt(issue, repo_root)

    def submission_feedback(self, patch: str) -> str:
        return self.testgen.submission_feedback(patch)

    def submit(self, body: str, run_bash: RunBash) -> tuple[bool, str]:
        return self.testgen.submit(body, run_bash)


def scenario_texts(texts: Texts, suite) -> Texts:
    """The texts for the suite's scenario: the test-generation ones when it asks for a test, else `texts`."""
    if getattr(suite, "agent_prompt", "issue") == "testgen":
        return TestgenTexts(texts)
    return texts
