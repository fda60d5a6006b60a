"""A run's life on the command line: claim the run folder, run the trials with a live progress bar, and on
Ctrl-C or SIGTERM (to the process or its whole group) remove the run's containers and exit 130, no traceback."""

from __future__ import annotations

import asyncio
import functools
import signal
from contextlib import contextmanager
from typing import Iterator, NoReturn

import typer
from rich.text import Text

INTERRUPTED = 130


def _console():
    from harness.cli import console

    return console


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


def interrupted(run_id: str | None) -> NoReturn:
    """Remove the run's containers (a second Ctrl-C cannot cut this short) and exit 130."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    note = "interrupted"
    if run_id is not None:
        from harness.sandbox import remove_labelled

        try:
            removed, _ = remove_labelled(run_id, settle=60)
            note += f": removed {removed} containers; resume with --run-id {run_id}"
        except Exception as exc:  # noqa: BLE001 - the daemon went away too: say how to finish the clean-up
            note += f": could not remove its containers ({type(exc).__name__}); run `cwm-eval clean --run-id {run_id}`"
    _console().print(note, highlight=False)
    raise typer.Exit(INTERRUPTED)


@contextmanager
def on_interrupt(run_id: str | None) -> Iterator[None]:
    """Ctrl-C or SIGTERM inside the block: the run's containers are removed and the command exits 130."""
    signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        yield
    except KeyboardInterrupt:
        interrupted(run_id)


def exits_130(command):
    """A command that exits 130, without a traceback, when interrupted outside a run's own handling."""
    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        with on_interrupt(None):
            return command(*args, **kwargs)

    return wrapper


def execute(config, suite, tasks, agent, agent_spec: dict | None = None) -> list:
    """Run the trials with a live progress bar; then the summary, the suite's own formats and the report."""
    from harness.run_guard import claim_run

    with claim_run(config, agent.model, suite), on_interrupt(config.run_id):
        return _execute(config, suite, tasks, agent, agent_spec)


def _execute(config, suite, tasks, agent, agent_spec: dict | None) -> list:
    from harness.progress import RunProgress
    from harness.runner import Runner
    from harness.summary import diagnosis, summary_table

    console = _console()
    run_dir = config.output / config.run_id
    console.print(f"run [bold]{config.run_id}[/]: {len(tasks)} tasks x {config.attempts} attempts, agent {agent.name}"
                  + (f", model {agent.model}" if agent.model else "") + f" -> {run_dir}")
    progress = RunProgress(len(tasks) * config.attempts, console)
    runner = Runner(config, suite, agent, on_result=progress.update)
    if config.executor == "ray":
        from harness.ray_executor import RayExecutor

        runner.executor = RayExecutor(runner, agent_spec or {"name": agent.name}, config.ray_address)
    results = run_interruptible(runner, tasks, progress, config.run_id)
    console.print(summary_table(results, f"{config.run_id} ({config.suite}, {agent.name})", console.width))
    why = diagnosis(results)
    if why:
        console.print(Text.assemble(("diagnosis: ", "yellow"), why))
    texts = getattr(agent, "texts", None)
    if texts is not None and not texts.comparable:
        console.print("[yellow]note:[/] the agent used cwm-eval's own wording of CWM's prompts and messages, so these "
                      "numbers are not comparable to CWM's; pass --cwm-source DIR (a facebookresearch/cwm checkout) "
                      "to use CWM's own texts")
    finalize = getattr(suite, "finalize", None)
    if finalize is not None:  # the suite's own formats (SWE-bench: predictions, run report, gold failures)
        for line in finalize(run_dir, results, tasks):
            console.print(line)
    from harness.report import write_run_report  # pandas: imported once the trials are done

    console.print(f"report: {write_run_report(run_dir)}")
    return results


def run_interruptible(runner, tasks, progress, run_id: str) -> list:
    """Run with the live progress bar; Ctrl-C or SIGTERM removes the run's containers and exits 130.

    The first signal cancels the run's task, so every trial unwinds at its next await (removing its container);
    whatever the unwinding raises then (a container already gone, a Ray worker that got the SIGINT too) is part of
    the interruption, not an error of its own. Later signals change nothing.
    """
    signals: list[int] = []

    async def main() -> list:
        loop, task = asyncio.get_running_loop(), asyncio.current_task()

        def stop(signum: int) -> None:
            if not signals:
                task.cancel()
            signals.append(signum)

        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop, signum)
        return await runner.run(tasks)

    with on_interrupt(run_id):
        try:
            with progress:
                results = asyncio.run(main())
        except BaseException:
            if signals:
                raise KeyboardInterrupt from None
            raise
        finally:
            signal.signal(signal.SIGTERM, _raise_interrupt)  # the loop's close reset it
        if signals:
            raise KeyboardInterrupt
        return results
