"""Suites: one adapter per benchmark, all behind tasks.base.Suite."""

from __future__ import annotations

from pathlib import Path

from harness.errors import UserError

DEMO_PATH = Path(__file__).parent / "demo"
SUITES = ("demo", "swebench", "terminal-bench", "livecodebench", "cruxeval", "trace-prediction")
LCB = ("livecodebench",)
SAMPLED = ("livecodebench", "cruxeval", "trace-prediction")  # suites whose trials are model samples (--samples)
# `cwm-eval run` options that only some suites use: given to another suite, they are refused, not ignored
SUITE_OPTIONS = {
    "dataset": ("swebench", "terminal-bench", "livecodebench", "cruxeval", "trace-prediction"),
    "split": ("demo", "swebench", "livecodebench", "cruxeval"),
    "image_source": ("demo", "swebench"), "namespace": ("demo", "swebench"), "image_map": ("terminal-bench",),
    "agent_timeout_multiplier": ("terminal-bench",), "test_timeout_multiplier": ("terminal-bench", "livecodebench"),
    "release": LCB, "since": LCB, "until": LCB, "difficulty": LCB, "platform": LCB, "samples": SAMPLED,
    "scenario": ("demo", "swebench", "livecodebench"),
    "protocol": LCB, "lcb_source": LCB, "prompt_style": ("cruxeval",),
}


def check_suite_options(name: str, given: set[str]) -> None:
    """One line naming the first option given that suite `name` does not use."""
    if name not in SUITES:
        return  # load_suite names the valid suites
    for option, suites in SUITE_OPTIONS.items():
        if option in given and name not in suites:
            flag = "--" + option.replace("_", "-")
            raise UserError(f"suite {name} does not use {flag} (it is an option of {', '.join(suites)})")


def load_suite(name: str, dataset: str | None = None, *, selection=None, **options):
    """Suite `name`. The tasks it loads are chosen by `selection` (a tasks.selection.TaskSelection), else by the
    options task_ids, filter, limit, shuffle, seed and exclude_file; the other options are the suite's own."""
    from tasks.selection import selection_from

    chosen = selection_from(options)
    selection = selection or chosen
    if name in ("demo", "swebench"):
        return _swebench(name, dataset, selection, **options)
    if name == "terminal-bench":
        return _terminal_bench(dataset, selection, **options)
    if name == "livecodebench":
        return _livecodebench(dataset, selection, **options)
    if name == "cruxeval":
        return _cruxeval(dataset, selection, **options)
    if name == "trace-prediction":
        return _trace_prediction(dataset, selection, **options)
    raise UserError(f"unknown suite {name!r}; valid suites: {', '.join(SUITES)}")


def _swebench(name: str, dataset: str | None, selection, *, split: str = "test", image_source: str | None = None,
              namespace: str | None = "swebench", scenario: str | None = None, cwm_source=None, **_):
    from tasks.swebench.dataset import Selection
    from tasks.swebench.suite import SweBenchSuite
    from tasks.swebench.testgen import SCENARIOS, TestgenSuite, check_texts

    if (scenario or "patch") not in SCENARIOS:
        raise UserError(f"suite {name} has no --scenario {scenario!r}; use {' or '.join(SCENARIOS)}")

    if name == "demo":
        dataset = str(DEMO_PATH)
    elif not dataset:
        raise UserError("suite swebench needs --dataset: a hub name (verified, lite, SWE-bench/SWE-bench_Verified"
                        "), a .json/.jsonl/.parquet file or a swebench task repo folder")
    if scenario == "testgen":
        check_texts(cwm_source)
    cls = TestgenSuite if scenario == "testgen" else SweBenchSuite
    return cls(Selection(dataset=dataset, split=split, namespace=namespace, **selection.model_dump()), image_source,
               name=name)


def _terminal_bench(dataset: str | None, selection, *, image_map: dict[str, str] | None = None,
                    test_timeout_multiplier: float = 1.0, **_):
    from tasks.terminal_bench.suite import TerminalBenchSuite

    if not dataset:
        raise UserError("suite terminal-bench needs --dataset DIR: a folder of task folders (task.yaml or task.toml)")
    return TerminalBenchSuite(Path(dataset), image_map=image_map, test_timeout_multiplier=test_timeout_multiplier,
                              selection=selection)


def _livecodebench(dataset: str | None, selection, *, release: str | None = None, split: str = "test", since=None,
                   until=None, difficulty: list[str] | str | None = None, platform: list[str] | str | None = None,
                   scenario: str | None = None, samples: int | None = None, test_timeout: float = 6.0,
                   test_timeout_multiplier: float = 1.0, protocol: str = "cwm", cwm_source=None, lcb_source=None,
                   **_):
    from pydantic import ValidationError

    from tasks.livecodebench.dataset import CWM_WINDOWS, Selection, release_window, split_list
    from tasks.livecodebench.suite import LiveCodeBenchSuite

    try:
        tag, since, until = release_window(release, since, until)
        preset = (release or "").strip().lower() if (release or "").strip().lower() in CWM_WINDOWS else None
        lcb = Selection(dataset=dataset, release=tag, preset=preset, split=split, since=since, until=until,
                        difficulty=split_list(difficulty), platform=split_list(platform), **selection.model_dump())
    except ValidationError as exc:
        raise UserError(f"livecodebench: {exc.errors()[0]['loc'][0]}: {exc.errors()[0]['msg']} "
                        "(dates are YYYY-MM-DD)") from None
    return LiveCodeBenchSuite(lcb, scenario=scenario or "codegen", samples=10 if samples is None else samples,
                              timeout=test_timeout * test_timeout_multiplier, protocol=protocol,
                              cwm_source=cwm_source, lcb_source=lcb_source)


def _cruxeval(dataset: str | None, selection, *, split: str = "test", samples: int | None = None,
              prompt_style: str = "plain", cwm_source=None, **_):
    from tasks.cruxeval.dataset import Selection
    from tasks.cruxeval.suite import CruxEvalSuite

    return CruxEvalSuite(Selection(dataset=dataset, split=split, **selection.model_dump()), prompt_style=prompt_style,
                         samples=samples or 1, cwm_source=cwm_source)


def _trace_prediction(dataset: str | None, selection, *, samples: int | None = None, cwm_source=None, **_):
    from tasks.trace_prediction.suite import TracePredictionSuite

    return TracePredictionSuite(dataset, selection, samples=samples or 1, cwm_source=cwm_source)
