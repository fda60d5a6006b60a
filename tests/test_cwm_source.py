"""agents/cwm/cwm_source.py: CWM's texts and functions, loaded at run time from a checkout of facebookresearch/cwm.

The required tests use tests/fixtures/cwm_source, a tree with CWM's module layout and invented texts. The tests marked
"real checkout" run against CWM itself when one is at hand ($CWM_SOURCE, or the local mirror extracted to a temporary
directory) and check only structure, never CWM's sentences. The guard test checks that the project holds none of them.
"""

from __future__ import annotations

import ast
import os
import pickle
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import copy_tree, edit_file

from agents.cwm import cwm_source
from agents.cwm.cwm_source import CwmSourceTexts, find_cwm_source, load_cwm_texts
from agents.cwm.texts import FormatError, NoSuchToolError
from harness.errors import UserError

PROJECT = Path(__file__).resolve().parents[1]
FIXTURE = Path(__file__).resolve().parent / "fixtures" / "cwm_source"
MIRROR = Path("/work/.mirror/facebookresearch+cwm/repo")
FOUR = ["bash", "edit", "create", "submit"]
LIMITS = {"session_timeout": 120.0, "context_size": 131072, "max_turns": 128}


def _cwm_modules() -> set[str]:
    return {name for name in sys.modules if name == "cwm" or name.startswith("cwm.")}






@pytest.fixture(scope="module")
def texts() -> CwmSourceTexts:
    return load_cwm_texts(FIXTURE)


# -- the fixture tree ------------------------------------------------------------------------------------------------


def test_fixture_loads(texts):
    assert isinstance(texts, CwmSourceTexts)
    assert texts.comparable is True
    assert texts.origin.startswith(str(FIXTURE))
    assert texts.plugin_dir == FIXTURE / "cwm" / "rl" / "swerl" / "plugins"
    assert (texts.plugin_dir / "edit.py").read_bytes() == (FIXTURE / "cwm/rl/swerl/plugins/edit.py").read_bytes()
    assert (texts.plugin_dir / "create.py").is_file()
    assert texts.budget_template == ("<budget>\nFIXTURE turns left {remaining_turns}, tokens left {remaining_tokens}\n"
                                     "</budget>")


def test_load_is_cached_per_root_and_pickles_by_root(texts):
    assert load_cwm_texts(FIXTURE) is texts
    assert load_cwm_texts(FIXTURE / "cwm" / "..") is texts
    assert pickle.loads(pickle.dumps(texts)) is texts


def test_system_prompt_with_plugins(texts):
    prompt = texts.system_prompt(FOUR, **LIMITS)
    assert prompt.startswith("FIXTURE BASE: Fixture assistant. Reason inside the fixture think tags first.\n\n"
                             "# FIXTURE ENVIRONMENT\n\n"
                             "FIXTURE SYSTEM (with plugins): restart after a 120-second wait; 131072 tokens; 128 turns.")
    assert prompt.endswith("<tool: submit>\n[result]\n</tool>\nFixture submit tool.")
    for tool in FOUR:
        assert f"<tool: {tool}>" in prompt
    # the order of the tools does not matter, and the timeout is CWM's "{int(seconds)}-second"
    other = texts.system_prompt(["submit", "create", "edit", "bash"], session_timeout=30.9, context_size=1000,
                                max_turns=7)
    assert "restart after a 30-second wait; 1000 tokens; 7 turns." in other


def test_system_prompt_bash_only_uses_the_no_plugins_text(texts):
    prompt = texts.system_prompt(["bash", "submit"], **LIMITS)
    assert "FIXTURE SYSTEM (bash only): restart after a 120-second wait; 131072 tokens; 128 turns." in prompt
    assert "<tool: edit>" not in prompt and "<tool: create>" not in prompt
    assert "with plugins" not in prompt


@pytest.mark.parametrize("tools", [["bash"], ["bash", "edit", "submit"], ["bash", "submit", "python"]])
def test_system_prompt_rejects_other_tool_sets(texts, tools):
    with pytest.raises(UserError):
        texts.system_prompt(tools, **LIMITS)


def test_prompts_and_observations(texts):
    assert texts.issue_prompt("It breaks.\n", "/testbed") == (
        "FIXTURE ISSUE PROMPT\n<issue_description>\nIt breaks.\n\n</issue_description>\nFIXTURE REPO AT /testbed")
    assert texts.submission_feedback("diff --git a/x b/x\n") == (
        "FIXTURE SUBMISSION:\n<submission>\ndiff --git a/x b/x\n\n</submission>")
    assert texts.output("a.py\n") == "<output>\na.py\n\n</output>"
    assert texts.budget(127, -5) == "<budget>\nFIXTURE turns left 127, tokens left -5\n</budget>"


