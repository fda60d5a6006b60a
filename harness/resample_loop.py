"""After a resample: SFT on its data, the trained checkpoint served by vLLM, the original run's tasks run again with
it, and the two runs side by side (`resample --train OUT --evaluate`).

The evaluation run uses the original run's configuration unchanged (agent, sampling, limits, grading, attempts), so
that before and after are paired task by task; only the model endpoint differs, and how fast trials run
(`--concurrency`, `--max-model-requests`, `--max-starting-containers`) may be set anew.
"""

from __future__ import annotations

import socket
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from harness.config import RunConfig
from harness.errors import UserError
from harness.resample import Plan
from harness.serve import EMBEDDED, Preset, VllmServer, embedded_preset, resolve_preset

# options of the resample command that also shape the evaluation run: throughput only, never what is measured
EVALUATION_OVERRIDES = ("concurrency", "max_model_requests", "max_starting_containers")


def train_base(choice: str | None, served_root: str | None, served_model: str | None) -> str:
    """The weights SFT starts from: `--train-model`, else the served model's local folder, else the embedded model
    when that is what the run talked to."""
    if choice:
        return choice
    if served_root and Path(served_root, "config.json").is_file():
        return str(Path(served_root).resolve())
    if served_model == EMBEDDED:
        return EMBEDDED
    raise UserError(f"cannot tell which weights the run's model ({served_model}) has: pass --train-model "
                    f"({EMBEDDED} or a local HF model folder)")


def train(data: Path, out: Path, base: str, *, max_steps: int | None, lr: float, max_len: int, log=print) -> dict:
    """`cwm-eval train sft` on the resample's rows; the trained model is the plain HF folder `out`."""
    from trainer.sft import SftConfig, run_sft

    config = SftConfig(model=base, data=[data], out=out, lr=lr, max_len=max_len, batch_tokens=max(16384, max_len),
                       max_steps=max_steps)
    return run_sft(config, log=log)


def checkpoint_preset(folder: Path, base: str) -> Preset:
    """How to serve the trained folder: as its base is served (the embedded model's CPU settings), under the
    folder's name."""
    if base == EMBEDDED:
        embedded = embedded_preset()
        return Preset(name="local", model=str(folder.resolve()), served_name=folder.name, args=embedded.args,
                      env=embedded.env)
    return resolve_preset(str(folder))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serving(folder: Path, base: str, log=print, ready_timeout: float = 900) -> Iterator[VllmServer]:
    """The trained checkpoint on vLLM at a free port, stopped (its whole process group) however the block ends."""
    server = VllmServer(checkpoint_preset(folder, base), port=free_port(), log_path=folder / "vllm.log")
    log(f"serving the trained model {folder} at {server.url} (log: {server.log_path})")
    server.start()
    try:
        server.wait_ready(ready_timeout)
        yield server
    finally:
        server.stop()


def evaluation_config(plan: Plan, url: str, given: dict[str, Any], run_id: str | None = None) -> RunConfig:
    """The original run's configuration against the trained model, on every task the original run holds."""
    from harness.resample import by_task

    update = {"run_id": run_id or f"{plan.source.name}-after-resample", "output": plan.config.output,
              "model_url": url, "model": None, "task_ids": sorted(by_task(plan.source)),
              **{name: given[name] for name in EVALUATION_OVERRIDES if name in given}}
    return plan.original.model_copy(update=update)


def side_by_side(before: Path, after: Path) -> tuple[str, dict]:
    """The leaderboard of both runs (Markdown) and their paired comparison (report --compare's numbers)."""
    from harness import report

    frame = report.load_results([before, after])
    board = report.leaderboard(frame)
    return report.markdown(board, {}), report.compare(frame, before.name, after.name)
