"""`cwm-eval tts`: test-time scaling over a patch run and a testgen run (or both sampled first with --k)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Optional

import typer

from harness.cli import app, console, exits_130
from harness.errors import UserError


@app.command()
@exits_130
def tts(
    suite: str = typer.Argument(..., help="demo | swebench"),
    dataset: Optional[str] = typer.Option(None, help="swebench: the runs' dataset (default: the patch run's)"),
    patches: Optional[str] = typer.Option(None, help="the patch run (id under --output, or its folder)"),
    tests: Optional[str] = typer.Option(None, help="the testgen run (id under --output, or its folder)"),
    run_id: Optional[str] = typer.Option(None, help="this tts run's id (default: <time>-<suite>-tts)"),
    output: Path = typer.Option(Path("results"), help="where runs are looked up and this one is written"),
    selector: str = typer.Option("cwm", help="cwm (most tests passed, then majority, then fewest tokens) | "
                                             "majority | first"),
    concurrency: Optional[int] = typer.Option(None, help="containers at once (default: the patch run's)"),
    test_timeout: float = typer.Option(120.0, help="seconds a generated test may run (CWM's: 120)"),
    task: Optional[list[str]] = typer.Option(None, help="only these task ids"),
    k: Optional[int] = typer.Option(None, help="sample k patches and k tests first (both runs through the "
                                                "runner, as <run-id>-patches and <run-id>-tests)"),
    model_url: Optional[str] = typer.Option(None, help="with --k: the model endpoint"),
    cwm_source: Optional[Path] = typer.Option(None, help="with --k: CWM's checkout, for its texts"),
) -> None:
    """Select one patch per task by running generated tests against candidate patches; graded by swebench."""
    from harness.config import default_run_id
    from harness.run_guard import check_writable
    from harness.tts_select import SELECTORS

    if suite not in ("demo", "swebench"):
        raise UserError(f"tts takes a SWE-bench-shaped suite (demo or swebench), not {suite!r}")
    if selector not in SELECTORS:
        raise UserError(f"unknown --selector {selector!r}; use {', '.join(SELECTORS)}")
    if concurrency is not None and concurrency < 1 or test_timeout <= 0:
        raise UserError("--concurrency must be at least 1 and --test-timeout more than 0")
    if k is None and not (patches and tests):
        raise UserError("tts needs --patches RUN and --tests RUN (or --k N to sample both first)")
    if k is not None and (patches or tests):
        raise UserError("--k samples both runs itself: give either --k or --patches and --tests")
    if k is None and (model_url or cwm_source):
        raise UserError("--model-url and --cwm-source are for sampling with --k; --patches and --tests runs are "
                        "already sampled")
    check_writable(output, "--output")
    run_id = run_id or default_run_id(suite, "tts")
    if k is not None:
        if k < 1:
            raise UserError("--k must be at least 1")
        patches, tests = sample_runs(suite, dataset, k, run_id, output, task or [], model_url, cwm_source,
                                     concurrency or 2)
    summary = run_tts(suite, dataset, patches, tests, run_id, output, selector, concurrency, test_timeout, task)
    print_summary(summary, output / run_id)


def sample_runs(suite: str, dataset: str | None, k: int, run_id: str, output: Path, task_ids: list[str],
                model_url: str | None, cwm_source: Path | None, concurrency: int) -> tuple[str, str]:
    """k patches and k tests per task, as two ordinary runs of the cwm agent through the runner (resumed when they
    exist): <run_id>-patches and <run_id>-tests (--scenario testgen)."""
    from agents import make_agent
    from agents.cwm.config import CwmConfig
    from harness.cli import resolve_cwm_source, scenario_agent
    from harness.cli_run import execute
    from harness.config import RunConfig
    from tasks import load_suite

    cwm = CwmConfig(cwm_source=resolve_cwm_source(cwm_source))
    if model_url is None:
        from harness.serve import ensure_embedded_server

        model_url = ensure_embedded_server(log=console.print)
    ids = {None: f"{run_id}-patches", "testgen": f"{run_id}-tests"}
    for scenario, sampled_id in ids.items():
        config = RunConfig(suite=suite, dataset=dataset, task_ids=task_ids, agent="cwm", model_url=model_url,
                           attempts=k, concurrency=concurrency, run_id=sampled_id, output=output, cwm=cwm,
                           scenario=scenario)
        the_suite = load_suite(suite, dataset, task_ids=task_ids, scenario=scenario, cwm_source=cwm.cwm_source)
        tasks = the_suite.load(task_ids or None)
        scenario_agent(the_suite, config, set())
        spec = {"name": "cwm", "model_url": model_url, "cwm_config": cwm, "sampling": config.sampling,
                "max_inflight": config.max_model_requests}
        agent = make_agent(**spec)
        config.model = agent.model
        execute(config, the_suite, tasks, agent, spec)
    return ids[None], ids["testgen"]


def run_tts(suite_name: str, dataset: str | None, patches_name: str, tests_name: str, run_id: str, output: Path,
            selector: str, concurrency: int | None, test_timeout: float, task_ids: list[str] | None) -> dict:
    from harness.cli_run import on_interrupt
    from harness.tts import TtsOptions, TtsRun, check_run_folder
    from harness.tts_runs import check_runs, load_candidates, load_tests, read_run
    from tasks import load_suite

    patches = read_run(patches_name, output, "--patches")
    tests = read_run(tests_name, output, "--tests")
    check_runs(suite_name, dataset, patches, tests)
    candidates, generated = load_candidates(patches), load_tests(tests)
    wanted = sorted(candidates) if not task_ids else task_ids
    missing = [t for t in wanted if t not in candidates]
    if missing:
        raise UserError(f"--patches {patches.run_id} has no scored trial of {', '.join(missing)}")
    if not wanted:
        raise UserError(f"--patches {patches.run_id} has no scored trials yet")
    the_suite = load_suite(suite_name, dataset or patches.dataset)
    tasks = the_suite.load(wanted)
    options = TtsOptions(run_id=run_id, output=output, selector=selector, test_timeout=test_timeout,
                         concurrency=concurrency or patches.concurrency or 2)
    check_run_folder(options, patches, tests)
    console.print(f"tts run [bold]{run_id}[/]: {len(tasks)} tasks, candidates from {patches.run_id}, tests from "
                  f"{tests.run_id}, selector {selector} -> {output / run_id}")
    with on_interrupt(run_id), CellProgress() as progress:
        return asyncio.run(TtsRun(the_suite, options, patches, tests, on_cell=progress.update).run(
            tasks, {t.id: candidates[t.id] for t in tasks}, {t.id: generated.get(t.id, []) for t in tasks}))


class CellProgress:
    """A live count of the cross-execution cells as they finish, by verdict."""

    def __init__(self):
        from collections import Counter

        from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        self.counts: Counter[str] = Counter()
        self.progress = Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                                 console=console, transient=False)
        self.bar = self.progress.add_task("cells: none run yet", total=None)

    def update(self, cell) -> None:
        self.counts[cell.verdict] += 1
        counts = ", ".join(f"{verdict} {n}" for verdict, n in sorted(self.counts.items()))
        self.progress.update(self.bar, description=f"cells run: {sum(self.counts.values())} ({counts})")

    def __enter__(self) -> CellProgress:
        self.progress.start()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.stop()


def print_summary(summary: dict, run_dir: Path) -> None:
    fig = summary["figures"]
    for name, key in (("pass@1", "pass@1"), (f"oracle pass@{fig['k']}", "oracle_pass@k"),
                      (f"selected ({summary['selector']})", "selected")):
        low, high = fig[key]["ci95"]
        console.print(f"{name}: {fig[key]['pct']:.1f}% (95% CI {low:.1f}\u2013{high:.1f})", highlight=False)
    lost = fig["lost_to_oracle"]
    console.print(f"selection lost against the oracle on {len(lost)} of {fig['tasks']} tasks"
                  + (f": {', '.join(lost)}" if lost else ""), highlight=False)
    if summary["cell_errors"]:
        console.print(f"[yellow]warning:[/] {summary['cell_errors']} cells failed on the infrastructure and are "
                      f"missing from the selection; run the same command again to redo them", highlight=False)
    console.print(f"cross-execution cells run: {summary['cells_run']}; predictions: {run_dir / 'predictions.jsonl'}; "
                  f"details: {run_dir / 'tts.json'}; report: {run_dir / 'report.md'}", highlight=False)