def test_think_end_error_renders_the_count(texts):
    assert texts.think_end_error(0) == "FIXTURE wants one thinking end marker, saw 0"
    assert texts.think_end_error(2) == "FIXTURE wants one thinking end marker, saw 2"


def test_parse_tool_calls_is_the_checkouts_function(texts):
    assert texts.parse_tool_calls("prose\n<tool: bash>\nls -l\n</tool>\n") == ("bash", "ls -l")
    assert texts.parse_tool_calls("<tool:\tedit>\n a\n</tool>") == ("edit", " a")
    cases = {
        "no tool here": "FIXTURE no call",
        "<tool: bash>\nls</tool>": "FIXTURE tag mismatch: 0",
        "<tool: bash>\nls\n</tool>\n<tool: submit>\np\n</tool>": "FIXTURE too many calls: 2",
        "<tool: bash>\n  \n</tool>": "FIXTURE empty body for bash",
    }
    for answer, message in cases.items():
        with pytest.raises(FormatError) as caught:
            texts.parse_tool_calls(answer)
        assert type(caught.value) is FormatError  # ours (agents.cwm.texts), not the checkout's class
        assert str(caught.value) == message
    assert cwm_source.FormatError is FormatError and cwm_source.NoSuchToolError is NoSuchToolError


def test_no_such_tool_message(texts):
    assert texts.no_such_tool("python") == "FIXTURE no tool named python"


def test_bash_notices(texts):
    assert texts.bash_notice("timeout") == "FIXTURE restart: too slow. FIXTURE fresh shell."
    assert texts.bash_notice("too_long") == "FIXTURE restart: too much output. FIXTURE fresh shell."
    for kind in ("exit", "broken_pipe", "other"):
        assert texts.bash_notice(kind) == "FIXTURE restart: the shell died. FIXTURE fresh shell."


def _fake_bash(status="success", output="", exit_code=0):
    commands = []

    def run_bash(command):
        commands.append(command)
        return {"status": status, "output": output, "error_type": "none" if status == "success" else "timeout",
                "exit_code": exit_code}

    return run_bash, commands


def test_submit(texts):
    patch = "diff --git a/x.py b/x.py\n+1\n"
    run_bash, commands = _fake_bash(output=patch)
    assert texts.submit("  /tmp/fix.patch\n", run_bash) == (True, patch)
    assert commands == ["cat /tmp/fix.patch"]
    assert texts.submit("p.diff", _fake_bash(status="error", exit_code=-1)[0]) == (False, "FIXTURE cannot read p.diff")
    assert texts.submit("p.diff", _fake_bash(output="", exit_code=1)[0]) == (False, "FIXTURE cannot read p.diff")
    assert texts.submit("p.diff", _fake_bash(output=" \n")[0]) == (False, "FIXTURE empty p.diff")
    assert texts.submit("p.diff", _fake_bash(output="\ndiff --git")[0]) == (False, "FIXTURE not a diff p.diff")


def test_loading_never_imports_the_heavy_module_nor_cwm_packages(tmp_path):
    root = copy_tree(FIXTURE, tmp_path / "cwm-checkout")  # a fresh root: not served from the cache
    before = _cwm_modules()
    texts = load_cwm_texts(root)
    assert texts.think_end_error(1).endswith("saw 1")
    assert _cwm_modules() == before == set()
    heavy = root / "cwm" / "rl" / "envs" / "envs" / "swerl_tool.py"
    package_inits = {root / "cwm" / "rl" / "swerl" / "__init__.py", root / "cwm" / "__init__.py"}
    for module in list(sys.modules.values()):
        path = getattr(module, "__file__", None)
        assert path is None or Path(path) != heavy and Path(path) not in package_inits


