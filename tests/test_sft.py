"""`cwm-eval train sft` on the embedded SmolLM2-135M, on CPU: masks, packing, a few real steps, exact resume, and
the trained folder served by the CPU build of vLLM."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoTokenizer

from harness.serve import EMBEDDED, Preset, VllmServer
from trainer import metrics
from trainer.data import ChatMasker, RowRefused, load_examples
from trainer.modeling import TokenLoss, load_model
from trainer.packing import collate, epoch_plan, loss_tokens
from trainer.sft import SftConfig, run_sft

MAX_LEN = 512
SYSTEM = ("You are a helpful assistant that solves software engineering tasks in a bash environment. Think step by "
          "step inside <think> tags, then call exactly one tool.\n\n# Environment\n- working directory: /testbed\n"
          "- tools: bash, edit, create, submit")


def trajectory(i: int) -> dict:
    """A row as `cwm-eval export --format openai` writes it for a short CWM-style trajectory."""
    fn = ["add", "mul", "sub", "div"][i % 4]
    turns = [
        ("<think>\nI should read calc.py first to see how {fn} is written.\n</think>\n<tool: bash>\n"
         "cat /testbed/calc.py\n</tool>", "tool: bash",
         "<output>\ndef {fn}(a, b):\n    return abs(a) + b\n</output>\n<budget>126 turns left</budget>"),
        ("<think>\nThe abs() call is the bug in {fn}.\n</think>\n<tool: edit>\n/testbed/calc.py\n<<<<<<< SEARCH\n"
         "    return abs(a) + b\n=======\n    return a + b\n>>>>>>> REPLACE\n</tool>", "tool: edit",
         "<output>\nThe file /testbed/calc.py has been edited.\n</output>"),
    ][: 1 + i % 2]
    messages = [{"role": "system", "content": SYSTEM},
                {"role": "user", "content": f"<issue_description>\ncalc.{fn} is wrong for negative numbers (case {i})."
                                            "\n</issue_description>\nFix the bug in /testbed/calc.py."}]
    for said, tool, output in turns:
        messages += [{"role": "assistant", "content": said.format(fn=fn)},
                     {"role": tool, "content": output.format(fn=fn)}]
    messages.append({"role": "assistant", "content": "<think>\nDone.\n</think>\n<tool: submit>\n/testbed/patch.diff\n"
                                                     "</tool>"})
    return {"messages": messages, "metadata": {"task": f"demo__calc-{i}", "suite": "demo", "run": "r", "attempt": 0,
                                               "reward": 1.0, "outcome": "resolved", "exit_status": "submitted"}}


def write_rows(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture(scope="module")
def tokenizer(model_path):
    return AutoTokenizer.from_pretrained(model_path)


@pytest.fixture(scope="module")
def rows_file(tmp_path_factory) -> Path:
    return write_rows(tmp_path_factory.mktemp("data") / "sft.jsonl", [trajectory(i) for i in range(6)])


def settings(rows_file: Path, out: Path, **overrides) -> SftConfig:
    base = dict(model=EMBEDDED, data=[rows_file], out=out, lr=1e-4, max_len=MAX_LEN, batch_tokens=MAX_LEN,
                max_steps=6, warmup_steps=1, save_every=0, seed=0)
    return SftConfig(**{**base, **overrides})


@pytest.fixture(scope="module")
def trained(rows_file, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "full"
    run_sft(settings(rows_file, out))
    return out


def mean_loss(model, examples) -> float:
    with torch.no_grad():
        total = sum(TokenLoss(model)(collate(examples, [[i]], pad_id=2, packed=False)).item()
                    for i in range(len(examples)))
    return total / sum(loss_tokens(examples, [[i]]) for i in range(len(examples)))


def test_chat_rows_mask_assistant_turns_only(tokenizer, rows_file):
    examples, summary = load_examples([rows_file], tokenizer, max_len=MAX_LEN, vocab_size=49152)
    assert summary.used == 6 and not summary.refused
    row = trajectory(1)
    masked = tokenizer.decode([t for t, m in zip(examples[1].input_ids, examples[1].loss_mask) if m])
    assistant = [m["content"] for m in row["messages"] if m["role"] == "assistant"]
    assert masked == "<|im_end|>".join(assistant) + "<|im_end|>"  # contents + end-of-turn, nothing else
    text = tokenizer.decode(examples[1].input_ids)
    assert "<|im_start|>tool: bash\n<output>" in text  # the tool role goes to the template as it is


def test_a_token_across_an_assistant_boundary_refuses_the_row(tokenizer, tmp_path):
    bad = trajectory(0)
    bad["messages"][2]["content"] = "  " + bad["messages"][2]["content"]  # "\n " becomes one token
    with pytest.raises(RowRefused, match="straddles"):
        ChatMasker(tokenizer).encode(bad["messages"])
    path = write_rows(tmp_path / "mixed.jsonl", [trajectory(0), bad, {"conversations": []}])
    examples, summary = load_examples([path], tokenizer, max_len=MAX_LEN, vocab_size=49152)
    assert len(examples) == 1 and sum(summary.refused.values()) == 2
    assert any("straddles" in reason for reason in summary.refused)


def test_packed_loss_equals_unpacked_loss(model_path, tokenizer, rows_file):
    examples, _ = load_examples([rows_file], tokenizer, max_len=MAX_LEN, vocab_size=49152)
    plan = epoch_plan([len(e) for e in examples], epoch=0, seed=0, max_len=MAX_LEN, batch_tokens=MAX_LEN,
                      packing=True)
    micro = next(m for m in plan if len(m[0]) > 1)  # a sequence holding several rows
    rows = [[i] for i in micro[0]]
    model = load_model(model_path, lora=False)
    with torch.no_grad():
        packed = TokenLoss(model)(collate(examples, micro, pad_id=2, packed=True))
        unpacked = TokenLoss(model)(collate(examples, rows, pad_id=2, packed=False))
    n = loss_tokens(examples, micro)
    assert n == loss_tokens(examples, rows) > 0
    assert abs(packed.item() / n - unpacked.item() / n) < 1e-4


def test_a_few_steps_lower_the_loss_on_the_trajectories(trained, model_path, tokenizer, rows_file):
    examples, _ = load_examples([rows_file], tokenizer, max_len=MAX_LEN, vocab_size=49152)
    before = mean_loss(load_model(model_path, lora=False), examples)
    after = mean_loss(load_model(trained, lora=False), examples)
    assert after < before, (before, after)
    records = metrics.read(trained)
    assert [r["step"] for r in records] == list(range(1, 7))
    assert all(r["tokens_per_s"] > 0 and r["grad_norm"] > 0 and "epoch" in r and "lr" in r for r in records)
    assert list((trained / "tb").glob("events.out.tfevents.*"))
    for name in ("config.json", "model.safetensors", "generation_config.json", "tokenizer.json"):
        assert (trained / name).exists(), name


def test_a_resumed_run_repeats_the_uninterrupted_losses(trained, rows_file, tmp_path):
    out = tmp_path / "resumed"
    first = run_sft(settings(rows_file, out, stop_after=3))
    assert first["steps"] == 3 and (out / "checkpoints" / "step-00000003" / "optimizer.pt").exists()
    assert not (out / "config.json").exists()  # no final model yet
    run_sft(settings(rows_file, out, resume=True))
    whole, resumed = metrics.read(trained), metrics.read(out)
    assert [r["step"] for r in resumed] == list(range(1, 7))
    for a, b in zip(whole, resumed):
        assert abs(a["loss"] - b["loss"]) < 1e-5 and abs(a["lr"] - b["lr"]) < 1e-12, (a, b)
    weights_a, weights_b = load_file(trained / "model.safetensors"), load_file(out / "model.safetensors")
    assert max((weights_a[k] - weights_b[k]).abs().max().item() for k in weights_a) < 1e-5


def test_tokens_rows_train_with_their_stored_mask(tokenizer, tmp_path):
    masker = ChatMasker(tokenizer)
    rows = []
    for i in range(2):
        ids, _ = masker.encode(trajectory(i)["messages"])
        mask = [0] * (len(ids) - 40) + [1] * 40  # a mask no chat rendering would give: the last 40 tokens
        rows.append({"input_ids": ids, "loss_mask": mask, "logprobs": [None] * len(ids), "policy_versions": [0],
                     "reward": 1.0, "metadata": trajectory(i)["metadata"]})
    rows.append({**rows[0], "loss_mask": rows[0]["loss_mask"][:-1]})  # one mask entry short: does not line up
    path = write_rows(tmp_path / "tokens.jsonl", rows)
    examples, summary = load_examples([path], tokenizer, max_len=MAX_LEN, vocab_size=49152)
    assert [(e.input_ids, e.loss_mask) for e in examples] == [(r["input_ids"], r["loss_mask"]) for r in rows[:2]]
    assert summary.refused == {"tokens row: loss_mask and input_ids differ in length": 1}

    out = tmp_path / "lora"  # through the CLI, with LoRA merged at the end
    proc = subprocess.run([sys.executable, "-m", "harness.cli", "train", "sft", "--model", EMBEDDED, "--data",
                           str(path), "--out", str(out), "--lora", "--lr", "1e-3", "--max-len", str(MAX_LEN),
                           "--batch-tokens", str(2 * MAX_LEN), "--max-steps", "1"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 refused" in proc.stdout and "differ in length" in proc.stdout
    (record,) = metrics.read(out)
    assert record["loss_tokens"] == 2 * 40  # exactly the stored masks
    merged = load_file(out / "model.safetensors")
    assert not any("lora" in k for k in merged)
    assert json.loads((out / "data_summary.json").read_text())["formats"] == {"tokens": 2}


@pytest.mark.e2e
def test_the_trained_folder_is_served_by_vllm(trained):
    python = os.environ.get("CWM_EVAL_VLLM_PYTHON", sys.executable)
    if subprocess.run([python, "-c", "import vllm"], capture_output=True).returncode != 0:
        pytest.fail(f"{python} has no vLLM: `make test` installs the CPU build into .venv-vllm and sets "
                    "CWM_EVAL_VLLM_PYTHON")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    preset = Preset(name="local", model=str(trained), served_name="sft-test",
                    args=["--max-model-len", "2048", "--dtype", "bfloat16", "--enforce-eager"],
                    env={"VLLM_CPU_KVCACHE_SPACE": "1"})
    server = VllmServer(preset, port=port, log_path=trained.parent / "vllm.log")
    server.start()
    try:
        server.wait_ready(600)
        reply = httpx.post(f"{server.url}/chat/completions", timeout=120, json={
            "model": "sft-test", "max_tokens": 24, "temperature": 0,
            "messages": trajectory(0)["messages"][:2]}).json()
        assert reply["choices"][0]["message"]["content"], reply
    finally:
        server.stop()
