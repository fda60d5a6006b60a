"""The texts of CWM's trace prompt for the suites: from `--cwm-source` (its prompting guide and debugger demo), else
from an installed `cwm` checkout that has the demo, else the built-in format facts (harness.traces.format)."""

from __future__ import annotations

from pathlib import Path

from harness.traces.format import BUILTIN_TEXTS, TraceTexts


def load_trace_texts(cwm_source: Path | None) -> TraceTexts:
    from agents.cwm import cwm_source_traces
    from agents.cwm.cwm_source import find_cwm_source

    if cwm_source is not None:
        return cwm_source_traces.load_trace_texts(Path(cwm_source))
    installed = find_cwm_source()
    if installed is not None and (installed / cwm_source_traces.TRACE_DEMO).is_file():
        return cwm_source_traces.load_trace_texts(installed)
    return BUILTIN_TEXTS


def from_cwm(texts: TraceTexts) -> bool:
    return texts != BUILTIN_TEXTS
