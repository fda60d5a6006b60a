"""LiveCodeBench: decoding, selection, extraction, pass@k, the executor in real containers, and both scenarios
end to end (codegen through the CLI, agentic through the runner) against the scripted OpenAI server."""

from __future__ import annotations

import asyncio
import base64
import json
import pickle
import subprocess
import sys
import zlib
from datetime import date
from pathlib import Path

import numpy as np
import pytest
from helpers import turn
from scripted_server import ScriptedServer

from agents import make_agent
from harness.config import RunConfig
from harness.errors import UserError
from harness.records import ExitStatus, Outcome, TrialResult
from harness.runner import Runner
from harness.sandbox import RUN_LABEL, docker_client
from tasks import load_suite
from tasks.livecodebench.dataset import Selection, decode_tests, load_problems, load_rows, release_tag
from tasks.livecodebench.execute import execute_problem
from tasks.livecodebench.extract import extract_code, extraction_failure
from tasks.livecodebench.metrics import default_ks, pass_at_k, summarize

STDIN_ID, FUNC_ID, PICKLED_ID = "abc301_a", "add-two-arrays", "1900A"
SUM_CORRECT = "import sys\na, b = map(int, sys.stdin.read().split())\nprint(a + b)\n"
SUM_WRONG = "a, b = map(int, input().split())\nprint(a - b)\n"
ADD_CORRECT = ("class Solution:\n    def addArrays(self, a: List[int], b: List[int]) -> List[int]:\n"
               "        print('debug output is ignored')\n        return [x + y for x, y in zip(a, b)]\n")
ADD_WRONG = "class Solution:\n    def addArrays(self, a, b):\n        return a\n"
MAX_CORRECT = "input()\nprint(max(map(int, input().split())))\n"


def pickled(tests: list[dict]) -> str:
    return base64.b64encode(zlib.compress(pickle.dumps(json.dumps(tests)))).decode()


def stdin_tests(pairs) -> list[dict]:
    return [{"input": i, "output": o, "testtype": "stdin"} for i, o in pairs]


PROBLEMS = [
    {"question_title": "Sum", "question_content": "Read A and B; print A+B.", "platform": "atcoder",
     "question_id": STDIN_ID, "contest_id": "abc301", "contest_date": "2023-08-01T00:00:00", "starter_code": "",
     "difficulty": "easy", "public_test_cases": json.dumps(stdin_tests([("1 2\n", "3\n")])),
     "private_test_cases": json.dumps(stdin_tests([("10 20\n", "30\n"), ("-5 5\n", "0\n")])),
     "metadata": "{}"},
    {"question_title": "Add Two Arrays", "question_content": "Return the element-wise sum of a and b.",
     "platform": "leetcode", "question_id": FUNC_ID, "contest_id": "weekly-contest-390",
     "contest_date": "2024-03-10T00:00:00",
     "starter_code": "class Solution:\n    def addArrays(self, a: List[int], b: List[int]) -> List[int]:\n        ",
     "difficulty": "medium",
     "public_test_cases": json.dumps([{"input": "[1, 2]\n[3, 4]", "output": "[4, 6]", "testtype": "functional"}]),
     "private_test_cases": json.dumps([{"input": "[]\n[]", "output": "[]", "testtype": "functional"},
                                       {"input": "[-1]\n[1]", "output": "[0]", "testtype": "functional"}]),
     "metadata": json.dumps({"func_name": "addArrays"})},
    {"question_title": "Max", "question_content": "Print the largest of N numbers.", "platform": "codeforces",
     "question_id": PICKLED_ID, "contest_id": "1900", "contest_date": "2024-09-15T00:00:00", "starter_code": "",
     "difficulty": "hard", "public_test_cases": json.dumps(stdin_tests([("3\n1 5 2\n", "5\n")])),
     "private_test_cases": pickled(stdin_tests([("1\n-7\n", "-7\n"), ("4\n9 9 1 0\n", "9\n")])),
     "metadata": "{}"},
]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("lcb") / "problems.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in PROBLEMS))
    return path


