"""CWM's execution-trace prompt texts, loaded at run time from the user's checkout (as agents/cwm/cwm_source.py loads
the rest): the entry marker from `demos/cwmdbg.py` (its module-level `_START_MARKER`, read with `ast`; the demo needs
CWM's tokenizer and `requests`, so it is never imported) and the text around the source from `PROMPTING_GUIDE.md`
(the one code-block line holding `$CONTEXT`). CWM's trace prompt has no other text besides its special tokens.
"""

from __future__ import annotations

import ast
from pathlib import Path

from agents.cwm.source_reading import checkout_origin, not_cwm, parse_file, string_value
from harness.errors import UserError

TRACE_DEMO = "demos/cwmdbg.py"
PROMPTING_GUIDE = "PROMPTING_GUIDE.md"
CONTEXT_PLACEHOLDER = "$CONTEXT"


def load_trace_texts(root: Path):
    """CWM's trace-prompt texts from the checkout at `root`: the entry marker (the demo's module-level `_START_MARKER`,
    read with `ast`) and the text around the source (the prompting guide's layout line, the one with `$CONTEXT` in a
    code block). A `harness.traces.format.TraceTexts`; UserError when `root` does not have them."""
    from harness.traces.format import TraceTexts

    root = Path(root).expanduser()
    if not root.is_dir():
        raise UserError(f"CWM source {root}: not a directory (give the root of a facebookresearch/cwm checkout)")
    root = root.resolve()
    for name in (TRACE_DEMO, PROMPTING_GUIDE):
        if not (root / name).is_file():
            raise not_cwm(root, f"{name} not found")
    tree = parse_file(root, TRACE_DEMO)
    marker = next((string_value(node.value) for node in tree.body if isinstance(node, ast.Assign)
                   and [getattr(t, "id", None) for t in node.targets] == ["_START_MARKER"]), None)
    if not marker:
        raise not_cwm(root, f"{TRACE_DEMO} has no string constant _START_MARKER")
    prefix, suffix = _trace_layout(root)
    origin = checkout_origin(root, (TRACE_DEMO, PROMPTING_GUIDE))
    return TraceTexts(marker=marker, prefix=prefix, suffix=suffix, origin=f"CWM source {origin}")


def _trace_layout(root: Path) -> tuple[str, str]:
    """The text before and after `$CONTEXT` on the guide's one code-block line that has it."""
    lines, fenced = [], False
    for line in (root / PROMPTING_GUIDE).read_text(encoding="utf-8", errors="replace").splitlines():
        if line.strip().startswith("```"):
            fenced = not fenced
        elif fenced and CONTEXT_PLACEHOLDER in line:
            lines.append(line.strip())
    if len(lines) != 1 or lines[0].count(CONTEXT_PLACEHOLDER) != 1:
        raise not_cwm(root, f"{PROMPTING_GUIDE} has {len(lines)} code lines with {CONTEXT_PLACEHOLDER}, expected one "
                            "(the trace prompt's layout)")
    prefix, suffix = lines[0].split(CONTEXT_PLACEHOLDER)
    return prefix, suffix
