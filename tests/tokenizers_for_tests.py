"""Small real tokenizers built offline (a BPE trained on the fly) with real chat templates.

Kinds:
- "chatml": ChatML template, GPT-2 byte-level pre-tokenization.
- "cwm": CWM's token layout (cwm-agent.md sections 3 and 11): `<|start_header_id|>ROLE<|end_header_id|>\\n\\n` + body
  + `<|eot_id|>`, BOS first; the generation prompt is the assistant header only (the renderer adds the think prefill).
- "cwm-think": the same layout, but the generation prompt injects `<think>\\n` after the assistant header (as CWM's HF
  template is believed to under `enable_thinking`, on by default here), and earlier assistant messages are rendered
  verbatim (think blocks kept, as under `preserve_previous_think`).
The cwm kinds pre-tokenize with the Llama-3 / tiktoken split pattern that CWM's tokenizer uses, so that encoding a
rendered message equals encoding its pieces (header, "\\n\\n", body) one by one, as CWM does.
"""

from __future__ import annotations

from pathlib import Path

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

CHATML = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\\nYou are a helpful AI assistant.<|im_end|>\\n' }}{% endif %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
# CWM's format (cwm-agent.md section 11); the think prefill is added by the renderer
CWM = (
    "{{ '<|begin_of_text|>' }}{% for message in messages %}"
    "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + message['content'] + '<|eot_id|>' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}"
)
# CWM's format with the think prefill injected by the template's generation prompt
CWM_THINK = (
    "{{ '<|begin_of_text|>' }}{% for message in messages %}"
    "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + message['content'] + '<|eot_id|>' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}"
    "{% if enable_thinking is not defined or enable_thinking %}{{ '<think>\\n' }}{% endif %}{% endif %}"
)
TEMPLATES = {"chatml": CHATML, "cwm": CWM, "cwm-think": CWM_THINK}
CWM_SPECIALS = ["<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]
SPECIALS = {"chatml": ["<|im_start|>", "<|im_end|>"], "cwm": CWM_SPECIALS, "cwm-think": CWM_SPECIALS}
EOS = {"chatml": "<|im_end|>", "cwm": "<|eot_id|>", "cwm-think": "<|eot_id|>"}
# the split pattern of Llama 3's (and CWM's) tiktoken tokenizer
TIKTOKEN_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                    r"|\s*[\r\n]+|\s+(?!\S)|\s+")
CORPUS = [
    "<think>\nLet me look at the repository and run the tests.\n</think>\n<tool: bash>\nls -la\n</tool>",
    "def median(values):\n    ordered = sorted(values)\n    return ordered[len(ordered) // 2]\n",
    "<output>\ncalc tests README.md\n</output>\n\n<budget>\n* Remaining turns: 3\n</budget>",
    "The quick brown fox jumps over the lazy dog. FormatError: Expected exactly one thinking end token.",
]


def make_tokenizer(kind: str, directory: Path) -> Path:
    """Train a byte-level BPE, attach the chat template, save it as an HF folder; returns the folder."""
    tokenizer = Tokenizer(models.BPE())
    if kind.startswith("cwm"):
        tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(TIKTOKEN_PATTERN), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    else:
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=SPECIALS[kind],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator(CORPUS * 5, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token=EOS[kind])
    fast.chat_template = TEMPLATES[kind]
    fast.save_pretrained(directory)
    return directory