@pytest.fixture(scope="module")
def problems(dataset):
    return {p.question_id: p for p in load_problems(Selection(dataset=str(dataset)))}


def reply(code: str, thought: str = "Let me think.") -> str:
    return f"<think>\n{thought}\n```python\nprint('a draft while thinking')\n```\n</think>\nHere it is:\n" \
           f"```python\n{code}```"


# --- dataset ---------------------------------------------------------------------------------------------


def test_local_jsonl_loads_through_datasets_and_decodes_every_test_format(dataset, problems):
    import datasets

    rows = load_rows(Selection(dataset=str(dataset)))
    assert isinstance(rows, datasets.Dataset) and len(rows) == 3  # datasets.load_dataset("json", ...)
    assert list(problems) == [STDIN_ID, FUNC_ID, PICKLED_ID]
    stdin, func, pickled_one = problems[STDIN_ID], problems[FUNC_ID], problems[PICKLED_ID]
    assert stdin.contest_date.startswith("2023-08-01") and stdin.day == date(2023, 8, 1)  # string, not a timestamp
    assert stdin.fn_name is None and [t.output for t in stdin.tests] == ["3\n", "30\n", "0\n"]
    assert func.fn_name == "addArrays" and func.starter_code.startswith("class Solution")
    assert [t.input for t in func.private_tests] == ["[]\n[]", "[-1]\n[1]"]
    assert [t.input for t in pickled_one.private_tests] == ["1\n-7\n", "4\n9 9 1 0\n"]  # base64(zlib(pickle))


def test_decode_tests_accepts_json_and_pickles_of_strings_only():
    tests = stdin_tests([("1\n", "2\n")])
    assert decode_tests(json.dumps(tests))[0].output == "2\n"
    assert decode_tests(pickled(tests))[0].input == "1\n"
    assert decode_tests("") == []

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    evil = base64.b64encode(zlib.compress(pickle.dumps(Evil()))).decode()
    with pytest.raises(ValueError, match="refusing to load"):
        decode_tests(evil)


def test_filters_by_date_difficulty_platform_and_id(dataset):
    def ids(**kwargs) -> list[str]:
        return [p.question_id for p in load_problems(Selection(dataset=str(dataset), **kwargs))]

    assert ids(since=date(2024, 1, 1)) == [FUNC_ID, PICKLED_ID]
    assert ids(since=date(2024, 3, 10)) == [FUNC_ID, PICKLED_ID]  # since: inclusive
    assert ids(until=date(2024, 3, 10)) == [STDIN_ID]  # until: exclusive, as CWM's windows
    assert ids(until=date(2024, 3, 11)) == [STDIN_ID, FUNC_ID]
    assert ids(since=date(2024, 1, 1), until=date(2024, 6, 30)) == [FUNC_ID]
    assert ids(difficulty=["Easy", "hard"]) == [STDIN_ID, PICKLED_ID]
    assert ids(platform=["leetcode"]) == [FUNC_ID]
    assert ids(limit=2) == [STDIN_ID, FUNC_ID]
    assert ids(task_ids=[PICKLED_ID]) == [PICKLED_ID]
    with pytest.raises(UserError, match="unknown question id"):
        ids(task_ids=["nope"])
    assert release_tag("release_v5") == "release_v5" and release_tag("release_v2") == "release_v2"
    with pytest.raises(UserError):
        release_tag("v9")
    suite = load_suite("livecodebench", str(dataset), since="2024-01-01", difficulty=["medium,hard"],
                       scenario="agentic")
    assert [t.id for t in suite.load()] == [FUNC_ID, PICKLED_ID]
    with pytest.raises(UserError, match="YYYY-MM-DD"):
        load_suite("livecodebench", str(dataset), since="last week")


