"""Export formats against their JSON Schemas, rejection sampling, token round-trips, secret scrubbing."""

from __future__ import annotations

import json

import jsonschema
import pytest
from fixture_runs import write_run
from helpers import run_demo, turn
from scripted_server import ScriptedServer
from tokenizers_for_tests import make_tokenizer
from transformers import AutoTokenizer

from harness.export import export, schema
from harness.redact import REDACTED
from test_secrets import MUST_KEEP, MUST_REDACT

SECRETS = ["sk-proj-Abcdefghijklmnop1234567890", "hf_abcdefghijklmnopqrstuvwxyz12", "hunter2", "s3cr3t-token-value"]


def rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_formats_follow_their_schemas_and_secrets_do_not_survive(tmp_path):
    planted = (f"echo OPENAI_API_KEY={SECRETS[0]} HF_TOKEN={SECRETS[1]}; "
               f"echo https://bot:{SECRETS[2]}@git.example.com/x.git?access_token={SECRETS[3]}")
    with ScriptedServer([turn("Show the environment.", "bash", planted)]) as server:
        run_demo(tmp_path, "cwm", task_ids=["demo__calc-1"], model_url=server.url, max_turns=1)
    trajectory = (tmp_path / "test-run/trials/demo__calc-1/0/trajectory.jsonl").read_text()
    assert all(secret in trajectory for secret in SECRETS)  # the run itself keeps everything
    for fmt in ("openai", "sharegpt"):
        out = tmp_path / f"{fmt}.jsonl"
        summary = export([tmp_path / "test-run"], select="failed", fmt=fmt, out=out)
        assert summary["rows"] == 1 and summary["per_suite"] == {"demo": 1}
        for row in rows(out):
            jsonschema.validate(row, schema(fmt))
            assert row["metadata"]["failure_reason"].startswith("turn_limit")
        text = out.read_text()
        assert not any(secret in text for secret in SECRETS) and "[REDACTED]" in text
    assert export([tmp_path / "test-run"], select="passed", fmt="openai", out=tmp_path / "none.jsonl")["rows"] == 0


def test_best_of_k_keeps_the_passing_trajectory_with_fewest_tokens(tmp_path):
    write_run(tmp_path, "r", "m", {"t-1": ["resolved", "resolved", "unresolved"], "t-2": ["resolved", "error"]},
              tokens_of=lambda task, attempt: {0: 3000, 1: 1200, 2: 10}[attempt])
    out = tmp_path / "sft.jsonl"
    summary = export([tmp_path / "r"], select="passed", fmt="openai", best_of_k=True, out=out)
    picked = {r["metadata"]["task"]: r["metadata"]["attempt"] for r in rows(out)}
    assert picked == {"t-1": 1, "t-2": 0} and summary["rows"] == 2
    dupes = export([tmp_path / "r"], select="all", fmt="sharegpt", dedupe=True, out=tmp_path / "d.jsonl")
    assert dupes["rows"] + dupes["duplicates"] == 4


def test_best_of_k_breaks_a_token_tie_by_fewest_turns(tmp_path):
    # attempts 0 and 2 pass with the same tokens; attempt 2, found later, took fewer turns; attempt 1 failed
    write_run(tmp_path, "r", "m", {"t-1": ["resolved", "unresolved", "resolved"]},
              tokens_of=lambda task, attempt: 500 if attempt == 1 else 2000,
              turns_of=lambda task, attempt: {0: 9, 1: 2, 2: 4}[attempt])
    out = tmp_path / "sft.jsonl"
    assert export([tmp_path / "r"], select="passed", fmt="openai", best_of_k=True, out=out)["rows"] == 1
    assert [r["metadata"]["attempt"] for r in rows(out)] == [2]


