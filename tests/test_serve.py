"""`cwm-eval serve --dry-run`: each preset renders the right vLLM command line."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

from harness.serve import CWM_STOP_TOKEN_IDS, request_defaults_for


def dry_run(*args: str) -> list[str]:
    proc = subprocess.run([sys.executable, "-m", "harness.cli", "serve", "--dry-run", *args],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return shlex.split(proc.stdout.strip())


def flag(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


def test_cwm_preset():
    argv = dry_run("cwm", "--tp", "4", "--port", "9000", "--", "--gpu-memory-utilization", "0.85")
    at = argv.index("-m")
    assert argv[at:at + 2] == ["-m", "vllm.entrypoints.openai.api_server"]
    assert flag(argv, "--model") == "facebook/cwm"
    assert flag(argv, "--tensor-parallel-size") == "4" and flag(argv, "--max-model-len") == "131072"
    assert json.loads(flag(argv, "--default-chat-template-kwargs")) == {"enable_thinking": True,
                                                                        "preserve_previous_think": True}
    assert flag(argv, "--port") == "9000" and argv[-2:] == ["--gpu-memory-utilization", "0.85"]


def test_cwm_requests_carry_its_stop_tokens():
    defaults = request_defaults_for("facebook/cwm")
    assert defaults["stop_token_ids"] == CWM_STOP_TOKEN_IDS == [128001, 128008, 128009]
    assert defaults["chat_template_kwargs"]["enable_thinking"] is True
    assert request_defaults_for("smollm2-135m") == {}


def test_embedded_preset_serves_the_materialised_folder_on_cpu():
    argv = dry_run()  # the default model is the embedded one
    assert "VLLM_CPU_KVCACHE_SPACE=2" in argv
    assert flag(argv, "--served-model-name") == "smollm2-135m"
    assert flag(argv, "--model").endswith("models/SmolLM2-135M-Instruct")
    assert flag(argv, "--max-model-len") == "8192"


def test_local_folder_and_hub_id(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    argv = dry_run(str(tmp_path))
    assert flag(argv, "--model") == str(tmp_path) and flag(argv, "--served-model-name") == tmp_path.name
    assert flag(dry_run("Qwen/Qwen3-8B"), "--model") == "Qwen/Qwen3-8B"


def test_every_preset_serves_with_the_delta_middleware_on_the_path(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    for argv in (dry_run(), dry_run("cwm"), dry_run(str(tmp_path)), dry_run("Qwen/Qwen3-8B")):
        mounted = [argv[i + 1] for i, arg in enumerate(argv) if arg == "--middleware"]
        assert mounted == ["harness.messages_delta.MessagesDelta", "harness.prompt_delta.PromptIdsDelta"]
        assert f"PYTHONPATH={Path(__file__).resolve().parents[1]}" in argv  # where vLLM imports it from


def test_bad_model_is_one_line():
    proc = subprocess.run([sys.executable, "-m", "harness.cli", "serve", "nosuchmodel", "--dry-run"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "unknown model 'nosuchmodel'" in proc.stderr and "Traceback" not in proc.stderr