def window_rows(tmp_path: Path) -> Path:
    """Problems dated on each side of CWM's v5/v6 bounds, in a folder laid out as the hub's release files."""
    dates = {"before-v6": "2024-07-31T23:59:59", "v6-start": "2024-08-01T00:00:00", "before-v5": "2024-09-30T12:00:00",
             "v5-start": "2024-10-01T00:00:00", "v5-last": "2025-01-31T23:59:59", "v5-end": "2025-02-01T00:00:00",
             "v6-last": "2025-04-30T08:00:00", "v6-end": "2025-05-01T00:00:00"}
    rows = [{**PROBLEMS[0], "question_id": qid, "contest_date": day} for qid, day in dates.items()]
    folder = tmp_path / "hub"
    folder.mkdir()
    (folder / "test.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    for n in range(2, 7):  # release_vN adds testN.jsonl: one old problem each
        (folder / f"test{n}.jsonl").write_text(json.dumps({**PROBLEMS[0], "question_id": f"old-{n}"}) + "\n")
    return folder


def test_release_v5_and_v6_are_cwms_windows_end_exclusive(tmp_path):
    folder = window_rows(tmp_path)

    def ids(release, **options) -> list[str]:
        return sorted(t.id for t in load_suite("livecodebench", str(folder), release=release, scenario="agentic",
                                               **options).load())

    assert ids("v5") == ["v5-last", "v5-start"]
    assert ids("v6") == sorted(["v6-start", "before-v5", "v5-start", "v5-last", "v5-end", "v6-last"])
    assert len(ids("release_v6")) == 8 + 5 and len(ids("release_v5")) == 8 + 4  # the hub's whole release
    assert ids("v5", until="2025-02-02") == ["v5-end", "v5-last", "v5-start"]  # an explicit end replaces v5's
    suite = load_suite("livecodebench", str(folder), release="v6", scenario="agentic")
    assert suite.selection.preset == "v6" and suite.selection.release == "release_v6"
    assert (suite.selection.since, suite.selection.until) == (date(2024, 8, 1), date(2025, 5, 1))
    with pytest.raises(UserError, match="unknown --release"):
        load_suite("livecodebench", str(folder), release="v9")


# --- prompt, extraction, pass@k --------------------------------------------------------------------------


def test_extraction_cwm_needs_exactly_one_block_lcb_runner_takes_the_last():
    one = "</think>Sure:\n```python\nprint(1)\n```\nDone."
    two = "</think>```python\nprint(1)\n```\nor better\n```python\nprint(2)\n```"
    assert extract_code(one, "cwm").strip() == "print(1)"
    assert extract_code(two, "cwm") is None
    assert extract_code(two, "lcb_runner").strip() == "print(2)"
    assert extract_code("</think>no code", "cwm") is None and extract_code("no code", "lcb_runner") is None
    assert extract_code("</think>```\nprint(3)\n```", "cwm").strip() == "print(3)"  # no python block: any one
    assert extract_code("</think>```text\nprint(3)\n```", "cwm") == "text\nprint(3)\n"  # the word stays
    assert extract_code(reply("print(4)\n"), "cwm").strip() == "print(4)"  # the draft while thinking is not it
    with pytest.raises(ValueError, match="unknown protocol"):
        extract_code(one, "lcb")


def test_cwm_extraction_needs_a_closed_reasoning_and_takes_the_first_think_end():
    answer = "```python\nprint('answer')\n```"
    # no </think>: CWM extracts nothing, the sample fails (the old code graded the reasoning's block)
    assert extract_code(f"I will write\n{answer}", "cwm") is None
    assert "never closed its reasoning" in extraction_failure(f"I will write\n{answer}", "cwm")
    # the answer starts after the FIRST </think>: a second one is part of the answer's text
    first = f"thinking</think>\n{answer}\nlater</think>\n```python\nprint('tail')\n```"
    assert extract_code(first, "cwm") is None  # two blocks after the first </think>: none
    assert extract_code(f"thinking</think>\n{answer}\nmore</think> words", "cwm").strip() == "print('answer')"
    # the old rule (after the last </think>) took the tail block here
    assert extract_code(f"a</think>\n{answer}</think>\n```python\nprint('tail')\n```", "cwm") is None
    # lcb_runner reads the whole reply, reasoning included
    assert extract_code(f"I will write\n{answer}", "lcb_runner").strip() == "print('answer')"


def test_pass_at_k_matches_known_values_and_lcb_estimator():
    assert pass_at_k(2, 1, 1) == 0.5
    assert pass_at_k(10, 3, 1) == pytest.approx(0.3)
    assert pass_at_k(10, 3, 5) == pytest.approx(1 - 21 / 252)
    assert pass_at_k(10, 0, 10) == 0.0 and pass_at_k(10, 8, 5) == 1.0
    for n, c, k in [(10, 3, 5), (16, 4, 8), (5, 1, 2)]:  # lcb_runner's 1 - prod(1 - k / arange(n-c+1, n+1))
        assert pass_at_k(n, c, k) == pytest.approx(1 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))
    assert default_ks(10) == [1, 5, 10] and default_ks(2) == [1, 2]

    def result(task: str, attempt: int, resolved: bool) -> TrialResult:
        return TrialResult(run_id="r", suite="livecodebench", task_id=task, attempt=attempt, agent="codegen",
                           labels={"difficulty": "easy"}, exit_status=ExitStatus.SUBMITTED, started_at=0,
                           ended_at=0, wall_seconds=0,
                           outcome=Outcome.RESOLVED if resolved else Outcome.UNRESOLVED)

    metrics = summarize([result("a", 0, True), result("a", 1, False), result("b", 0, False), result("b", 1, False)])
    assert metrics["problems"]["a"]["pass@1"] == 0.5 and metrics["overall"]["pass@1"] == 0.25
    assert metrics["overall"]["pass@2"] == 0.5 and metrics["by_difficulty"]["easy"]["problems"] == 2


