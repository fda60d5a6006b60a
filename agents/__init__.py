"""Agents: the CWM bash agent, and the model-free oracle and nop agents."""

from __future__ import annotations

from harness.errors import UserError

AGENTS = ("cwm", "oracle", "nop")


def make_agent(name: str, *, model_url: str | list[str] | None = None, model: str | None = None, cwm_config=None,
               sampling=None, max_inflight: int = 64, api_key=None):
    """`api_key` (a str or a pydantic SecretStr; default $OPENAI_API_KEY) is sent to the endpoint as the bearer key."""
    if name == "cwm":
        return _cwm_agent(model_url, model, cwm_config, sampling, max_inflight, api_key)
    if name == "codegen":  # LiveCodeBench's codegen scenario: the cwm agent's model, one call per sample
        from tasks.livecodebench.codegen import CodegenAgent

        return CodegenAgent(_cwm_agent(model_url, model, cwm_config, sampling, max_inflight, api_key))
    if name == "oracle":
        from agents.oracle import OracleAgent

        return OracleAgent()
    if name == "nop":
        from agents.oracle import NopAgent

        return NopAgent()
    raise UserError(f"unknown agent {name!r}; valid agents: {', '.join(AGENTS)}")


def _cwm_agent(model_url, model, config, sampling, max_inflight, api_key):
    from agents.cwm.agent import CwmAgent, CwmConfig
    from agents.cwm.texts import load_texts
    from harness.model import ModelClient
    from harness.serve import request_defaults_for

    config = config or CwmConfig()
    if not model_url:
        raise UserError("the cwm agent needs a model: pass --model-url URL (an OpenAI-compatible endpoint)")
    key = api_key.get_secret_value() if hasattr(api_key, "get_secret_value") else api_key
    client = ModelClient(model_url, model, api_key=key, sampling=sampling, logprobs=config.logprobs,
                         max_inflight=max_inflight)
    client.check()
    if config.token_exact and not client.vllm:
        raise UserError(f"token-exact mode needs a vLLM server (it sends token ids and reads back the sampled ids); "
                        f"{client.base_url} is not one")
    if config.guided_format and not client.vllm:
        raise UserError(f"--guided-format needs a vLLM server (it sends vLLM's structured_outputs); "
                        f"{client.base_url} is not one")
    client.request_defaults = request_defaults_for(client.model)
    renderer = _renderer(config.tokenizer or client.model_root, client.model) if config.token_exact else None
    return CwmAgent(client, config, renderer, load_texts(config.cwm_source))


def _renderer(tokenizer_path: str | None, model: str):
    from harness.conversation import ChatRenderer

    if not tokenizer_path:
        raise UserError(f"token-exact mode needs the tokenizer of {model}: pass --tokenizer PATH")
    try:
        from transformers import AutoTokenizer

        return ChatRenderer(AutoTokenizer.from_pretrained(tokenizer_path))
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot load the tokenizer from {tokenizer_path}: {exc}".splitlines()[0]) from None
