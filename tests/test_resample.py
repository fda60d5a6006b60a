"""`cwm-eval resample`: rejection sampling on a finished demo run, with real containers, the real runner and
swebench's grading, the model played by a ScriptedServer (trials run one at a time, so the script's turns reach the
attempts in order: task by task in suite order, attempt by attempt). The end-to-end test trains the embedded model
on what was found, serves it with the CPU build of vLLM and compares before and after.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import jsonschema
import pytest
from helpers import edit_from_patch, run_demo, turn
from scripted_server import ScriptedServer
from tokenizers_for_tests import make_tokenizer

from harness.errors import UserError
from harness.export import schema
from harness.resample import plan, summarise
from harness.sampling import Sampling
from tasks import load_suite

CALC, INVENTORY, TEXT = "demo__calc-1", "demo__inventory-3", "demo__textutils-2"  # the suite's order
SUMMARY = turn("The patch is right; summarise.")
CONFTEST = ("import pytest\n\n\n@pytest.hookimpl(hookwrapper=True)\ndef pytest_runtest_makereport(item, call):\n"
            "    outcome = yield\n    report = outcome.get_result()\n    report.outcome = \"passed\"\n"
            "    report.longrepr = None\n")


def fix(task: str, look: bool = False, summary: bool = True) -> list[str]:
    """The reference fix as CWM tool calls: edit, diff, submit, final reply (`look` first: more turns, more tokens)."""
    patch = load_suite("demo").load([task])[0].metadata["patch"]
    turns = [turn("Look around first; this costs a turn.", "bash", "ls -R . | head -40")] if look else []
    turns += [turn("Fix the bug.", "edit", edit_from_patch(patch)),
              turn("Write the patch.", "bash", "git diff > /tmp/fix.patch"),
              turn("Submit it.", "submit", "/tmp/fix.patch")]
    return turns + ([SUMMARY] if summary else [])


def wrong() -> list[str]:
    """A patch that fixes nothing: graded unresolved."""
    return [turn("A note will do.", "bash", "echo note > NOTE.txt && git add -A && git diff --cached > /tmp/p.patch"),
            turn("Submit.", "submit", "/tmp/p.patch"), SUMMARY]


def tamper() -> list[str]:
    """A conftest.py that passes every test: swebench resolves it, flagged as test tampering."""
    return [turn("Make the tests pass.", "bash", f"cat > conftest.py <<'CWM_EOF'\n{CONFTEST}CWM_EOF"),
            turn("Patch.", "bash", "git add -A && git diff --cached > /tmp/p.patch"),
            turn("Submit.", "submit", "/tmp/p.patch"), SUMMARY]


def cwm_eval(*args, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout)


def rows(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def trial_ids(run_dir) -> dict[str, list[int]]:
    return {task.name: sorted(int(a.name) for a in task.iterdir()) for task in sorted((run_dir / "trials").iterdir())}


@pytest.fixture(scope="module")
def original(tmp_path_factory):
    """A finished run at T=0.3, 6 turns: calc-1 resolved; inventory-3 'resolved' by tampering only; textutils-2
    unresolved."""
    root = tmp_path_factory.mktemp("results")
    with ScriptedServer(fix(CALC) + tamper() + wrong()) as server:
        results = run_demo(root, "cwm", model_url=server.url, run_id="orig", max_turns=6,
                           run_options={"sampling": Sampling(temperature=0.3)})
    by_task = {r.task_id: r for r in results}
    assert by_task[CALC].resolved and not by_task[CALC].flags
    assert by_task[INVENTORY].resolved and by_task[INVENTORY].flags == ["test_tampering"]
    assert not by_task[TEXT].resolved
    return root


def test_resample_keeps_the_best_passing_attempt_of_the_unresolved_tasks(original, tmp_path):
    script = (wrong() + fix(INVENTORY, look=True) + fix(INVENTORY)  # inventory-3: fail, pass, pass (cheapest)
              + tamper() + fix(TEXT, summary=False) + wrong())  # textutils-2: rigged, error, fail
    faults = ["ok"] * 19 + ["401"]  # the 20th request (textutils-2 attempt 1's final reply): the key is refused
    out = tmp_path / "sft.jsonl"
    with ScriptedServer(script, faults=faults) as server:
        proc = cwm_eval("resample", "orig", "--k", 3, "--out", out, "--output", original, "--model-url", server.url)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    run_dir = original / "orig-resample-k3"
    # only the unresolved tasks, K attempts each; a pass by tampering does not make a task resolved
    assert trial_ids(run_dir) == {INVENTORY: [0, 1, 2], TEXT: [0, 1, 2]}
    # the run's configuration carried over: its turns and temperature, on every request
    config = json.loads((run_dir / "run.json").read_text())["config"]
    assert config["cwm"]["max_turns"] == 6 and config["sampling"]["temperature"] == 0.3
    assert config["reject_test_tampering"] is True and config["attempts"] == 3
    assert server.requests and {r["temperature"] for r in server.requests} == {0.3}
    # best-of-k: the cheaper of inventory-3's two passes; the rigged pass and the errored fix are not exported
    [row] = rows(out)
    assert row["metadata"]["task"] == INVENTORY and row["metadata"]["attempt"] == 2
    jsonschema.validate(row, schema("openai"))
    assert any("<tool: edit>" in m["content"] for m in row["messages"] if m["role"] == "assistant")
    summary = json.loads((tmp_path / "sft.summary.json").read_text())
    per_task = {t["task"]: t for t in summary["per_task"]}
    assert per_task[INVENTORY]["best"]["attempt"] == 2
    assert per_task[INVENTORY]["best"]["tokens"] < tokens_of(run_dir, INVENTORY, 1)
    assert per_task[TEXT] | {"best": None} == {"task": TEXT, "attempts": 2, "passed": 0, "errors": 1, "pass@1": 0.0,
                                               "pass@k": None, "best": None}
    assert (summary["tasks_tried"], summary["tasks_recovered"], summary["attempts"], summary["passing_attempts"],
            summary["errors"], summary["rows"]) == (2, 1, 5, 2, 1, 1)
    assert summary["pass@1"] == pytest.approx((2 / 3 + 0) / 2)
    assert summary["pass@k"] == pytest.approx(1.0)  # only inventory-3 has 3 scored attempts; textutils-2 waits
    assert "1 of 2" in proc.stdout and "unresolved tasks recovered" in proc.stdout

    # the same command again resumes: only the errored trial is redone (now it passes), then sharegpt rows
    with ScriptedServer(fix(TEXT)) as server:
        again = cwm_eval("resample", "orig", "--k", 3, "--out", tmp_path / "sg.jsonl", "--format", "sharegpt",
                         "--output", original, "--model-url", server.url)
    assert again.returncode == 0, again.stdout + again.stderr
    assert len(server.requests) == len(fix(TEXT))
    summary = json.loads((tmp_path / "sg.summary.json").read_text())
    assert (summary["tasks_recovered"], summary["attempts"], summary["errors"], summary["rows"]) == (2, 6, 0, 2)
    assert summary["pass@k"] == pytest.approx(1.0) and summary["pass@1"] == pytest.approx((2 / 3 + 1 / 3) / 2)
    picked = {r["metadata"]["task"]: r["metadata"]["attempt"] for r in rows(tmp_path / "sg.jsonl")}
    assert picked == {INVENTORY: 2, TEXT: 1}
    for row in rows(tmp_path / "sg.jsonl"):
        jsonschema.validate(row, schema("sharegpt"))


def tokens_of(run_dir, task: str, attempt: int) -> int:
    result = json.loads((run_dir / "trials" / task / str(attempt) / "result.json").read_text())
    return result["usage"]["prompt_tokens"] + result["usage"]["completion_tokens"]


def test_given_options_replace_the_runs_own(original, tmp_path):
    with ScriptedServer(wrong() + wrong()) as server:
        proc = cwm_eval("resample", "orig", "--k", 1, "--out", tmp_path / "d.jsonl", "--output", original,
                        "--model-url", server.url, "--temperature", 0.9, "--max-turns", 4, "--run-id", "overridden")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert {r["temperature"] for r in server.requests} == {0.9} and len(server.requests) == 6
    config = json.loads((original / "overridden" / "run.json").read_text())["config"]
    assert config["cwm"]["max_turns"] == 4 and config["sampling"]["temperature"] == 0.9
    assert config["sampling"]["top_p"] == 0.95 and config["cwm"]["command_timeout"] == 120.0  # not given: the run's
    assert rows(tmp_path / "d.jsonl") == [] and "0 of 2" in proc.stdout


def test_tokens_rows_from_a_token_exact_resample(original, tmp_path):
    folder = make_tokenizer("cwm", tmp_path / "tok")
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    out = tmp_path / "tokens.jsonl"
    with ScriptedServer(fix(INVENTORY) + wrong(), tokenizer=tokenizer, root=str(folder)) as server:
        proc = cwm_eval("resample", "orig", "--k", 1, "--out", out, "--format", "tokens", "--output", original,
                        "--model-url", server.url, "--token-exact", "--run-id", "tokens")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    [row] = rows(out)
    jsonschema.validate(row, schema("tokens"))
    assert row["metadata"]["task"] == INVENTORY and row["reward"] == 1.0
    sampled = [i for i, m in zip(row["input_ids"], row["loss_mask"]) if m]
    assert "<tool: edit>" in tokenizer.decode(sampled)


def test_nothing_to_resample_is_said_and_not_an_error(tmp_path):
    with ScriptedServer(fix(CALC)) as server:
        run_demo(tmp_path, "cwm", task_ids=[CALC], model_url=server.url, run_id="solved")
    proc = cwm_eval("resample", "solved", "--k", 2, "--out", tmp_path / "x.jsonl", "--output", tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "nothing to resample" in proc.stdout and "1 resolved" in proc.stdout
    assert not (tmp_path / "solved-resample-k2").exists() and not (tmp_path / "x.jsonl").exists()


def assert_one_line_error(proc: subprocess.CompletedProcess, *needles: str) -> None:
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    text = " ".join(proc.stderr.split())
    assert text.startswith("error:") and all(needle in text for needle in needles), text


@pytest.mark.parametrize("args,needles", [
    (["--k", 0], ["--k must be at least 1"]),
    (["--k", 2, "--format", "yaml"], ["unknown --format 'yaml'", "openai, sharegpt, tokens"]),
    (["--k", 2, "--evaluate"], ["--evaluate", "--train"]),
    (["--k", 2, "--format", "sharegpt", "--train", "ckpt"], ["--train reads openai or tokens rows"]),
])
def test_bad_options_are_one_line_errors(tmp_path, args, needles):
    assert_one_line_error(cwm_eval("resample", "orig", "--out", tmp_path / "x.jsonl", *args), *needles)


def test_a_run_that_is_not_there_or_not_finished(tmp_path):
    assert_one_line_error(cwm_eval("resample", "nope", "--k", 1, "--out", tmp_path / "x.jsonl", "--output", tmp_path),
                          "nope is not a run", "no run.json")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "run.json").write_text(json.dumps({"config": {"suite": "demo", "run_id": "empty"}}))
    with pytest.raises(UserError, match="no trial results yet"):
        plan(str(tmp_path / "empty"), 1, tmp_path / "elsewhere", {})


def fixture_run(root, outcomes: dict[str, list[str]], **config) -> None:
    """A fixture run `r` whose run.json holds a demo configuration (with `config` over it)."""
    from fixture_runs import write_run

    write_run(root, "r", "m", outcomes)
    run = json.loads((root / "r" / "run.json").read_text())
    (root / "r" / "run.json").write_text(json.dumps({**run, "config": {"suite": "demo", "run_id": "r", **config}}))


def test_which_tasks_are_unresolved_and_how_pass_at_k_counts(tmp_path):
    fixture_run(tmp_path, {"a-1": ["unresolved", "resolved"], "b-1": ["unresolved", "unresolved"],
                           "c-1": ["error", "error"], "d-1": ["error", "unresolved"]}, cwm={"max_turns": 7})
    planned = plan("r", 4, tmp_path, {"temperature": 0.5})
    # a-1 resolved; c-1 has no scored attempt (left out: a resume redoes it); an error does not make d-1 resolved
    assert planned.config.task_ids == ["b-1", "d-1"] and planned.selection.only_errors == ["c-1"]
    assert planned.config.attempts == 4 and planned.config.run_id == "r-resample-k4"
    assert planned.config.cwm.max_turns == 7 and planned.config.sampling.temperature == 0.5
    # pass@2 over a run's own attempts: a-1 1 of 2 -> 1.0, b-1 0 of 2 -> 0, d-1 has 1 scored (< k): left out
    numbers = summarise(tmp_path / "r", ["a-1", "b-1", "d-1"], 2)
    assert numbers["pass@k"] == pytest.approx(0.5) and numbers["pass@1"] == pytest.approx((0.5 + 0 + 0) / 3)
    assert (numbers["attempts"], numbers["errors"], numbers["tasks_recovered"]) == (5, 1, 1)
    with pytest.raises(UserError, match="--k must be at least 1"):
        plan("r", 0, tmp_path, {})
    with pytest.raises(UserError, match="concurrency"):
        plan("r", 1, tmp_path, {"concurrency": 0})
    fixture_run(tmp_path, {"a-1": ["unresolved"]}, agent="oracle")
    with pytest.raises(UserError, match="used the oracle agent"):
        plan("r", 1, tmp_path, {})
    fixture_run(tmp_path, {"a-1": ["unresolved"]}, suite="livecodebench")
    with pytest.raises(UserError, match="is a livecodebench run"):
        plan("r", 1, tmp_path, {})


def test_the_evaluation_run_keeps_the_original_configuration(tmp_path):
    from harness.resample_loop import evaluation_config

    fixture_run(tmp_path, {"a-1": ["resolved"], "b-1": ["unresolved", "unresolved"]}, attempts=2,
                sampling={"temperature": 0.3}, cwm={"max_turns": 7})
    given = {"temperature": 1.0, "max_turns": 9, "concurrency": 3}
    planned = plan("r", 4, tmp_path, given)
    assert planned.config.sampling.temperature == 1.0 and planned.config.cwm.max_turns == 9  # sampling: as given
    after = evaluation_config(planned, "http://127.0.0.1:9/v1", given)
    # the evaluation is paired with the original: its tasks, attempts, sampling and turns; only throughput may change
    assert (after.run_id, after.task_ids, after.attempts) == ("r-after-resample", ["a-1", "b-1"], 2)
    assert after.sampling.temperature == 0.3 and after.cwm.max_turns == 7 and after.concurrency == 3
    assert after.model_url == "http://127.0.0.1:9/v1" and after.model is None and not after.reject_test_tampering


def test_which_weights_training_starts_from(tmp_path):
    from harness.resample_loop import train_base

    (tmp_path / "served").mkdir()
    (tmp_path / "served" / "config.json").write_text("{}")
    assert train_base("my/model", str(tmp_path / "served"), "x") == "my/model"  # --train-model wins
    assert train_base(None, str(tmp_path / "served"), "served") == str(tmp_path / "served")
    assert train_base(None, "HuggingFaceTB/SmolLM2-135M-Instruct", "smollm2-135m") == "smollm2-135m"
    with pytest.raises(UserError, match="pass --train-model"):
        train_base(None, None, "scripted-model")


@pytest.mark.e2e
def test_the_full_loop_trains_serves_and_compares(tmp_path):
    """resample -> train sft (the embedded SmolLM2, 1 step) -> the checkpoint on CPU vLLM -> the original run's
    task again -> leaderboard and paired comparison."""
    python = os.environ.get("CWM_EVAL_VLLM_PYTHON", sys.executable)
    if subprocess.run([python, "-c", "import vllm"], capture_output=True).returncode != 0:
        pytest.fail(f"{python} has no vLLM: `make test` installs it and sets CWM_EVAL_VLLM_PYTHON")
    results, checkpoint = tmp_path / "results", tmp_path / "ckpt"
    with ScriptedServer(wrong()) as server:  # 5 turns of at most 32 tokens: short on CPU
        run_demo(results, "cwm", task_ids=[INVENTORY], model_url=server.url, run_id="orig", max_turns=5,
                 max_action_len=32, run_options={"sampling": Sampling(temperature=0.3)})
    with ScriptedServer(fix(INVENTORY)) as server:
        proc = cwm_eval("resample", "orig", "--k", 1, "--out", tmp_path / "sft.jsonl", "--output", results,
                        "--model-url", server.url, "--train", checkpoint, "--train-model", "smollm2-135m",
                        "--train-max-steps", 1, "--train-max-len", 2048, "--evaluate", timeout=1800)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert len(rows(tmp_path / "sft.jsonl")) == 1
    assert (checkpoint / "config.json").is_file() and len(rows(checkpoint / "metrics.jsonl")) == 1
    after = results / "orig-after-resample"
    recorded = json.loads((after / "run.json").read_text())
    assert recorded["model"] == "ckpt" and recorded["config"]["sampling"]["temperature"] == 0.3
    assert recorded["config"]["cwm"]["max_turns"] == 5 and recorded["config"]["reject_test_tampering"] is False
    assert trial_ids(after) == {INVENTORY: [0]}  # the original run's tasks and attempts
    assert "# Leaderboard" in proc.stdout and "scripted-model" in proc.stdout and "ckpt" in proc.stdout
    assert "orig vs orig-after-resample" in proc.stdout and "McNemar" in proc.stdout
    assert subprocess.run(["pgrep", "-f", str(checkpoint)], capture_output=True).returncode == 1  # server stopped
