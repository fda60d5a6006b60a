"""Before RL starts: does the sampling server hand back the logprobs the objective needs, of the trainer's weights?

One probe: a fixed prompt, one token sampled at a temperature other than 1 with the top logprobs. The trainer
computes the same next-token distribution under each of vLLM's logprobs modes; the server must match
`processed_logprobs` (after temperature, as the importance ratio needs) of the trainer's weights. Another mode, or
other weights, is refused with one line.
"""

from __future__ import annotations

import httpx
import torch

from harness.errors import UserError

PROBE_TEXT = "def fibonacci(n):\n    # return the n-th Fibonacci number\n"
PROBE_TEMPERATURE = 2.0
TOP = 5


class PolicyMismatch(UserError):
    """The server's logprobs are not the trainer's processed logprobs."""


def server_logprobs(url: str, model: str, prompt: list[int]) -> dict[int, float]:
    """The server's top logprobs for the next token after `prompt`, by token id."""
    body = {"model": model, "prompt": prompt, "max_tokens": 1, "temperature": PROBE_TEMPERATURE, "top_p": 1.0,
            "logprobs": TOP, "return_tokens_as_token_ids": True}
    try:
        response = httpx.post(f"{url.rstrip('/')}/completions", json=body, timeout=120)
        top = response.json()["choices"][0]["logprobs"]["top_logprobs"][0]
        return {int(token.removeprefix("token_id:")): value for token, value in top.items()}
    except (httpx.HTTPError, KeyError, IndexError, TypeError, ValueError) as exc:
        raise PolicyMismatch(f"{url} did not answer a logprobs probe as vLLM does ({type(exc).__name__}: {exc}); "
                             "RL needs a vLLM server") from None


def trainer_modes(policy, prompt: list[int]) -> dict[str, torch.Tensor]:
    """The next-token values under each of vLLM's logprobs modes, from the trainer's weights."""
    with torch.no_grad():
        logits = policy(input_ids=torch.tensor([prompt])).logits[0, -1].float()
    return {"processed_logprobs": torch.log_softmax(logits / PROBE_TEMPERATURE, -1),
            "raw_logprobs": torch.log_softmax(logits, -1), "processed_logits": logits / PROBE_TEMPERATURE,
            "raw_logits": logits}


START_HINT = "serve the weights RL starts from (after --resume: the last pushed ones)"
PUSH_HINT = ("the in-place reload after a weight push did not take: serve with --worker-extension-cls "
             "trainer.rl.vllm_worker.PolicyReload, as `train rl` does")


def check_policy_server(url: str, model: str, policy, tokenizer, tolerance: float, hint: str = START_HINT) -> float:
    """Refuse a server whose logprobs mode or weights differ from the trainer's; returns the largest difference."""
    prompt = tokenizer.encode(PROBE_TEXT)
    served = server_logprobs(url, model, prompt)
    ids = torch.tensor(list(served))
    values = torch.tensor(list(served.values()))
    gaps = {mode: float((expected[ids] - values).abs().max()) for mode, expected in trainer_modes(policy, prompt).items()}
    if gaps["processed_logprobs"] <= tolerance:
        return gaps["processed_logprobs"]
    mode, gap = min(gaps.items(), key=lambda item: item[1])
    if gap <= tolerance or gap < gaps["processed_logprobs"] / 10:  # another mode, up to the server's precision
        raise PolicyMismatch(f"{url} returns {mode}, not processed_logprobs: serve it with --logprobs-mode "
                             "processed_logprobs (the importance weights need the sampling distribution's logprobs)")
    raise PolicyMismatch(f"{url} serves other weights than the trainer's: its logprobs differ by up to "
                         f"{gaps['processed_logprobs']:.3g} (tolerance {tolerance:g}); {hint}")