# --- the executor, in real containers ---------------------------------------------------------------------


def test_executor_passes_fails_and_times_out_without_hanging(problems, base_image):
    codes = {"correct": SUM_CORRECT, "wrong": SUM_WRONG, "loop": "while True:\n    pass\n",
             "syntax": "print(", "crash": "raise ValueError('no')\n", "exit": "print(3)\nexit(1)\n",
             "cheat": "print(open('../job.json').read())\n"}  # the expected outputs are the runner's alone
    results = execute_problem(problems[STDIN_ID], codes, image=base_image, timeout=1.0)
    assert results["correct"]["passed"] and results["correct"]["tests_passed"] == 3
    assert [t["public"] for t in results["correct"]["tests"]] == [True, False, False]
    assert results["wrong"]["status"] == "wrong_answer" and results["wrong"]["tests_run"] == 1  # early stop
    assert results["loop"]["status"] == "timeout" and results["loop"]["tests"][0]["code"] == -3
    assert results["syntax"]["status"] == "compile_error"
    assert results["crash"]["status"] == "runtime_error"
    assert results["exit"]["status"] == "wrong_answer"  # SystemExit is swallowed as CWM does: output is graded
    assert results["cheat"]["status"] == "runtime_error" and "Permission denied" in results["cheat"]["tests"][0]["error"]

    codes = {"correct": ADD_CORRECT, "wrong": ADD_WRONG,
             "loop": "class Solution:\n    def addArrays(self, a, b):\n        while True:\n            pass\n"}
    results = execute_problem(problems[FUNC_ID], codes, image=base_image, timeout=1.0)
    assert results["correct"]["passed"], results["correct"]
    assert results["wrong"]["status"] == "wrong_answer" and results["wrong"]["tests"][0]["output"] == "[1, 2]"
    assert results["loop"]["status"] == "timeout"


# --- codegen end to end, through the CLI -----------------------------------------------------------------


