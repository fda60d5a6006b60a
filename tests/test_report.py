"""Leaderboard numbers against hand-computed values on fixture runs; the HTML page in headless Chromium."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from fixture_runs import write_run

from harness.report import as_json, breakdowns, compare, leaderboard, load_results, markdown, resolve_runs
from harness.stats import clustered_interval, effective_sample_size, mcnemar_exact, pass_at_k, wilson_interval


R, U, E = "resolved", "unresolved", "error"


@pytest.fixture
def runs(tmp_path):
    # run A: 4 tasks x 2 attempts, and one infrastructure error that must not count
    write_run(tmp_path, "run-a", "model-a", {"alpha-1": [R, R], "alpha-2": [R, U], "beta-1": [U, U],
                                             "beta-2": [U, E, R]})
    write_run(tmp_path, "run-b", "model-b", {"alpha-1": [R], "alpha-2": [U], "beta-1": [R], "beta-2": [R]})
    return tmp_path


def test_leaderboard_against_hand_computed_values(runs):
    frame = load_results(resolve_runs([], runs))
    board = leaderboard(frame).set_index("model")
    a = board.loc["model-a"]
    # per-task success: 1, 0.5, 0, 0.5 (beta-2: R and U, the error left out) -> mean 0.5
    assert a["tasks"] == 4 and a["trials"] == 8 and a["infra_errors"] == 1
    assert a["resolved_pct"] == pytest.approx(50.0)
    # task means 1, .5, 0, .5: their variance .125 = p(1-p)/2, so the design effect is 1 and n_eff = 8 trials;
    # Wilson at p = .5, n = 8: centre .5, half-width 1.96 * sqrt(.25/8 + 1.96^2/256) / (1 + 1.96^2/8) = .28478
    assert a["n_eff"] == pytest.approx(8.0)
    assert a["ci95_low"] == pytest.approx(100 * (0.5 - 0.284784), abs=1e-3)
    assert a["ci95_high"] == pytest.approx(100 * (0.5 + 0.284784), abs=1e-3)
    # k = 2: pass@2 per task = 1, 1, 0, 1 -> 75 %; pass@1 = mean(1, .5, 0, .5) = 50 %
    assert a["k"] == 2 and a["pass@k"] == pytest.approx(75.0) and a["pass@1"] == pytest.approx(50.0)
    assert a["tokens_per_s"] == pytest.approx(100 / 4.0)
    assert "infra_error 1" in a["exit_status"]
    assert board.loc["model-b", "resolved_pct"] == pytest.approx(75.0)


def test_pass_at_k_and_mcnemar():
    assert pass_at_k(10, 3, 1) == pytest.approx(0.3)
    assert pass_at_k(5, 2, 2) == pytest.approx(1 - 3 / 10)
    assert pass_at_k(4, 0, 2) == 0.0 and pass_at_k(4, 3, 2) == 1.0
    assert mcnemar_exact(0, 6) == pytest.approx(2 / 64)
    assert mcnemar_exact(2, 2) == 1.0


def test_wilson_interval_holds_at_the_bounds():
    # 3 of 3: the normal approximation said [100, 100]; Wilson's lower bound is 3 / (3 + 1.96^2) = 43.9 %
    mean, low, high = clustered_interval([[True], [True], [True]])
    assert mean == 1.0 and high == 1.0 and low == pytest.approx(3 / (3 + 1.959964 ** 2), abs=1e-6)
    assert 100 * low == pytest.approx(43.9, abs=0.05)
    mean, low, high = clustered_interval([[False], [False], [False]])
    assert mean == 0.0 and low == 0.0 and high == pytest.approx(1.959964 ** 2 / (3 + 1.959964 ** 2), abs=1e-6)
    assert wilson_interval(0.5, 100) == pytest.approx((0.4038, 0.5962), abs=1e-4)  # textbook value


def test_interval_with_several_attempts_per_task_is_clustered():
    # two tasks, three attempts each, every attempt agreeing within its task: worth two trials, not six
    alike = [[True] * 3, [False] * 3]
    assert effective_sample_size(alike) == 2.0
    assert clustered_interval(alike)[1:] == pytest.approx(wilson_interval(0.5, 2))
    # the same 3 of 6 spread within tasks: the attempts count as independent trials
    spread = [[True, False, True], [False, True, False]]
    assert effective_sample_size(spread) == 6.0
    assert clustered_interval(spread)[1:] == pytest.approx(wilson_interval(0.5, 6))
    assert clustered_interval(alike)[1] < clustered_interval(spread)[1]
    # 3 tasks x 4 attempts all resolved: no spread to measure, so one trial per task (43.9 %, not 75.8 %)
    assert clustered_interval([[True] * 4] * 3)[1] == pytest.approx(clustered_interval([[True]] * 3)[1])
    # in between: n_eff = tasks * p(1-p) / var(task means) = 3 * .25 / (1/24) = 18, capped at the 12 trials ...
    assert effective_sample_size([[1, 1, 1, 0], [0, 0, 0, 1], [1, 0, 1, 0]]) == 12.0
    # ... and 4 * .25 / (5/36) = 7.2 for task means 1, 0, 2/3, 1/3: between the 4 tasks and the 12 trials
    assert effective_sample_size([[1, 1, 1], [0, 0, 0], [1, 1, 0], [0, 0, 1]]) == pytest.approx(7.2)


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def test_markdown_leaderboard_reads_as_a_person_writes_it(runs):
    write_run(runs, "run-c", "model-c", {"alpha-1": [E], "beta-1": [E]})  # nothing scored: no numbers at all
    frame = load_results(resolve_runs([], runs))
    board, tables = leaderboard(frame), breakdowns(frame)
    text = markdown(board, tables)
    assert "nan" not in text.lower()
    headers = [line for line in text.splitlines() if line.startswith("| Model")]
    assert len(headers) == 2 and not any("_" in h for h in headers)  # plain titles, breakdown included
    title = _cells(headers[0])
    assert {"Resolved %", "95% interval", "Prompt tokens (mean)", "Infra errors (unscored)"} <= set(title)
    rows = {cells[0]: dict(zip(title, cells)) for cells in
            (_cells(line) for line in text.split("## By")[0].splitlines() if line.startswith("| model-"))}
    for row in rows.values():
        for count in ("Tasks", "Trials", "Infra errors (unscored)", "Attempts per task (k)", "Prompt tokens (mean)",
                      "Completion tokens (mean)"):
            assert row[count].isdigit() or row[count] == "\u2013", (count, row[count])  # whole numbers, no 12.0
    a = rows["model-a"]
    assert (a["Tasks"], a["Trials"], a["Infra errors (unscored)"], a["Attempts per task (k)"]) == ("4", "8", "1", "2")
    assert (a["Prompt tokens (mean)"], a["Completion tokens (mean)"]) == ("1000", "100")
    assert a["95% interval"] == "21.5\u201378.5" and a["Resolved %"] == "50.0"
    assert rows["model-c"]["Resolved %"] == rows["model-c"]["95% interval"] == "\u2013"
    assert "Wilson score interval" in text and "effective sample size" in text  # the footnote says which
    data = json.loads(as_json(board, tables))
    assert "Wilson" in data["interval_method"] and data["leaderboard"][0]["ci95_low"] is not None


def test_compare_flips_and_significance(runs):
    frame = load_results(resolve_runs(["run-a", "run-b"], runs))
    result = compare(frame, "run-a", "run-b")
    # task-level success a: 1, .5, 0, .5 vs b: 1, 0, 1, 1; a flip is crossing 0.5
    assert result["gained"] == ["beta-1"] and result["lost"] == ["alpha-2"]
    assert result["mcnemar_p"] == 1.0
    assert result["change_pct"] == pytest.approx(25.0)
    low, high = result["change_ci95"]
    assert low < 25.0 < high


def test_breakdown_by_repo_in_markdown(runs):
    proc = subprocess.run([sys.executable, "-m", "harness.cli", "report", "--results", str(runs)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "## By repo" in proc.stdout and "| model-a" in proc.stdout and "alpha" in proc.stdout


def test_html_report_in_headless_chromium(runs, tmp_path):
    out = tmp_path / "html" / "report.html"
    proc = subprocess.run([sys.executable, "-m", "harness.cli", "report", "--results", str(runs), "--format", "html",
                           "--out", str(out)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "http" not in out.read_text().split("<body>")[0]  # nothing to fetch: self-contained
    dom = subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom",
                          out.as_uri()], capture_output=True, text=True, timeout=120).stdout
    assert 'data-ready="1"' in dom and "data-errors" not in dom  # every script ran, none failed
    assert dom.count("<tr>") >= 1 + 2 + 12  # leaderboard, breakdown and trial rows
    assert "model-a" in dom and "model-b" in dom and "data:image/png;base64," in dom
    assert "nan" not in re.sub(r"data:image/png;base64,[^'\"]*", "", dom)
    assert "Resolved %" in dom and "Wilson score interval" in dom  # plain titles, the interval's method
    trial = out.parent / "report_trials" / "run-a" / "alpha-1" / "0.html"
    page = subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom",
                           trial.as_uri()], capture_output=True, text=True, timeout=120).stdout
    assert 'data-ready="1"' in page and "<details>" in page and "class=\"add\"" in page
