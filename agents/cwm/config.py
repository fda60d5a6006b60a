"""The CWM agent's configuration: apart from agents/cwm/agent.py so that a run's configuration (and the CLI that
builds it) does not import the model client and the openai SDK."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel


class CwmConfig(BaseModel):
    """CWM's SWERLConfig in eval mode. Without a tokenizer, tokens are estimated at `chars_per_token`."""

    tools: list[str] = ["bash", "edit", "create", "submit"]
    max_turns: int = 128  # the 128th reply is refused: at most 127 tool calls
    context_size: int = 131072
    max_action_len: int = 65536
    max_prompt_len: int = 8192  # the first user message, cut from the left
    max_user_turn_len: int = 32768  # every later message, cut from the right
    command_timeout: float = 120.0
    strict_format: bool = False  # CWM's training mode: the first format error ends the episode
    guided_format: bool = False  # vLLM's structured outputs hold each reply to the turn format (agents/cwm/guided.py)
    chars_per_token: float = 4.0
    token_exact: bool = False  # render with the model's tokenizer and send token ids (see harness/conversation.py)
    logprobs: bool = False  # record the logprob of every sampled token
    tokenizer: str | None = None  # token-exact mode: tokenizer folder or hub id (default: where the server loaded)
    cwm_source: Path | None = None  # a facebookresearch/cwm checkout: its texts and plugins are used