def cwm_eval(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], capture_output=True, text=True,
                          timeout=120, cwd=Path(__file__).parent.parent)


CWM_FIXTURE = Path(__file__).parent / "fixtures" / "cwm_source"


def test_codegen_scores_pass_at_1_from_samples_and_resumes(dataset, tmp_path, base_image):
    args = ["run", "livecodebench", "--dataset", str(dataset), "--task", STDIN_ID, "--samples", "2",
            "--run-id", "lcb-codegen", "--output", str(tmp_path), "--cwm-source", str(CWM_FIXTURE)]
    with ScriptedServer([reply(SUM_CORRECT), reply(SUM_WRONG)]) as server:
        proc = cwm_eval(*args, "--model-url", server.url)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert len(server.requests) == 2
        request = server.requests[0]
        assert request["messages"][0]["content"].startswith("FIXTURE BASE: Fixture assistant.")
        assert request["messages"][1]["content"].startswith("FIXTURE QUESTION <<Read A and B; print A+B.>>")
        assert request["messages"][1]["content"].endswith("FIXTURE STDIO.")
    run_dir = tmp_path / "lcb-codegen"
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["problems"][STDIN_ID]["pass@1"] == 0.5 and metrics["problems"][STDIN_ID]["n"] == 2
    assert metrics["overall"]["pass@1"] == 0.5 and metrics["overall"]["pass@2"] == 1.0
    results = [TrialResult.model_validate_json((run_dir / "trials" / STDIN_ID / str(i) / "result.json").read_text())
               for i in range(2)]
    assert sorted(r.outcome.value for r in results) == ["resolved", "unresolved"]
    for result in results:
        assert result.exit_status is ExitStatus.SUBMITTED and result.agent == "codegen"
        assert result.usage.model_calls == 1 and result.usage.completion_tokens > 0
        assert result.labels == {"difficulty": "easy", "platform": "atcoder"}
        assert result.verifier["tests"] and result.verifier["extracted"]
        assert result.verifier["protocol"] == "cwm"
    events = [json.loads(line) for line in
              (run_dir / "trials" / STDIN_ID / "0" / "trajectory.jsonl").read_text().splitlines()]
    assert [e.get("role") for e in events[:3]] == ["system", "user", "assistant"]
    assert events[2]["finish_reason"] == "stop" and events[-1]["kind"] == "end"
    run_info = json.loads((run_dir / "run.json").read_text())
    assert run_info["livecodebench"]["samples"] == 2 and run_info["livecodebench"]["protocol"] == "cwm"
    assert all("protocol=cwm" in r.config and "not comparable" not in r.config for r in results)  # the label
    assert not docker_client().containers.list(all=True, filters={"label": f"{RUN_LABEL}=lcb-codegen"})

    with ScriptedServer([]) as server:  # the same run id: both samples are finished, nothing is asked
        proc = cwm_eval(*args, "--model-url", server.url)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert server.requests == []
    assert json.loads((run_dir / "metrics.json").read_text())["problems"][STDIN_ID]["pass@1"] == 0.5


@pytest.mark.parametrize("protocol", ["cwm", "lcb_runner"])
def test_codegen_grades_an_unclosed_reasoning_by_protocol(dataset, tmp_path, base_image, protocol):
    """The same reply, a correct program but no </think>: CWM fails it, lcb_runner extracts and passes it."""
    unclosed = f"I think this works:\n```python\n{SUM_CORRECT}```"
    run_id = f"lcb-unclosed-{protocol.replace('_', '-')}"
    with ScriptedServer([unclosed]) as server:
        proc = cwm_eval("run", "livecodebench", "--dataset", str(dataset), "--task", STDIN_ID, "--samples", "1",
                        "--run-id", run_id, "--output", str(tmp_path), "--protocol", protocol,
                        "--model-url", server.url)
        assert proc.returncode == 0, proc.stdout + proc.stderr
    run_dir = tmp_path / run_id
    result = TrialResult.model_validate_json((run_dir / "trials" / STDIN_ID / "0" / "result.json").read_text())
    run_info = json.loads((run_dir / "run.json").read_text())
    assert run_info["livecodebench"]["protocol"] == protocol and f"protocol={protocol}" in result.config
    if protocol == "cwm":
        assert result.outcome is Outcome.UNRESOLVED
        assert "never closed its reasoning" in result.patch_note and not result.verifier["extracted"]
    else:
        assert result.outcome is Outcome.RESOLVED, (result.verifier, result.patch_note)


