"""The edit and create plugins: CWM's semantics on a table of cases, in our own words.

Every case states what must happen (exit status, the files afterwards, the numbers in the message,
the snippet lines shown, whether the indentation hint is given). Our plugins are checked against the
table always; CWM's original plugins are checked against the same table when a CWM checkout is
at hand (CWM_SOURCE, or the local mirror), which shows that both behave the same on every case.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

OURS = Path(__file__).resolve().parent.parent / "agents" / "cwm" / "plugins"
MIRROR = Path("/work/.mirror/facebookresearch+cwm/repo")
CWM_PLUGIN_PATH = "cwm/rl/swerl/plugins"
HEREDOC = "EOF_938176592"

SNIPPET_ROW = re.compile(r"^ *\d+\t")


@dataclass(frozen=True)
class Case:
    name: str
    tool: str  # "edit" or "create"
    body: str  # the tool body; the plugin gets body + "\n" on stdin
    files: dict = field(default_factory=dict)  # before: relative path -> bytes; "name/" -> a folder
    code: int = 0
    changed: dict = field(default_factory=dict)  # after: relative path -> bytes (or None: absent)
    numbers: list | None = field(default_factory=list)  # ints in the message; None: a traceback
    snippet: tuple | None = None  # (first, last) 1-based lines of the new file shown
    hint: bool = False  # the not-found message adds the indentation hint


def block(path: str, search: str, replace: str, tail: str = "") -> str:
    return f"{path}\n<<<<<<< SEARCH\n{search}\n=======\n{replace}\n>>>>>>> REPLACE{tail}"


F0 = b"def f(x):\n    y = x + 1\n    return y\n\nz = 1\n"
THIRTY = "".join(f"L{i:02}\n" for i in range(1, 31)).encode()
BASE = {"a.py": F0}

EDIT_CASES = [
    Case("mid-line text is not found", "edit", block("a.py", "x + 1", "x + 2"), BASE, 1, hint=True),
    Case("indented search", "edit", block("a.py", "    return y", "    return y * 2"), BASE,
         changed={"a.py": F0.replace(b"return y", b"return y * 2")}, numbers=[3, 6], snippet=(1, 6)),
    Case("indentation dropped: not found, with hint", "edit", block("a.py", "y = x + 1", "y = x + 2"),
         BASE, 1, hint=True),
    Case("first line absent: not found, no hint", "edit", block("a.py", "q = 0", "q = 1"), BASE, 1),
    Case("whitespace-only first search line always hints", "edit", block("a.py", "  \nqqq", "r"),
         BASE, 1, hint=True),
    Case("four spaces occur on lines 2 and 3", "edit", block("a.py", "    ", "  "), BASE, 1,
         numbers=[2, 3]),
    Case("a match may end mid-line", "edit", block("a.py", "    y = x", "    w = x"), BASE,
         changed={"a.py": F0.replace(b"y = x", b"w = x")}, numbers=[2, 6], snippet=(1, 6)),
    Case("overlapping occurrences count", "edit", block("b.txt", "a\na", "b"), {"b.txt": b"a\na\na\n"},
         1, numbers=[1, 2]),
    Case("text after the REPLACE marker is ignored", "edit",
         block("a.py", "    return y", "    return -y", " extra words\nmore"), BASE,
         changed={"a.py": F0.replace(b"return y", b"return -y")}, numbers=[3, 6], snippet=(1, 6)),
    Case("one blank replacement line leaves an empty line", "edit", block("a.py", "    return y", ""),
         BASE, changed={"a.py": F0.replace(b"    return y", b"")}, numbers=[3, 6], snippet=(1, 6)),
    Case("one blank search line matches at every line start", "edit", block("a.py", "", "x"), BASE, 1,
         numbers=[1, 2, 3, 4, 5, 6]),
    Case("two blank search lines match an empty line", "edit", block("a.py", "\n", "# gap"), BASE,
         changed={"a.py": b"def f(x):\n    y = x + 1\n    return y\n# gapz = 1\n"},
         numbers=[4, 5], snippet=(1, 5)),
    Case("empty SEARCH section does not parse", "edit",
         "a.py\n<<<<<<< SEARCH\n=======\nfoo\n>>>>>>> REPLACE", BASE, 1),
    Case("empty REPLACE section does not parse", "edit",
         "a.py\n<<<<<<< SEARCH\n    return y\n=======\n>>>>>>> REPLACE", BASE, 1),
    Case("no block at all does not parse", "edit", "a.py\n    return y", BASE, 1),
    Case("the path is the line right before SEARCH", "edit",
         "I will edit the file.\nnotes.txt\n" + block("a.py", "z = 1", "z = 2"), BASE,
         changed={"a.py": F0.replace(b"z = 1", b"z = 2")}, numbers=[5, 6], snippet=(1, 6)),
    Case("a leading space in the path is kept (missing)", "edit", block(" a.py", "z = 1", "z = 2"),
         BASE, 1),
    Case("a leading space in the path is kept (present)", "edit", block(" a.py", "z = 1", "z = 2"),
         {" a.py": F0, "a.py": F0}, changed={" a.py": F0.replace(b"z = 1", b"z = 2")},
         numbers=[5, 6], snippet=(1, 6)),
    Case("a trailing space in the path is kept", "edit", block("a.py ", "z = 1", "z = 2"), BASE, 1),
    Case("missing path", "edit", block("nope.py", "z = 1", "z = 2"), BASE, 1),
    Case("a folder as the path raises", "edit", block("sub", "z = 1", "z = 2"), {"sub/": None}, 1,
         numbers=None),
    Case("CRLF file: found, and written back with LF", "edit", block("c.txt", "two", "TWO"),
         {"c.txt": b"one\r\ntwo\r\nthree\r\n"}, changed={"c.txt": b"one\nTWO\nthree\n"},
         numbers=[2, 4], snippet=(1, 4)),
    Case("file without a final newline", "edit", block("d.txt", "x = 1", "y"), {"d.txt": b"x = 1"},
         changed={"d.txt": b"y"}, numbers=[1, 1], snippet=(1, 1)),
    Case("snippet near the start", "edit", block("t.txt", "L03", "A\nB"), {"t.txt": THIRTY},
         changed={"t.txt": THIRTY.replace(b"L03\n", b"A\nB\n")}, numbers=[3, 32], snippet=(1, 12)),
    Case("snippet in the middle", "edit", block("t.txt", "L15", "A\nB\nC"), {"t.txt": THIRTY},
         changed={"t.txt": THIRTY.replace(b"L15\n", b"A\nB\nC\n")}, numbers=[15, 33], snippet=(7, 25)),
    Case("snippet near the end", "edit", block("t.txt", "L29", "A"), {"t.txt": THIRTY},
         changed={"t.txt": THIRTY.replace(b"L29\n", b"A\n")}, numbers=[29, 31], snippet=(21, 31)),
    Case("multi-line search", "edit", block("t.txt", "L10\nL11", "M"), {"t.txt": THIRTY},
         changed={"t.txt": THIRTY.replace(b"L10\nL11\n", b"M\n")}, numbers=[10, 30], snippet=(2, 18)),
    Case("two blocks are refused", "edit",
         block("a.py", "z = 1", "z = 2") + "\n" + block("a.py", "    return y", "    return -y"), BASE, 1,
         numbers=[2]),
]

CREATE_CASES = [
    Case("content is verbatim, no newline added", "create", "x.py\nprint(1)",
         changed={"x.py": b"print(1)"}, numbers=[1]),
    Case("a blank line before the end adds one newline", "create", "x.py\nprint(1)\n",
         changed={"x.py": b"print(1)\n"}, numbers=[2]),
    Case("path only: an empty file", "create", "empty.txt", changed={"empty.txt": b""}, numbers=[1]),
    Case("path and one newline: an empty file", "create", "empty.txt\n", changed={"empty.txt": b""},
         numbers=[1]),
    Case("multi-line content in a subfolder", "create", "sub/y.py\na\n\nb\n", {"sub/": None},
         changed={"sub/y.py": b"a\n\nb\n"}, numbers=[4]),
    Case("CR characters are kept", "create", "w.txt\na\r\nb", changed={"w.txt": b"a\r\nb"}, numbers=[2]),
    Case("an existing file is refused", "create", "x.py\nnew", {"x.py": b"old\n"}, 1),
    Case("an existing folder is refused", "create", "sub\nnew", {"sub/": None}, 1),
    Case("an empty path is refused", "create", "\ncontent", {}, 1),
    Case("a missing parent folder is refused", "create", "no/such/x.py\nhi", {}, 1),
    Case("a trailing space in the path is kept", "create", "x.py \nhi", {"x.py": b"old\n"},
         changed={"x.py ": b"hi"}, numbers=[1]),
    Case("a leading space in the path is kept", "create", " x.py\nhi", {"x.py": b"old\n"},
         changed={" x.py": b"hi"}, numbers=[1]),
    Case("a file as the parent raises", "create", "x.py/y\nhi", {"x.py": b"old\n"}, 1, numbers=None),
    Case("a path ending in a slash raises", "create", "newdir/\nhi", {}, 1, numbers=None),
]

CASES = EDIT_CASES + CREATE_CASES


# -- the two implementations -----------------------------------------------------------------

def _cwm_plugins(dest: Path) -> Path | None:
    """CWM's original plugins copied to `dest`, from CWM_SOURCE (a checkout) or the mirror."""
    source = os.environ.get("CWM_SOURCE")
    for name in ("edit", "create"):
        if source:
            text = (Path(source) / CWM_PLUGIN_PATH / f"{name}.py").read_text()
        elif MIRROR.exists():
            shown = subprocess.run(["git", "-C", str(MIRROR), "show", f"HEAD:{CWM_PLUGIN_PATH}/{name}.py"],
                                   capture_output=True, text=True)
            if shown.returncode != 0:
                return None
            text = shown.stdout
        else:
            return None
        (dest / f"{name}.py").write_text(text)
    return dest


