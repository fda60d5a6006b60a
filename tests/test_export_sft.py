"""Export -> SFT end to end: real demo runs (real runner, real containers, a scripted model) are exported by
`cwm-eval export` and trained on as they are: the `openai` file by `cwm-eval train sft` and by TRL's
`SFTTrainer`, the `tokens` file by `cwm-eval train sft` with exactly its stored ids and loss mask."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import edit_from_patch, run_demo, turn
from safetensors.torch import load_file
from scripted_server import ScriptedServer
from transformers import AutoTokenizer
from typer.testing import CliRunner

import trainer.sft
from harness.cli import app
from harness.serve import EMBEDDED
from tasks import load_suite
from trainer import metrics
from trainer.modeling import TokenLoss
from trainer.packing import IGNORE

MAX_LEN = 4096  # above every row here: nothing may be cut


def cwm_eval(*args: str) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "harness.cli", *args], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def openai_file(tmp_path_factory) -> Path:
    """Two real runs, one resolved and one out of turns, exported as `openai` rows through the CLI."""
    root = tmp_path_factory.mktemp("chat-runs")
    patch = next(iter(load_suite("demo").load(["demo__calc-1"]))).metadata["patch"]
    fix = [turn("Fix the median.", "edit", edit_from_patch(patch)),
           turn("Write the patch.", "bash", "git diff > /tmp/fix.patch && head -3 /tmp/fix.patch"),
           turn("Submit it.", "submit", "/tmp/fix.patch"), turn("Summarise.")]
    with ScriptedServer(fix) as server:
        [resolved] = run_demo(root, "cwm", task_ids=["demo__calc-1"], model_url=server.url, run_id="fix")
    with ScriptedServer([turn("Look.", "bash", "ls"), turn("Read.", "bash", "cat README.md")]) as server:
        [failed] = run_demo(root, "cwm", task_ids=["demo__textutils-2"], model_url=server.url, max_turns=2,
                            run_id="look")
    assert (resolved.outcome.value, failed.outcome.value) == ("resolved", "unresolved")
    out = root / "openai.jsonl"
    cwm_eval("export", str(root / "fix"), str(root / "look"), "--select", "all", "--format", "openai",
             "--out", str(out))
    assert len(lines(out)) == 2
    return out


def test_the_openai_export_trains_with_cwm_eval_train_sft(openai_file, model_path, tmp_path):
    out = tmp_path / "sft"
    proc = cwm_eval("train", "sft", "--model", EMBEDDED, "--data", str(openai_file), "--out", str(out),
                    "--max-steps", "1", "--lr", "1e-3", "--max-len", str(MAX_LEN), "--batch-tokens", str(MAX_LEN))
    summary = json.loads((out / "data_summary.json").read_text())
    assert summary["rows"] == summary["used"] == 2, proc.stdout
    assert summary["refused"] == {} and summary["truncated"] == 0 and summary["formats"] == {"openai": 2}
    (record,) = metrics.read(out)
    assert math.isfinite(record["loss"]) and record["loss"] > 0
    assert record["loss_tokens"] == summary["loss_tokens"]  # both rows, every assistant token, in the one step
    trained, base = load_file(out / "model.safetensors"), load_file(model_path / "model.safetensors")
    assert set(trained) == set(base)
    assert any(not torch.equal(trained[k], base[k]) for k in base)


def test_trl_sft_trainer_takes_the_openai_export_as_it_is(openai_file, model_path, tmp_path):
    """The file goes to TRL unchanged (its `metadata` column and `tool: NAME` roles included), in TRL's
    conversational format. TRL's assistant-only loss needs `{% generation %}` markers, which SmolLM2's template
    lacks and TRL cannot patch in for it, so TRL trains with its default loss here."""
    from datasets import load_dataset
    from transformers import AutoModelForCausalLM
    from trl import SFTConfig, SFTTrainer

    dataset = load_dataset("json", data_files=str(openai_file))["train"]
    assert dataset.column_names == ["messages", "metadata"]
    # TRL's own length limit and one row per step: the point is that TRL prepares every row and trains
    config = SFTConfig(output_dir=str(tmp_path / "trl"), max_length=1024, per_device_train_batch_size=1,
                       max_steps=1, learning_rate=1e-5, bf16=False, activation_checkpointing=False, logging_steps=1,
                       save_strategy="no", report_to="none", dataloader_num_workers=0, disable_tqdm=True, seed=0)
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32)
    sft = SFTTrainer(model=model, args=config, train_dataset=dataset,
                     processing_class=AutoTokenizer.from_pretrained(model_path))
    assert len(sft.train_dataset) == len(dataset)  # no row dropped in TRL's own preparation
    result = sft.train()
    assert sft.state.global_step == 1
    assert math.isfinite(result.training_loss) and result.training_loss > 0


def sampled(thought: str, tool: str, body: str) -> str:
    """A reply as sampled after the agent's `<think>\\n` prefill."""
    return f"{thought}\n</think>\n<tool: {tool}>\n{body}\n</tool>"


