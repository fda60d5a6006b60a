"""Runs inside vLLM's workers (`--worker-extension-cls trainer.rl.vllm_worker.PolicyReload`), so imports nothing
of the harness.

vLLM's in-place `reload_weights` redoes, layer by layer, what it derived from the weights at load, but only for the
layers whose weights it loaded. A model whose output projection is tied to its input embeddings (SmolLM2, the
embedded model) loads no lm_head weight, so on CPU the lm_head keeps the GEMM kernel packed from the old
embeddings: the server samples with new embeddings and the old output projection, and its logprobs are no
longer the trainer's. `reload_policy` reloads, then rebuilds that kernel.
"""

from __future__ import annotations


class PolicyReload:
    def reload_policy(self, weights_path: str) -> None:
        self.reload_weights(weights_path=weights_path)
        model = self.model_runner.get_model()
        head = getattr(model, "lm_head", None)
        if head is not None and getattr(model.config, "tie_word_embeddings", False):
            head.quant_method.process_weights_after_loading(head)