@pytest.fixture(scope="session")
def cwm_plugins(tmp_path_factory) -> Path | None:
    return _cwm_plugins(tmp_path_factory.mktemp("cwm-plugins"))


@pytest.fixture(params=["ours", "cwm"])
def plugins(request, cwm_plugins) -> Path:
    if request.param == "ours":
        return OURS
    if cwm_plugins is None:
        pytest.skip("no CWM checkout (set CWM_SOURCE): only our plugins are checked")
    return cwm_plugins


# -- running and checking --------------------------------------------------------------------

def setup(root: Path, files: dict) -> None:
    root.mkdir(parents=True, exist_ok=True)
    for rel, data in files.items():
        if rel.endswith("/"):
            (root / rel).mkdir(parents=True, exist_ok=True)
        else:
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_bytes(data)


def snapshot(root: Path) -> dict:
    found = {}
    for path in root.rglob("*"):
        rel = path.relative_to(root).as_posix()
        found[rel + "/" if path.is_dir() else rel] = None if path.is_dir() else path.read_bytes()
    return found


def expected_files(case: Case) -> dict:
    after = dict(case.files)
    for rel, data in case.changed.items():
        if data is None:
            after.pop(rel, None)
        else:
            after[rel] = data
            parent = rel.rpartition("/")[0]
            if parent:
                after.setdefault(parent + "/", None)
    return after


