"""The HTML report: one self-contained leaderboard page (inline plots, sortable tables, no network needed) that
links to a page per trial showing its trajectory, final patch and test results."""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from harness.redact import scrub  # noqa: E402
from harness.report import FOOTNOTE, MISSING, display, heading  # noqa: E402

STYLE = """body{font-family:system-ui,sans-serif;margin:2em;color:#222}table{border-collapse:collapse;margin:1em 0}
th,td{border:1px solid #ccc;padding:4px 8px;text-align:left;font-size:14px}th{background:#f3f3f3;cursor:pointer}
pre{background:#f7f7f7;padding:8px;white-space:pre-wrap;word-break:break-word}.add{color:#0a7d27}.del{color:#b3261e}
.hunk{color:#6f42c1}.turn{border-left:4px solid #ddd;padding-left:1em;margin:1em 0}.tool{border-color:#7aa7e0}
.error{border-color:#e0a07a}img{max-width:100%}"""
SORT_JS = """document.querySelectorAll('table.sortable th').forEach((th,i)=>th.addEventListener('click',()=>{
const t=th.closest('table'),b=t.tBodies[0],r=[...b.rows],d=th.dataset.d=th.dataset.d==='a'?'d':'a';
r.sort((x,y)=>{const p=x.cells[i].innerText,q=y.cells[i].innerText,m=parseFloat(p),n=parseFloat(q);
const c=isNaN(m)||isNaN(n)?p.localeCompare(q):m-n;return d==='a'?c:-c});r.forEach(x=>b.appendChild(x))}));"""


# counts script errors on the page, and marks it ready once every script ran (the browser test reads both)
WATCH_ERRORS = ("window.addEventListener('error',()=>{document.documentElement.dataset.errors="
                "(+document.documentElement.dataset.errors||0)+1});")


def page(title: str, body: str) -> str:
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{STYLE}</style><script>{WATCH_ERRORS}</script></head><body>{body}"
            f"<script>{SORT_JS}document.body.dataset.ready='1';</script></body></html>")


def table(frame: pd.DataFrame, links: dict[int, str] | None = None) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    rows = []
    for i, record in enumerate(frame.itertuples(index=False)):
        cells = [MISSING if v is None or (isinstance(v, float) and v != v) else f"{v:.1f}" if isinstance(v, float)
                 else html.escape(str(v)) for v in record]
        if links and i in links:
            cells[0] = f"<a href='{html.escape(links[i])}'>{cells[0]}</a>"
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return f"<table class='sortable'><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def figure_png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return f"<img alt='plot' src='data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}'>"


def plots(board: pd.DataFrame, frame: pd.DataFrame) -> str:
    names = [f"{m} | {c} | {s}" for m, c, s in zip(board["model"], board["config"], board["suite"])]
    fig, ax = plt.subplots(figsize=(8, 0.5 + 0.4 * len(board)))
    errors = [(board["resolved_pct"] - board["ci95_low"]).fillna(0), (board["ci95_high"] - board["resolved_pct"]).fillna(0)]
    ax.barh(names, board["resolved_pct"], xerr=errors, color="#7aa7e0", capsize=4)
    ax.set_xlabel("resolved % (95% Wilson interval, clustered by task)")
    ax.set_xlim(0, 100)
    parts = [figure_png(fig)]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3))
    scored = frame[frame["outcome"] != "error"]
    for (key, group) in scored.groupby(["model", "config"]):
        label = " | ".join(key)
        axes[0].hist(group["turns"], bins=20, alpha=0.6, label=label)
        axes[1].hist(group["prompt_tokens"] + group["completion_tokens"], bins=20, alpha=0.6, label=label)
    axes[0].set_xlabel("turns per trial")
    axes[1].set_xlabel("tokens per trial")
    axes[0].legend(fontsize=7)
    parts.append(figure_png(fig))
    return "".join(parts)


