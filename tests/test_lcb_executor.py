"""The LiveCodeBench executor grades as CWM's executor does (and as lcb_runner's under --protocol lcb_runner):
programs run in process, in real containers. Each problem's programs share one container per protocol."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
from conftest import processes

from tasks.livecodebench.dataset import Problem
from tasks.livecodebench.dataset import TestCase as Case
from tasks.livecodebench.execute import execute_problem, run_tests, write_runner

TIMEOUT = 1.0  # seconds per test: CWM's overall bound for SUM's three tests is then 3 s
SUM = Problem(question_id="sum", question_content="Print A+B.",
              public_tests=[Case(input="1 2\n", output="3\n")],
              private_tests=[Case(input="10 20\n", output="30\n"), Case(input="-5 5\n", output="0\n")])
# f(a, b) -> [[a, b], {str(a): b}]: a nested list for the tuple rules, a dict for the key rule
PAIR = Problem(question_id="pair", question_content="Return [[a, b], {str(a): b}].", metadata={"func_name": "f"},
               public_tests=[Case(input="1\n2", output='[[1, 2], {"1": 2}]', testtype="functional")],
               private_tests=[Case(input="3\n4", output='[[3, 4], {"3": 4}]', testtype="functional")])

READ_AB = "a, b = map(int, input().split())\n"
# forged verdicts on every fd: the former runner's JSON lines, and frames in this runner's format
FORGE = ("import os, pickle, struct\n"
         "lines = b'{\"event\": \"ready\"}\\n' + b'{\"status\": \"passed\"}\\n' * 3 + "
         "b'{\"status\": \"returned\", \"seconds\": 0, \"value\": \"[[1, 2], {\\\\\"1\\\\\": 2}]\"}\\n' + "
         "b'{\"status\": \"returned\", \"seconds\": 0, \"value\": \"[[3, 4], {\\\\\"3\\\\\": 4}]\"}\\n'\n"
         "frames = [('loaded',)] + [('test', i, 'passed', None, 0.0, None) for i in range(3)]\n"
         "blob = b''.join(struct.pack('>I', len(d)) + d for d in map(pickle.dumps, frames))\n"
         "for fd in range(1024):\n"
         "    for data in (lines, blob):\n"
         "        try:\n"
         "            os.write(fd, data)\n"
         "        except OSError:\n"
         "            pass\n")
STDIO_BOTH = {
    "plain": READ_AB + "print(a + b)\n",
    "wrong": READ_AB + "print(a - b)\n",
    "decimal": READ_AB + "print(f'{a + b:.2f}')\n",  # 3.00 for 3: equal as Decimals
    "buffer": "import sys\na, b = map(int, sys.stdin.buffer.read().split())\nprint(a + b)\n",
    "exit1": READ_AB + "print(a + b)\nexit(1)\n",
    "sys_exit0": "import sys\n" + READ_AB + "print(a + b)\nsys.exit(0)\n",
    "quit": READ_AB + "print(a + b)\nquit()\n",
    "iter_sys_stdin": "import sys\nfor line in sys.stdin:\n    a, b = map(int, line.split())\n    print(a + b)\n",
}
STDIO_CWM = {
    "main_last": "def main():\n    " + READ_AB + "    print(a + b)\n\nif __name__ == '__main__':\n    main()\n",
    "main_not_last": "def main():\n    " + READ_AB + "    print(a + b)\n\nif __name__ == \"__main__\":\n    main()\n"
                     "DONE = True\n",
    "global": "total = 0\n\ndef bump():\n    global total\n    total += 1\n\nbump()\n" + READ_AB + "print(a + b)\n",
    "from_stdin": "from sys import stdin\na, b = map(int, stdin.read().split())\nprint(a + b)\n",
    "iter_stdin": "for line in stdin:\n    a, b = map(int, line.split())\n    print(a + b)\n",
    "close_stdout": "import sys\n" + READ_AB + "print(a + b)\nsys.stdout.close()\n",
    "alarm_catcher": "import time\nwhile True:\n    try:\n        time.sleep(100)\n    except Exception:\n"
                     "        pass\n",
    "forger": FORGE + "print('no')\n",
}
SOLUTION = "class Solution:\n    def f(self, a, b):\n"
FUNCTIONAL = {
    "right": SOLUTION + "        print('debug output is ignored')\n        return [[a, b], {str(a): b}]\n",
    "wrong": SOLUTION + "        return [[b, a], {str(a): b}]\n",
    "first_item": SOLUTION + "        return [a, b]\n",  # == gt[0]
    "tuple": SOLUTION + "        return ([a, b], {str(a): b})\n",
    "nested_tuple": SOLUTION + "        return [(a, b), {str(a): b}]\n",
    "int_keys": SOLUTION + "        return [[a, b], {a: b}]\n",
    "equals_all": "class Anything:\n    def __eq__(self, other):\n        return True\n\n" + SOLUTION
                  + "        return Anything()\n",
    "system_exit": SOLUTION + "        raise SystemExit(0)\n",
    "forger": FORGE + SOLUTION + "        return None\n",
}


@pytest.fixture(scope="module")
def stdio(base_image) -> dict[str, dict]:
    return {"cwm": execute_problem(SUM, STDIO_BOTH | STDIO_CWM, image=base_image, timeout=TIMEOUT),
            "lcb_runner": execute_problem(SUM, STDIO_BOTH, image=base_image, timeout=TIMEOUT,
                                          protocol="lcb_runner")}


@pytest.fixture(scope="module")
def functional(base_image) -> dict[str, dict]:
    return {protocol: execute_problem(PAIR, FUNCTIONAL, image=base_image, timeout=TIMEOUT, protocol=protocol)
            for protocol in ("cwm", "lcb_runner")}


def error(result: dict) -> str:
    return result["tests"][-1].get("error", "")


def test_cwm_stdin_has_no_buffer_lcb_runners_mock_has_one(stdio):
    assert stdio["cwm"]["buffer"]["status"] == "runtime_error"
    assert "AttributeError" in error(stdio["cwm"]["buffer"]) and "buffer" in error(stdio["cwm"]["buffer"])
    assert stdio["lcb_runner"]["buffer"]["passed"]


def test_stdio_system_exit_is_swallowed_a_functional_one_fails_and_lcb_runners_guard_breaks_quit(stdio, functional):
    for protocol in ("cwm", "lcb_runner"):
        assert stdio[protocol]["exit1"]["passed"], stdio[protocol]["exit1"]
        assert stdio[protocol]["sys_exit0"]["passed"]
        result = functional[protocol]["system_exit"]
        assert result["status"] == "runtime_error" and "SystemExit" in error(result)
    assert stdio["cwm"]["quit"]["passed"]
    assert stdio["lcb_runner"]["quit"]["status"] == "runtime_error" and "NoneType" in error(stdio["lcb_runner"]["quit"])


def test_only_a_last_main_guard_is_inlined(stdio):
    assert stdio["cwm"]["main_last"]["passed"]
    result = stdio["cwm"]["main_not_last"]
    assert result["status"] == "wrong_answer" and result["tests_run"] == 1  # it printed nothing


def test_top_level_code_runs_inside_a_function_so_global_fails(stdio):
    result = stdio["cwm"]["global"]
    assert result["status"] == "runtime_error" and "NameError" in error(result)


def test_stdin_bound_at_load_is_the_real_empty_stdin_with_patched_reads(stdio):
    assert stdio["cwm"]["from_stdin"]["passed"]  # stdin.read is patched on the original object
    assert stdio["cwm"]["iter_sys_stdin"]["passed"]  # sys.stdin is a StringIO per test
    assert stdio["cwm"]["iter_stdin"]["status"] == "wrong_answer"  # the star-imported stdin iterates /dev/null
    assert stdio["lcb_runner"]["iter_sys_stdin"]["status"] == "runtime_error"  # lcb_runner's mock does not iterate


def test_closing_stdout_is_a_runtime_error(stdio):
    result = stdio["cwm"]["close_stdout"]
    assert result["status"] == "runtime_error" and "TypeError" in error(result)


def test_functional_cwm_accepts_the_first_item_and_only_top_level_tuples_become_lists(functional):
    assert functional["cwm"]["first_item"]["passed"]
    assert functional["lcb_runner"]["first_item"]["status"] == "wrong_answer"
    for protocol in ("cwm", "lcb_runner"):
        assert functional[protocol]["tuple"]["passed"]
        assert functional[protocol]["nested_tuple"]["status"] == "wrong_answer"


def test_functional_dict_keys_are_compared_as_returned(functional):
    assert functional["cwm"]["int_keys"]["status"] == "wrong_answer"


def test_functional_object_with_its_own_eq_is_a_wrong_answer_that_says_why(functional):
    for protocol in ("cwm", "lcb_runner"):
        result = functional[protocol]["equals_all"]
        assert result["status"] == "wrong_answer" and "only plain values are compared" in error(result)
        assert "Anything" in error(result)


def test_a_program_catching_the_alarm_times_out_at_the_overall_bound(stdio):
    result = stdio["cwm"]["alarm_catcher"]
    assert result["status"] == "timeout" and "overall bound (3 s)" in error(result)
    assert 2.5 <= result["tests"][-1]["seconds"] < 6


def test_forged_frames_on_every_fd_do_not_pass(stdio, functional):
    assert not stdio["cwm"]["forger"]["passed"]
    for protocol in ("cwm", "lcb_runner"):
        assert not functional[protocol]["forger"]["passed"], functional[protocol]["forger"]


def test_ordinary_programs_pass_wrong_ones_fail_and_numbers_compare_as_decimals(stdio, functional):
    for protocol in ("cwm", "lcb_runner"):
        for results, name in ((stdio, "plain"), (stdio, "decimal"), (functional, "right")):
            assert results[protocol][name]["passed"], (protocol, name, results[protocol][name])
            assert results[protocol][name]["protocol"] == protocol
            assert results[protocol][name]["tests_passed"] == results[protocol][name]["tests_total"]
        for results in (stdio, functional):
            wrong = results[protocol]["wrong"]
            assert wrong["status"] == "wrong_answer" and wrong["tests_run"] == 1  # early stop


def test_the_agents_check_reads_the_protocol_from_its_public_tests(sandbox):
    public = [{"input": "1 2\n", "output": "3\n", "public": True}]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "tests").mkdir()
        assert [p.name for p in write_runner(folder)] == ["run_tests.py", "lcb_inprocess.py"]
        (folder / "solution.py").write_text(STDIO_BOTH["buffer"])
        for protocol in ("lcb_runner", "cwm", None):
            (folder / "tests" / f"{protocol}.json").write_text(
                json.dumps({"fn_name": None, "tests": public} | ({"protocol": protocol} if protocol else {})))
        sandbox.copy_in(folder, "/workspace")
    checks = {protocol: sandbox.exec(f"python3 run_tests.py --tests tests/{protocol}.json", workdir="/workspace")
              for protocol in ("lcb_runner", "cwm", None)}
    assert checks["lcb_runner"].exit_code == 0 and "1/1 public tests passed" in checks["lcb_runner"].output
    for protocol in ("cwm", None):  # CWM's by default
        assert checks[protocol].exit_code == 1 and "AttributeError" in checks[protocol].output


def test_escaped_processes_are_killed_and_the_job_stays_unreadable(sandbox):
    codes = {"escape": "import subprocess\nsubprocess.Popen(['setsid', 'sleep', '321'])\n" + READ_AB + "print(a + b)\n",
             "cheat": "print(open('../job.json').read())\n"}
    results = run_tests(sandbox, SUM, codes=codes, timeout=TIMEOUT, protocol="cwm")
    assert results["escape"]["passed"] and results["escape"]["protocol"] == "cwm"
    assert results["cheat"]["status"] == "runtime_error" and "Permission denied" in error(results["cheat"])
    assert "sleep 321" not in processes(sandbox.id)