class CharSampler:
    """The server side of a token-exact run: returns each reply one character per token, a tokenization the
    tokenizer itself would not produce (as a real sampler may), so that re-encoding the text cannot give back
    the stored ids."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.eos_token_id = tokenizer.eos_token_id

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        return [i for c in text for i in self.tokenizer.encode(c, add_special_tokens=False)]


@pytest.fixture(scope="module")
def tokens_file(tmp_path_factory, model_path) -> Path:
    """A token-exact run of two trials with SmolLM2's own tokenizer, exported as `tokens` rows."""
    root = tmp_path_factory.mktemp("token-runs")
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    script = [sampled("Look.", "bash", "ls"), sampled("Read it.", "bash", "cat README.md"),
              sampled("Where am I?", "bash", "pwd"), sampled("Check the tests.", "bash", "ls tests")]
    with ScriptedServer(script, tokenizer=CharSampler(tokenizer), root=str(model_path)) as server:
        run_demo(root, "cwm", task_ids=["demo__calc-1", "demo__textutils-2"], model_url=server.url, max_turns=2,
                 token_exact=True, logprobs=True)
    out = root / "tokens.jsonl"
    cwm_eval("export", str(root / "test-run"), "--format", "tokens", "--out", str(out))
    return out


class RecordingLoss(TokenLoss):
    """The trainer's own loss, keeping every micro-batch it is given."""

    batches: list = []

    def forward(self, batch):
        RecordingLoss.batches.append(batch)
        return super().forward(batch)


def rows_seen(batches) -> list[tuple[list[int], list[int]]]:
    """(ids, targets) of every row in the micro-batches, packed rows split apart by their segment."""
    seen = []
    for batch in batches:
        for b in range(batch.input_ids.shape[0]):
            for segment in batch.segments[b].unique().tolist():
                if segment >= 0:
                    where = batch.segments[b] == segment
                    seen.append((batch.input_ids[b][where].tolist(), batch.targets[b][where].tolist()))
    return seen


def expected_targets(row: dict) -> list[int]:
    """Position t predicts token t+1, in the loss exactly where the stored mask of t+1 is 1; the last predicts
    nothing."""
    ids, mask = row["input_ids"], row["loss_mask"]
    return [ids[t + 1] if mask[t + 1] else IGNORE for t in range(len(ids) - 1)] + [IGNORE]


def test_the_tokens_export_trains_on_exactly_its_stored_ids_and_mask(tokens_file, model_path, tmp_path,
                                                                      monkeypatch):
    rows = lines(tokens_file)
    assert len(rows) == 2
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    for row in rows:  # the stored ids are not what re-encoding their text gives
        text = tokenizer.decode(row["input_ids"], skip_special_tokens=False, clean_up_tokenization_spaces=False)
        assert tokenizer.encode(text, add_special_tokens=False) != row["input_ids"]
        assert row["loss_mask"][0] == 0 and 0 < sum(row["loss_mask"]) < len(row["loss_mask"])
    monkeypatch.setattr(trainer.sft, "TokenLoss", RecordingLoss)
    monkeypatch.setattr(RecordingLoss, "batches", [])
    out = tmp_path / "sft"
    result = CliRunner().invoke(app, ["train", "sft", "--model", EMBEDDED, "--data", str(tokens_file), "--out",
                                      str(out), "--max-steps", "1", "--max-len", str(MAX_LEN), "--batch-tokens",
                                      str(MAX_LEN)])
    assert result.exit_code == 0, result.output + repr(result.exception)
    summary = json.loads((out / "data_summary.json").read_text())
    assert summary["used"] == 2 and summary["refused"] == {} and summary["truncated"] == 0
    seen = rows_seen(RecordingLoss.batches)
    want = [(row["input_ids"], expected_targets(row)) for row in rows]
    assert sorted(seen) == sorted(want)  # both rows, whole, with their own mask and nothing else
    (record,) = metrics.read(out)
    assert record["loss_tokens"] == sum(sum(row["loss_mask"][1:]) for row in rows)
    assert math.isfinite(record["loss"]) and (out / "model.safetensors").exists()
