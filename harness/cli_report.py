"""`cwm-eval report`: leaderboards across runs, breakdowns, paired comparisons; Markdown, JSON or HTML."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from harness.cli import app, console
from harness.errors import UserError


@app.command()
def report(
    runs: list[str] = typer.Argument(None, help="run folders or ids (default: every run under --results)"),
    results: Path = typer.Option(Path("results"), help="where run ids are looked up"),
    suite: Optional[str] = typer.Option(None, help="only this suite"),
    format: str = typer.Option("md", "--format", help="md | html | json"),
    out: Optional[Path] = typer.Option(None, help="write here (default: print md/json; html: results/report.html)"),
    compare: Optional[list[str]] = typer.Option(None, help="two runs: per-task flips and paired significance"),
) -> None:
    """The leaderboard: one row per (model, agent config, suite), with 95% intervals and pass@k."""
    from harness import report as reports
    from harness.run_guard import check_writable

    if format not in ("md", "html", "json"):
        raise UserError(f"unknown --format {format!r}; use md, html or json")
    if out is not None:
        check_writable(out, "--out", folder=False)
    if compare:
        if len(compare) != 2:
            raise UserError("--compare takes exactly two runs: --compare RUN_A --compare RUN_B")
        frame = reports.load_results(reports.resolve_runs(compare, results))
        outcome = reports.compare(frame, *[Path(c).name for c in compare])
        return _emit(json.dumps(outcome, indent=2) if format == "json" else compare_md(outcome), out)
    frame = reports.load_results(reports.resolve_runs(runs or [], results))
    if suite:
        frame = frame[frame["suite"] == suite]
        if frame.empty:
            raise UserError(f"no trials of suite {suite!r} in these runs")
    board, tables = reports.leaderboard(frame), reports.breakdowns(frame)
    if format == "html":
        from harness.report_html import write_html

        path = write_html(board, tables, frame, out or results / "report.html")
        console.print(f"report: {path}")
        return
    _emit(reports.as_json(board, tables) if format == "json" else reports.markdown(board, tables), out)


def compare_md(c: dict) -> str:
    low, high = c["change_ci95"]
    return (f"# {c['run_a']} vs {c['run_b']}\n\n{c['tasks']} shared tasks: {c['resolved_a_pct']:.1f}% -> "
            f"{c['resolved_b_pct']:.1f}%, change {c['change_pct']:+.1f} points (95% CI {low:+.1f} to {high:+.1f}); "
            f"exact McNemar p = {c['mcnemar_p']:.3g}\n\ngained ({len(c['gained'])}): {', '.join(c['gained']) or '-'}\n\n"
            f"lost ({len(c['lost'])}): {', '.join(c['lost']) or '-'}\n")


def _emit(text: str, out: Path | None) -> None:
    if out is None:
        print(text)
    else:
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(text)
        except OSError as exc:
            raise UserError(f"cannot write --out {out}: {exc.strerror or exc}") from None
        console.print(f"report: {out}")


@app.command()
def export(
    runs: list[str] = typer.Argument(None, help="run folders or ids (default: every run under --results)"),
    results: Path = typer.Option(Path("results"), help="where run ids are looked up"),
    select: str = typer.Option("all", help="failed | passed | all (infrastructure errors are never exported)"),
    suite: Optional[str] = typer.Option(None),
    format: str = typer.Option("openai", "--format", help="openai | sharegpt | tokens"),
    best_of_k: bool = typer.Option(False, help="per task, only the passing trajectory with the "
                                               "fewest tokens (ties: fewest turns)"),
    dedupe: bool = typer.Option(False, help="drop identical trajectories"),
    out: Path = typer.Option(Path("export.jsonl"), help="JSONL file to write"),
) -> None:
    """Trajectories as training data: passed ones for SFT, failed ones for rejection-sampling analysis."""
    from harness.export import export as do_export
    from harness.report import resolve_runs
    from harness.run_guard import check_writable

    check_writable(out, "--out", folder=False)
    summary = do_export(resolve_runs(runs or [], results), select=select, fmt=format, suite=suite,
                        best_of_k=best_of_k, dedupe=dedupe, out=out)
    per_suite = ", ".join(f"{s} {n}" for s, n in summary["per_suite"].items()) or "none"
    console.print(f"wrote {summary['rows']} rows ({summary['tokens']} tokens; {per_suite}) to {out}"
                  + (f"; skipped {summary['skipped_not_token_exact']} trajectories that are not token-exact"
                     if summary["skipped_not_token_exact"] else "")
                  + (f"; dropped {summary['duplicates']} duplicates" if summary["duplicates"] else ""))
