"""Prompts: CWM's LiveCodeBench prompt (lcb.py, "ours" + think tag), lcb_runner's own, and the agentic task text."""

from __future__ import annotations

from agents.cwm.texts import THINK_SYSTEM
from tasks.livecodebench.dataset import Problem

CWM_FORMAT_GUIDE = ("Your code should be enclosed in triple backticks like so: ```python YOUR CODE HERE ```. "
                    "Use the backticks for your code only.")
LCB_SYSTEM = ("You are an expert Python programmer. You will be given a question (problem specification) and will "
              "generate a correct Python program that matches the specification and passes all tests.")
LCB_WITH_STARTER = ("You will use the following starter code to write the solution to the problem and enclose your "
                    "code within delimiters.")
LCB_WITHOUT_STARTER = ("Read the inputs from stdin solve the problem and write the answer to stdout (do not directly "
                       "test on the sample inputs). Enclose your code within delimiters as follows. Ensure that when "
                       "the python program runs, it reads the inputs, runs the algorithm and writes output to STDOUT.")
PROMPT_STYLES = ("cwm", "lcb")


def cwm_user_prompt(problem: Problem) -> str:
    prompt = (f"Provide a Python solution for the following competitive programming question: "
              f"{problem.question_content}.\n{CWM_FORMAT_GUIDE}")
    if problem.starter_code:
        return prompt + f" Use the provided function signature:\n```python\n{problem.starter_code}\n```"
    return prompt + " Your code should read from and write to standard io."


def lcb_user_prompt(problem: Problem) -> str:
    prompt = f"### Question:\n{problem.question_content}\n\n"
    if problem.starter_code:
        prompt += f"### Format: {LCB_WITH_STARTER}\n```python\n{problem.starter_code}\n```\n\n"
    else:
        prompt += f"### Format: {LCB_WITHOUT_STARTER}\n```python\n# YOUR CODE HERE\n```\n\n"
    return prompt + "### Answer: (use the provided format with backticks)\n\n"


def codegen_messages(problem: Problem, style: str = "cwm") -> list[dict[str, str]]:
    """The single-turn conversation: CWM's think-tag system prompt (the server's chat template prefills
    `<think>\\n`), or lcb_runner's generic chat prompt."""
    if style == "cwm":
        return [{"role": "system", "content": THINK_SYSTEM}, {"role": "user", "content": cwm_user_prompt(problem)}]
    if style == "lcb":
        return [{"role": "system", "content": LCB_SYSTEM}, {"role": "user", "content": lcb_user_prompt(problem)}]
    raise ValueError(f"unknown prompt style {style!r}; use one of {', '.join(PROMPT_STYLES)}")


def problem_markdown(problem: Problem) -> str:
    """/workspace/problem.md in the agentic scenario."""
    title = problem.question_title or problem.question_id
    text = f"# {title}\n\n{problem.question_content.strip()}\n"
    if problem.starter_code:
        text += f"\n## Starter code\n\n```python\n{problem.starter_code.rstrip()}\n```\n"
    return text


def agentic_instruction(problem: Problem, workdir: str, timeout: float) -> str:
    if problem.fn_name:
        io_rule = (f"Complete the starter code: /workspace/solution.py must define `class Solution` with the method "
                   f"`{problem.fn_name}`; it is called with the arguments of each test and its return value is "
                   "compared with the expected one. Do not read stdin or print the answer.")
        tests = ("`tests/public_tests.json` holds the public tests (each input is one JSON value per argument, one "
                 "per line; each output is the expected JSON value)")
    else:
        io_rule = ("/workspace/solution.py is run as a program: it reads the input from standard input and writes "
                   "the answer to standard output.")
        tests = "`tests/public_N.in` / `tests/public_N.out` hold the public tests (also in `tests/public_tests.json`)"
    return (
        f"{problem_markdown(problem)}\n"
        "## Your task\n\n"
        f"Solve the competitive programming problem above in Python 3. The problem is also in "
        f"{workdir}/problem.md. {io_rule}\n\n"
        f"In {workdir}, {tests}. Run `python3 run_tests.py` to check your solution against them (it stops at "
        f"the first failure). Hidden tests grade /workspace/solution.py in the end, {timeout:g} s per test, so "
        "make it correct on every valid input and fast enough for the constraints.\n\n"
        "When you are done, record your work as a patch: `git add -A && git diff --cached > /tmp/solution.patch`, "
        "and submit /tmp/solution.patch."
    )