def test_tokens_format_round_trips(tmp_path):
    folder = make_tokenizer("cwm", tmp_path / "tok")
    tokenizer = AutoTokenizer.from_pretrained(folder)
    script = [turn("Look.", "bash", "ls"), turn("Again.", "bash", "pwd")]
    with ScriptedServer(script, tokenizer=tokenizer, root=str(folder)) as server:
        run_demo(tmp_path, "cwm", task_ids=["demo__calc-1"], model_url=server.url, max_turns=2, token_exact=True,
                 logprobs=True)
    out = tmp_path / "tokens.jsonl"
    assert export([tmp_path / "test-run"], select="all", fmt="tokens", out=out)["rows"] == 1
    [row] = rows(out)
    jsonschema.validate(row, schema("tokens"))
    events = [json.loads(l) for l in (tmp_path / "test-run/trials/demo__calc-1/0/trajectory.jsonl").read_text()
              .splitlines()]
    text = tokenizer.decode(row["input_ids"])
    for event in events:
        if event.get("kind") == "message":
            assert event["content"] in text  # every stored message is in the decoded sequence
    sampled = [i for i, m in zip(row["input_ids"], row["loss_mask"]) if m]
    assert tokenizer.decode(sampled, skip_special_tokens=True) == "".join(
        e["content"] for e in events if e.get("role") == "assistant")
    assert row["reward"] == 0.0 and len(row["policy_versions"]) == 2


def plant(root, run_id, texts, tokens=False):
    """A fixture run of one failed trial whose tool observations are `texts` (token-exact when `tokens`)."""
    write_run(root, run_id, "m", {"t-1": ["unresolved"]})
    events = [{"kind": "message", "role": "system", "content": "system prompt"},
              {"kind": "message", "role": "user", "content": "fix t-1\n* Remaining tokens: 127000"}]
    events += [{"kind": "message", "role": "tool", "content": text} for text in texts]
    if tokens:
        events.append({"kind": "tokens", "input_ids": [1, 2, 3], "loss_mask": [0, 1, 1], "logprobs": [None, -0.1, -0.2]})
    (root / run_id / "trials/t-1/0/trajectory.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    return root / run_id


@pytest.mark.parametrize("fmt", ["openai", "sharegpt"])
def test_export_rows_lose_secrets_and_keep_ordinary_text(tmp_path, fmt):
    run = plant(tmp_path, "r", [text for text, _ in MUST_REDACT] + MUST_KEEP)
    out = tmp_path / f"{fmt}.jsonl"
    assert export([run], select="all", fmt=fmt, out=out)["rows"] == 1
    [row] = rows(out)
    jsonschema.validate(row, schema(fmt))
    texts = [t["content" if fmt == "openai" else "value"] for t in row["messages" if fmt == "openai" else "conversations"]]
    redacted, kept = texts[2:2 + len(MUST_REDACT)], texts[2 + len(MUST_REDACT):]
    for (original, secret), text in zip(MUST_REDACT, redacted):
        assert secret not in text and REDACTED in text, original
    assert kept == MUST_KEEP and texts[1] == "fix t-1\n* Remaining tokens: 127000"


def test_tokens_rows_holding_a_secret_are_dropped_and_counted(tmp_path):
    clean = plant(tmp_path / "a", "clean", MUST_KEEP, tokens=True)
    leaky = plant(tmp_path / "b", "leaky", ["ls", 'cat .env\n{"api_key": "sk-abcdefghijklmnopqrstuvwx123456"}'],
                  tokens=True)
    out = tmp_path / "tokens.jsonl"
    summary = export([clean, leaky], select="all", fmt="tokens", out=out)
    assert summary["rows"] == 1 and summary["dropped_secrets"] == 1
    [row] = rows(out)
    jsonschema.validate(row, schema("tokens"))
    assert row["metadata"]["run"] == "clean" and row["input_ids"] == [1, 2, 3]


def test_bad_options_are_one_line_errors(tmp_path):
    from harness.errors import UserError

    with pytest.raises(UserError, match="--select passed"):
        export([], select="failed", fmt="openai", best_of_k=True, out=tmp_path / "x")