def test_loading_works_in_a_fresh_interpreter():
    """No cwm*, no modal (which swerl_tool.py imports) and no unidiff (which swerl/__init__.py imports) get loaded."""
    code = ("import sys; from pathlib import Path; from agents.cwm.cwm_source import load_cwm_texts; "
            f"t = load_cwm_texts(Path({str(FIXTURE)!r})); t.system_prompt(['bash', 'submit'], session_timeout=1, "
            "context_size=2, max_turns=3); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('cwm', 'modal', 'unidiff')))")
    done = subprocess.run([sys.executable, "-c", code], cwd=PROJECT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_find_cwm_source(monkeypatch, tmp_path):
    if find_cwm_source() is not None:
        pytest.skip("a real `cwm` package is importable in this environment")
    monkeypatch.syspath_prepend(str(FIXTURE))
    assert find_cwm_source() == FIXTURE.resolve()
    assert "cwm" not in sys.modules


def test_find_cwm_source_ignores_other_cwm_packages(monkeypatch, tmp_path):
    (tmp_path / "cwm").mkdir()
    (tmp_path / "cwm" / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert find_cwm_source() is None


BREAKAGES = {
    "constant": ("cwm/rl/envs/envs/swerl_tool.py", "USER_ISSUE_SOLVING = ", "USER_ISSUE = ", "USER_ISSUE_SOLVING"),
    "not a literal": ("cwm/rl/envs/envs/swerl_tool.py", 'FEEDBACK_OUTPUT_PROMPT = """',
                      'FEEDBACK_OUTPUT_PROMPT = "" + """', "FEEDBACK_OUTPUT_PROMPT"),
    "placeholder": ("cwm/rl/envs/envs/swerl_tool.py", "{pred_patch}", "{patch}", "SUBMISSION_FEEDBACK_PROMPT"),
    "think-end raise": ("cwm/rl/envs/envs/swerl_tool.py", "raise swerl.errors.FormatError(\n",
                        "raise swerl.errors.BackendInitError(\n", "SWERLToolEnv.step"),
    "think-end format": ("cwm/rl/envs/envs/swerl_tool.py", "saw {num_ending_tokens}", "saw {num_ending_tokens:3}",
                         "SWERLToolEnv.step"),
    "function": ("cwm/rl/swerl/default_tools.py", "def parse_tool_calls(", "def parse_calls(", "parse_tool_calls"),
    "import": ("cwm/rl/swerl/tools.py", "from .errors import NoSuchToolError", "from .errs import NoSuchToolError",
               "cwm/rl/swerl/tools.py"),
}


@pytest.mark.parametrize("case", sorted(BREAKAGES))
def test_a_broken_tree_names_what_is_missing(tmp_path, case):
    relative, old, new, named = BREAKAGES[case]
    root = copy_tree(FIXTURE, tmp_path / "cwm-checkout")
    edit_file(root / relative, old, new)
    before = set(sys.modules)
    with pytest.raises(UserError) as caught:
        load_cwm_texts(root)
    message = str(caught.value)
    assert named in message and str(root) in message
    assert "\n" not in message
    assert set(sys.modules) - before == set()  # a failed load leaves nothing behind


@pytest.mark.parametrize("relative", ["cwm/rl/swerl/tools.py", "cwm/rl/swerl/plugins/create.py",
                                      "cwm/rl/envs/prompts.py"])
def test_a_missing_file_is_named(tmp_path, relative):
    root = copy_tree(FIXTURE, tmp_path / "cwm-checkout")
    (root / relative).unlink()
    with pytest.raises(UserError, match=re.escape(f"{relative} not found")):
        load_cwm_texts(root)


def test_not_a_directory(tmp_path):
    with pytest.raises(UserError, match="not a directory"):
        load_cwm_texts(tmp_path / "nowhere")


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_origin_names_the_commit_of_a_git_checkout(tmp_path):
    root = copy_tree(FIXTURE, tmp_path / "cwm-checkout")
    git = ["git", "-C", str(root), "-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "fixture"], check=True)
    commit = subprocess.run([*git, "rev-parse", "HEAD"], check=True, capture_output=True, text=True).stdout.strip()
    assert load_cwm_texts(root).origin == f"{root.resolve()} @ {commit}"


# -- a real CWM checkout (optional) ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def real_root(tmp_path_factory) -> Path:
    if os.environ.get("CWM_SOURCE"):
        return Path(os.environ["CWM_SOURCE"])
    if MIRROR.is_dir() and shutil.which("git"):
        root = tmp_path_factory.mktemp("cwm-checkout")
        archive = subprocess.run(["git", "-C", str(MIRROR), "archive", "HEAD", "cwm"], capture_output=True,
                                 timeout=300)
        if archive.returncode == 0:
            subprocess.run(["tar", "-x", "-C", str(root)], input=archive.stdout, check=True, timeout=300)
            return root
    pytest.skip("optional check: no real CWM checkout (set CWM_SOURCE to a facebookresearch/cwm checkout); "
                "the fixture tests above are the required ones")


def test_real_checkout_loads_and_fits(real_root):
    before = _cwm_modules()
    texts = load_cwm_texts(real_root)
    assert _cwm_modules() == before
    four = texts.system_prompt(FOUR, **LIMITS)
    two = texts.system_prompt(["bash", "submit"], **LIMITS)
    for tool in FOUR:
        assert f"<tool: {tool}>" in four
    assert "<tool: bash>" in two and "<tool: submit>" in two
    assert "<tool: edit>" not in two and "<tool: create>" not in two
    assert "120-second" in four and "131072" in four and "128" in four
    assert "<think>" in four and "{" not in four
    issue = texts.issue_prompt("ISSUE-TEXT-4711", "/somewhere/repo")
    assert "ISSUE-TEXT-4711" in issue and "/somewhere/repo" in issue
    assert "PATCH-4711" in texts.submission_feedback("PATCH-4711")
    assert "FEEDBACK-4711" in texts.output("FEEDBACK-4711")
    budget = texts.budget(4711, 4712)
    assert "4711" in budget and "4712" in budget and "{" in texts.budget_template
    assert "3" in texts.think_end_error(3) and texts.think_end_error(3) != texts.think_end_error(4)
    assert "python" in texts.no_such_tool("python")
    assert texts.parse_tool_calls("<tool: bash>\nls\n</tool>") == ("bash", "ls")
    with pytest.raises(FormatError):
        texts.parse_tool_calls("plain prose")
    notices = {kind: texts.bash_notice(kind) for kind in ("timeout", "too_long", "exit")}
    assert len(set(notices.values())) == 3 and all(notices.values())
    patch = "diff --git a/x b/x\n"
    assert texts.submit("p.diff", _fake_bash(output=patch)[0]) == (True, patch)
    assert texts.submit("p.diff", _fake_bash(output="not a diff\n")[0])[0] is False
    assert {"edit.py", "create.py"} <= {path.name for path in texts.plugin_dir.iterdir()}


# -- the project holds none of CWM's texts -----------------------------------------------------------------------

# The texts to look for: these constants, and every string literal (docstrings aside) of these files.
GUARDED_CONSTANTS = {
    "cwm/rl/envs/envs/swerl_tool.py": ("SYSTEM_UBUNTU", "SYSTEM_UBUNTU_NO_PLUGINS", "USER_ISSUE_SOLVING",
                                       "SUBMISSION_FEEDBACK_PROMPT"),
    "cwm/rl/envs/prompts.py": ("CWM_THINKTAG_SYS_PROMPT",),
}
GUARDED_FILES = ("cwm/rl/swerl/plugins/edit.py", "cwm/rl/swerl/plugins/create.py", "cwm/rl/swerl/tools.py",
                 "cwm/rl/swerl/default_tools.py")
PROJECT_SOURCES = ("agents", "harness", "tasks", "trainer", "bench", "scripts", "README.md")
MIN_LENGTH = 40


def _string_constants(path: Path, names) -> list[str]:
    found = []
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and getattr(node.targets[0], "id", None) in names:
            value = node.value.func.value if isinstance(node.value, ast.Call) else node.value
            found.append(value.value)
    assert len(found) == len(names), f"{path}: expected {names}"
    return found


def _string_literals(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    docstrings = {id(node.value) for node in ast.walk(tree) if isinstance(node, ast.Expr)}
    return [node.value for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings]


def _fragments(texts: list[str]) -> set[str]:
    """Every line of the texts, cut at its {placeholders}, that is MIN_LENGTH characters or longer and prose (a
    pattern such as the edit plugin's block regex is a format the project may share, not a text)."""
    fragments = set()
    for text in texts:
        for line in text.splitlines():
            for fragment in re.split(r"\{[^{}]*\}", line):
                fragment = fragment.strip()
                if len(fragment) >= MIN_LENGTH and len(re.findall(r"[A-Za-z]{2,}", fragment)) >= 5:
                    fragments.add(fragment)
    return fragments


def test_the_project_holds_none_of_cwms_texts(real_root):
    texts = [text for relative, names in GUARDED_CONSTANTS.items()
             for text in _string_constants(real_root / relative, names)]
    texts += [text for relative in GUARDED_FILES for text in _string_literals(real_root / relative)]
    fragments = _fragments(texts)
    assert len(fragments) > 20  # the search found CWM's sentences
    sources = []
    for name in PROJECT_SOURCES:
        path = PROJECT / name
        sources += [path] if path.is_file() else [p for p in sorted(path.rglob("*"))
                                                  if p.is_file() and "__pycache__" not in p.parts]
    copied = [f"{path.relative_to(PROJECT)}: {fragment[:60]!r}" for path in sources
              for fragment in sorted(fragments) if fragment in path.read_text(errors="ignore")]
    assert not copied, "CWM's texts must come from --cwm-source, not from the project:\n" + "\n".join(copied)
