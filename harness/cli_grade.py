"""`cwm-eval grade swebench` (external predictions, or saved logs) and `cwm-eval images prepare`."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from harness.cli import console, execute, grade_app, images_app
from harness.errors import UserError


@grade_app.command("swebench")
def grade_swebench(
    dataset: str = typer.Option(..., help="hub name, .json/.jsonl/.parquet file or swebench task repo"),
    predictions: Optional[Path] = typer.Option(None, help="predictions JSON/JSONL to grade with our runner"),
    logs: Optional[Path] = typer.Option(None, help="re-grade the test_output.txt files under this folder"),
    split: str = typer.Option("test"),
    run_id: Optional[str] = typer.Option(None),
    output: Path = typer.Option(Path("results")),
    concurrency: int = typer.Option(2, min=1),
    image_source: Optional[str] = typer.Option(None, help="prebuilt | build"),
    namespace: str = typer.Option("swebench"),
) -> None:
    """Grade predictions (a fresh container per instance) or re-grade saved logs without running anything."""
    if (predictions is None) == (logs is None):
        raise UserError("pass exactly one of --predictions FILE or --logs DIR")
    if logs is not None:
        return _regrade(dataset, split, logs)
    from agents.predictions import PredictionsAgent
    from harness.config import RunConfig, default_run_id
    from harness.run_guard import check_writable
    from tasks import load_suite
    from tasks.swebench.formats import read_predictions

    check_writable(output, "--output")
    preds = read_predictions(predictions)
    suite = load_suite("swebench", dataset, split=split, image_source=image_source, namespace=namespace)
    tasks = suite.load(sorted(preds))
    agent = PredictionsAgent(preds)
    config = RunConfig(suite="swebench", dataset=dataset, task_ids=sorted(preds), agent=agent.name,
                       run_id=run_id or default_run_id("swebench", "grade"), output=output, concurrency=concurrency)
    execute(config, suite, tasks, agent)


def _regrade(dataset: str, split: str, logs: Path) -> None:
    from tasks.swebench.dataset import Selection, load_instances
    from tasks.swebench.formats import regrade_logs

    if not logs.is_dir():
        raise UserError(f"logs folder {logs} does not exist")
    rows = {row["instance_id"]: row for row in load_instances(Selection(dataset=dataset, split=split))}
    graded = regrade_logs(logs, rows)
    if not graded:
        raise UserError(f"no test_output.txt of an instance of {dataset} under {logs}")
    table = Table("instance", "resolved", "same as saved report", "log")
    for row in graded:
        table.add_row(row["instance_id"], str(row["resolved"]), str(row["unchanged"]), row["log"])
    console.print(table)
    changed = [row for row in graded if row["unchanged"] is False]
    console.print(f"re-graded {len(graded)} logs: {sum(r['resolved'] for r in graded)} resolved, "
                  f"{len(changed)} differ from the saved report.json")


@images_app.command("prepare")
def images_prepare(
    suite: str = typer.Argument(..., help="demo | swebench"),
    dataset: Optional[str] = typer.Option(None),
    task: list[str] = typer.Option([], "--task"),
    split: str = typer.Option("test"),
    filter: Optional[str] = typer.Option(None, "--filter"),
    limit: Optional[int] = typer.Option(None, min=1),
    image_source: Optional[str] = typer.Option(None, help="prebuilt | build"),
    namespace: str = typer.Option("swebench"),
    parallel_pulls: int = typer.Option(4, min=1, help="image pulls at once"),
) -> None:
    """Pull or build every image a run will need, ahead of the run."""
    from concurrent.futures import ThreadPoolExecutor

    from tasks import load_suite
    from tasks.swebench.images import set_parallel_pulls

    set_parallel_pulls(parallel_pulls)
    the_suite = load_suite(suite, dataset, split=split, filter=filter, limit=limit, image_source=image_source,
                           namespace=namespace)
    tasks = the_suite.load(task or None)
    with ThreadPoolExecutor(max_workers=parallel_pulls) as pool:
        list(pool.map(the_suite.prepare, tasks))
    console.print(f"{len(tasks)} images ready")