def diff_html(patch: str) -> str:
    lines = []
    for line in patch.splitlines():
        kind = "add" if line.startswith("+") else "del" if line.startswith("-") else "hunk" if line.startswith("@@") else ""
        lines.append(f"<span class='{kind}'>{html.escape(line)}</span>")
    return "<pre>" + "\n".join(lines) + "</pre>"


def turn_html(event: dict) -> str:
    role, content = event.get("role", ""), str(event.get("content", ""))
    if role == "assistant":
        thinking, _, response = content.rpartition("</think>") if "</think>" in content else ("", "", content)
        budget = f" · {event.get('completion_tokens', 0)} tokens, {event.get('finish_reason')}"
        return (f"<div class='turn'><b>assistant, turn {event.get('turn')}</b>{html.escape(budget)}"
                f"<details><summary>thinking</summary><pre>{html.escape(thinking)}</pre></details>"
                f"<pre>{html.escape(response)}</pre></div>")
    kind = "tool" if role.startswith("tool") else "error" if content.startswith("FormatError") else ""
    body = content if len(content) < 20000 else content[:20000] + "\n[... cut in this view]"
    if role == "system":
        return f"<details><summary>system prompt</summary><pre>{html.escape(body)}</pre></details>"
    return f"<div class='turn {kind}'><b>{html.escape(role)}</b><pre>{html.escape(body)}</pre></div>"


def trajectory_page(result_path: Path) -> str:
    """One trial's page; every string on it has its secrets redacted (harness/redact.py)."""
    result = scrub(json.loads(result_path.read_text()))
    trajectory = result_path.with_name("trajectory.jsonl")
    events = [json.loads(line) for line in trajectory.read_text().splitlines()] if trajectory.exists() else []
    events = scrub(events)
    turns = "".join(turn_html(e) for e in events if e.get("kind") == "message")
    tests = result.get("verifier", {}).get("tests_status") or result.get("verifier", {})
    title = f"{result['run_id']} · {result['task_id']} · attempt {result['attempt']}"
    summary = (f"<p>outcome <b>{result['outcome']}</b>, exit status {result['exit_status']}, {result['turns']} turns, "
               f"{result['wall_seconds']:.1f} s</p>")
    return page(title, f"<h1>{html.escape(title)}</h1>{summary}<h2>Trajectory</h2>{turns}"
                       f"<h2>Final patch</h2>{diff_html(result.get('patch') or '')}"
                       f"<h2>Tests</h2><pre>{html.escape(json.dumps(tests, indent=2))}</pre>")


def write_html(board: pd.DataFrame, tables: dict[str, pd.DataFrame], frame: pd.DataFrame, out: Path) -> Path:
    """The leaderboard page at `out`, trial pages beside it under `<stem>_trials/`."""
    pages = out.parent / f"{out.stem}_trials"
    links = {}
    trials = frame.sort_values(["run_id", "task_id", "attempt"], ignore_index=True)
    for i, row in trials.iterrows():
        target = pages / row["run_id"] / row["task_id"] / f"{row['attempt']}.html"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(trajectory_page(Path(row["path"])))
        links[i] = str(target.relative_to(out.parent))
    listing = trials[["task_id", "run_id", "attempt", "model", "outcome", "exit_status", "turns", "wall_seconds"]]
    listing = listing.rename(columns={"task_id": "Task", "run_id": "Run", "attempt": "Attempt", "model": "Model",
                                      "outcome": "Outcome", "exit_status": "Exit status", "turns": "Turns",
                                      "wall_seconds": "Seconds"})
    body = [f"<h1>Leaderboard</h1>{table(display(board))}<p class='note'>{html.escape(FOOTNOTE)}</p>",
            f"<h2>Plots</h2>{plots(board, frame)}"]
    body += [f"<h2>{html.escape(heading(key))}</h2>{table(display(t))}" for key, t in tables.items()]
    body.append(f"<h2>Trials</h2>{table(listing, links)}")
    out.write_text(page("cwm-eval leaderboard", "".join(body)))
    return out