# --- agentic end to end, through the runner ---------------------------------------------------------------


def test_agentic_cwm_agent_writes_solution_and_hidden_tests_grade_it(dataset, tmp_path, base_image):
    script = [
        turn("Look at the workspace.", "bash", "ls -R /workspace && cat /workspace/problem.md"),
        turn("Write the solution.", "create", f"/workspace/solution.py\n{ADD_CORRECT}"),
        turn("Run the public tests.", "bash", "cd /workspace && python3 run_tests.py"),
        turn("Make the patch.", "bash", "cd /workspace && git add -A && git diff --cached > /tmp/solution.patch"),
        turn("Submit it.", "submit", "/tmp/solution.patch"),
        turn("Done."),
    ]
    suite = load_suite("livecodebench", str(dataset), scenario="agentic")
    tasks = suite.load([FUNC_ID])
    assert tasks[0].workdir == "/workspace" and "/workspace/solution.py" in tasks[0].instruction
    with ScriptedServer(script) as server:
        agent = make_agent("cwm", model_url=server.url)
        config = RunConfig(suite="livecodebench", agent="cwm", run_id="lcb-agentic", output=tmp_path)
        [result] = asyncio.run(Runner(config, suite, agent).run(tasks))
    assert result.outcome is Outcome.RESOLVED, (result.error, result.verifier)
    assert result.exit_status is ExitStatus.SUBMITTED
    assert result.verifier["tests_total"] == 3 and result.verifier["tests_passed"] == 3
    assert "solution.py" in result.patch
    events = [json.loads(line) for line in
              (tmp_path / "lcb-agentic" / "trials" / FUNC_ID / "0" / "trajectory.jsonl").read_text().splitlines()]
    listing = next(e for e in events if e.get("role") == "tool: bash")["content"]
    assert "public_tests.json" in listing and "[-1]" not in listing  # hidden tests are not in the workspace
    checked = [e for e in events if e.get("role") == "tool: bash"][1]["content"]
    assert "1/1 public tests passed" in checked
    assert (tmp_path / "lcb-agentic" / "trials" / FUNC_ID / "0" / "verifier" / "report.json").exists()
    lines = suite.finalize(tmp_path / "lcb-agentic", [result], tasks)
    assert "pass@1 1.000" in lines[0]
    with pytest.raises(UserError, match="no reference solutions"):
        suite.reference_solution(tasks[0])


def test_readme_examples_sample_as_each_protocol_does():
    """CWM evaluates LiveCodeBench at T=1.0, top_p=0.95, 10 samples; lcb_runner's paper setting is T=0.2."""
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    section = readme[readme.index("## LiveCodeBench"):]
    commands = [line for line in section.split("```bash", 1)[1].split("```", 1)[0].replace("\\\n", " ").splitlines()
                if line.startswith("cwm-eval run livecodebench") and "--scenario agentic" not in line
                and "--dataset" not in line]
    cwm = [c for c in commands if "--protocol lcb_runner" not in c]
    lcb = [c for c in commands if "--protocol lcb_runner" in c]
    assert cwm and lcb
    for command in cwm:
        assert "--temperature 1.0" in command and "--top-p 0.95" in command and "--samples 10" in command
        assert "--release v5" in command or "--release v6" in command
    for command in lcb:
        assert "--temperature 0.2" in command and "--samples 10" in command