def check(case: Case, code: int | None, output: str, errors: str, root: Path, where: str) -> None:
    """`output`: what the plugin printed; `where`: the folder it ran in, as the plugin saw it."""
    label = f"{case.name!r}: {output}{errors}"
    assert code == case.code, label
    assert snapshot(root) == expected_files(case), label
    if case.numbers is None:
        assert "Traceback" in errors or "Traceback" in output, label
        return
    assert output.endswith("\n") and output.strip(), label
    lines = output.replace(where, "").split("\n")
    rows = [line for line in lines if SNIPPET_ROW.match(line)]
    prose = "\n".join(line for line in lines if not SNIPPET_ROW.match(line))
    assert [int(n) for n in re.findall(r"\d+", prose)] == case.numbers, label
    assert ("indentation" in prose.lower()) == case.hint, label
    if case.snippet is None:
        assert rows == [], label
    else:
        first, last = case.snippet
        (target,) = case.changed
        text = expected_files(case)[target].decode()
        shown = text.split("\n")[first - 1:last]
        assert len(shown) == last - first + 1, "the table's snippet range is past the file's end"
        assert rows == [f"{n:6}\t{line}" for n, line in enumerate(shown, first)], label


@pytest.mark.parametrize("case", CASES, ids=[c.tool + ": " + c.name for c in CASES])
def test_plugin_case(case, plugins, tmp_path):
    root = tmp_path / "work"
    setup(root, case.files)
    done = subprocess.run([sys.executable, str(plugins / f"{case.tool}.py")], cwd=root,
                          input=(case.body + "\n").encode(), capture_output=True, timeout=60)
    check(case, done.returncode, done.stdout.decode(), done.stderr.decode(), root, str(root))


