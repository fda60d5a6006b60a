"""Weights to the samplers, eagerly, without restarting vLLM.

Where NCCL is available vLLM's weight-transfer API is the fast path; this build (CPU, one process) uses the
portable one: save the new weights, ask every worker to reload them in place (`/collective_rpc`, served with
VLLM_SERVER_DEV_MODE=1), drop the prefix cache computed under the old weights, bump the version. Servers that
`rl_preset` starts carry the worker extension `trainer.rl.vllm_worker.PolicyReload`, whose `reload_policy` also
rebuilds what vLLM's own reload leaves stale (a tied lm_head's kernel); another server gets vLLM's `reload_weights`,
and the probe after every push (trainer.rl.server_check) refuses it if it then serves other weights.
Requests already in flight finish on whichever weights they meet; their next turn uses the new ones.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import httpx

from harness.model import PolicyClock
from harness.serve import Preset

DEV_ENV = {"VLLM_SERVER_DEV_MODE": "1"}  # enables /collective_rpc and /reset_prefix_cache
RL_ARGS = ["--logprobs-mode", "processed_logprobs"]  # logprobs after temperature/top-p, as the IS ratio needs
EXTENSION = "trainer.rl.vllm_worker.PolicyReload"


def rl_preset(model: str, served_name: str, max_model_len: int = 4096) -> Preset:
    return Preset(name="rl", model=model, served_name=served_name,
                  args=["--max-model-len", str(max_model_len), "--dtype", "float32", "--enforce-eager", *RL_ARGS,
                        "--worker-extension-cls", EXTENSION],
                  env={"VLLM_CPU_KVCACHE_SPACE": "1", **DEV_ENV})  # the project is on vLLM's path (vllm_env)


class WeightSync:
    def __init__(self, base_url: str, folder: Path, clock: PolicyClock, keep: int = 2):
        self.server = base_url.rstrip("/").removesuffix("/v1")
        self.folder = folder
        self.clock = clock
        self.keep = keep
        self.method = "reload_policy"  # ours; vLLM's reload_weights where the server lacks the extension

    def push(self, model, tokenizer) -> int:
        """Save, reload in place on the server, bump the policy version; returns the new version."""
        target = self.folder / f"v{self.clock.version + 1}"
        model.save_pretrained(target, safe_serialization=True)
        tokenizer.save_pretrained(target)
        response = self.reload(target)
        if response.status_code != 200 and self.method == "reload_policy":
            self.method = "reload_weights"
            response = self.reload(target)
        if response.status_code != 200:
            raise RuntimeError(f"the server refused the weight update ({response.status_code}): {response.text[:300]}"
                               " — is it served with VLLM_SERVER_DEV_MODE=1?")
        httpx.post(f"{self.server}/reset_prefix_cache", timeout=60)
        self.clock.version += 1
        self._drop_old()
        return self.clock.version

    def reload(self, target: Path) -> httpx.Response:
        return httpx.post(f"{self.server}/collective_rpc", timeout=600,
                          json={"method": self.method, "kwargs": {"weights_path": str(target)}})

    def _drop_old(self) -> None:
        versions = sorted(self.folder.glob("v*"), key=lambda p: int(p.name[1:]))
        for old in versions[: -self.keep]:
            shutil.rmtree(old, ignore_errors=True)
