"""`cwm-eval clean`: remove the containers and networks of runs whose process is gone, never a live run's.

A container's owner is the process in its owner label (host:pid:start); a container or network without one
belongs to its run: live if another of the run's containers has a live owner or its run folder's lock is held
(under --results), gone if its owners are all gone or the folder is there unlocked, else unknown and kept.
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path
from typing import Optional

import typer

from harness.cli import app, console
from harness.errors import UserError

LIVE, GONE, UNKNOWN = "live", "gone", "unknown"


def run_states(containers: list, results: Path) -> dict[str, str]:
    """Per run id among these containers: live, gone or unknown."""
    from harness.ownership import OWNER_LABEL, owner_alive
    from harness.run_guard import lock_holder
    from harness.sandbox import RUN_LABEL

    owners: dict[str, set] = {}
    for container in containers:
        run_id = container.labels.get(RUN_LABEL, "")
        owners.setdefault(run_id, set()).add(owner_alive(container.labels.get(OWNER_LABEL)))
    states = {}
    for run_id, alive in owners.items():
        run_dir = results / run_id
        if True in alive or (run_id and lock_holder(run_dir) is not None):
            states[run_id] = LIVE
        elif False in alive or (run_id and (run_dir / "run.json").exists()):
            states[run_id] = GONE
        else:
            states[run_id] = UNKNOWN
    return states


def classify(containers: list, networks: list, results: Path) -> tuple[dict, dict]:
    """Each container and network's state: its own owner's where it has one, else its run's."""
    from harness.ownership import OWNER_LABEL, owner_alive
    from harness.sandbox import RUN_LABEL

    runs = run_states(containers, results)

    def state(thing) -> str:
        alive = owner_alive(thing.labels.get(OWNER_LABEL))
        if alive is not None:
            return LIVE if alive else GONE
        run_id = thing.labels.get(RUN_LABEL, "")
        if run_id not in runs:  # a network whose run has no container left
            runs[run_id] = run_states([thing], results)[run_id] if run_id else UNKNOWN
        return runs[run_id]

    return {c: state(c) for c in containers}, {n: state(n) for n in networks}


def confirm(question: str, refusal: str) -> None:
    """Ask on the terminal; with no terminal to ask on, refuse in one line."""
    if sys.stdin is None or not sys.stdin.isatty():
        raise UserError(refusal)
    if not typer.confirm(question, default=False):
        console.print("nothing removed")
        raise typer.Exit(1)


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _runs(things) -> str:
    from harness.sandbox import RUN_LABEL

    ids = sorted({t.labels.get(RUN_LABEL) or "?" for t in things})
    return ", ".join(ids[:5]) + (" ..." if len(ids) > 5 else "")


@app.command()
def clean(
    run_id: Optional[str] = typer.Option(None, help="remove this run's containers and networks (asks first if its "
                                                    "process still runs)"),
    everything: bool = typer.Option(False, "--all", help="remove every container and network we labelled, live "
                                                         "runs' too (asks first)"),
    yes: bool = typer.Option(False, "--yes", "-y", help="do not ask"),
    results: Path = typer.Option(Path("results"), help="results folder whose run locks tell live runs from finished "
                                                       "ones for containers without an owner label"),
) -> None:
    """Remove the containers and networks of runs whose process is gone (or one run's, or all)."""
    from harness.sandbox import labelled, remove_objects

    if everything and run_id:
        raise UserError("pass --run-id ID or --all, not both")
    containers, networks = labelled(run_id)
    states, net_states = classify(containers, networks, results)
    live = [c for c, s in states.items() if s == LIVE]
    if everything or run_id:
        if (everything or live) and not yes:
            what = "every labelled container" if everything else f"the containers of run {run_id}"
            option = "--all" if everything else f"--run-id {run_id}"
            confirm(f"remove {what} ({len(containers)}, {len(live)} of live runs)?",
                    f"clean {option} would remove {len(containers)} containers ({len(live)} of live runs): confirm "
                    "on a terminal, or pass --yes")
        removed = remove_objects(containers, networks)
        console.print(f"removed {_n(removed[0], 'container')} and {_n(removed[1], 'network')}", highlight=False)
        return
    gone = [c for c, s in states.items() if s == GONE]
    gone_nets = [n for n, s in net_states.items() if s == GONE]
    removed = remove_objects(gone, gone_nets)
    counts = Counter(states.values())
    line = f"removed {_n(removed[0], 'container')} and {_n(removed[1], 'network')} of finished runs"
    line += f" ({_runs(gone)})" if gone else ""
    if counts[LIVE]:
        line += f"; kept {_n(counts[LIVE], 'container')} of live runs ({_runs(live)})"
    if counts[UNKNOWN]:
        unknown = [c for c, s in states.items() if s == UNKNOWN]
        line += (f"; kept {_n(counts[UNKNOWN], 'container')} whose owner is unknown ({_runs(unknown)}): "
                 "`cwm-eval clean --run-id ID` or `--all` removes them")
    console.print(line, highlight=False)