def test_plugins_are_standalone_for_old_pythons():
    for name in ("edit", "create"):
        source = (OURS / f"{name}.py").read_text()
        ast.parse(source, feature_version=(3, 6))  # no walrus, no positional-only parameters
        assert "from __future__ import annotations" not in source
        assert not re.search(r"\{[^{}]*=\}", source), "f-string `=` needs Python 3.8"
        imports = {node.names[0].name for node in ast.walk(ast.parse(source))
                   if isinstance(node, ast.Import)}
        assert imports <= {"os", "re", "sys"}


# -- a handful of cases in a real container through a real session ----------------------------

CONTAINER_CASES = [
    "four spaces occur on lines 2 and 3", "a match may end mid-line", "indentation dropped: not found, with hint",
    "CRLF file: found, and written back with LF", "one blank replacement line leaves an empty line",
    "text after the REPLACE marker is ignored", "snippet near the end", "content is verbatim, no newline added",
    "a blank line before the end adds one newline", "path only: an empty file",
    "a missing parent folder is refused", "a trailing space in the path is kept",
]


def heredoc_command(name: str, body: str, folder: str) -> str:
    try:
        from agents.cwm.tools import PLUGIN_DIR, plugin_command
        return plugin_command(name, body).replace(f"{PLUGIN_DIR}/", f"{folder}/", 1)
    except ImportError:  # tools.py mid-edit: the same command, built here
        return f"${{PYPLUGIN_PYTHON_PATH:-python3}} {folder}/{name}.py <<'{HEREDOC}'\n{body}\n{HEREDOC}"


def test_cases_in_a_container_session(sandbox, cwm_plugins, tmp_path):
    variants = {"ours": "/cwm-plugins"}
    sandbox.copy_in(OURS, "/cwm-plugins")
    if cwm_plugins is not None:
        sandbox.copy_in(cwm_plugins, "/cwm-reference-plugins")
        variants["cwm"] = "/cwm-reference-plugins"
    by_name = {case.name: case for case in CASES}
    with sandbox.session(timeout=30) as session:
        for index, name in enumerate(CONTAINER_CASES):
            case = by_name[name]
            for variant, folder in variants.items():
                local = tmp_path / f"{variant}-{index}" / "work"
                setup(local, case.files)
                remote = f"/tmp/{variant}-{index}"
                sandbox.copy_in(local, f"{remote}/work")
                assert session.run(f"cd {remote}/work").exit_code == 0
                result = session.run(heredoc_command(case.tool, case.body, folder))
                fetched = tmp_path / "fetched" / f"{variant}-{index}"
                sandbox.copy_out(f"{remote}/work", fetched)
                check(case, result.exit_code, result.output, "", fetched / "work", f"{remote}/work")
