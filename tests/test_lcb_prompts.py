"""LiveCodeBench's codegen prompt (tasks/livecodebench/prompts.py, prompt_sources.py): the reference's own texts,
loaded at run time from the user's checkout, else cwm-eval's own wording labelled not comparable.

The required tests use invented fixture trees with the references' layout and names: tests/fixtures/cwm_source
(cwm/rl/envs/envs/lcb.py) and tests/fixtures/lcb_source (lcb_runner/prompts/code_generation.py). The tests marked
"real checkout" run against CWM and LiveCodeBench themselves when they are at hand, and check only structure, never
their sentences.
"""

from __future__ import annotations

import os
import pickle
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import copy_tree, edit_file
from tokenizers_for_tests import make_tokenizer
from transformers import AutoTokenizer

from agents.cwm import cwm_source
from agents.cwm.cwm_source import load_cwm_texts
from agents.cwm.texts import THINK_SYSTEM, ProjectTexts
from harness.conversation import ABBREV, CharEstimate, ChatRenderer, RendererTokens
from harness.errors import UserError
from tasks.livecodebench import prompt_sources
from tasks.livecodebench.dataset import Problem
from tasks.livecodebench.prompts import (
    PROTOCOLS,
    OwnCwmTexts,
    OwnLcbRunnerTexts,
    codegen_messages,
    load_lcb_texts,
)

PROJECT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).resolve().parent / "fixtures"
CWM_FIXTURE, LCB_FIXTURE = FIXTURES / "cwm_source", FIXTURES / "lcb_source"
LCB_MIRROR = Path("/work/.mirror/LiveCodeBench+LiveCodeBench/repo")
STDIO = Problem(question_id="p1", question_content="Read n and print n squared.")
FUNC = Problem(question_id="p2", question_content="Return the sum of nums.",
               starter_code="class Solution:\n    def total(self, nums: List[int]) -> int:\n        ")
FIXTURE_THINK_SYSTEM = "FIXTURE BASE: Fixture assistant. Reason inside the fixture think tags first."






def _user(messages: list[dict]) -> str:
    assert [m["role"] for m in messages] == ["system", "user"]
    return messages[1]["content"]


# -- the fixture trees ---------------------------------------------------------------------------------------------


def test_cwm_protocol_uses_the_checkouts_system_and_template():
    texts = load_lcb_texts("cwm", cwm_source=CWM_FIXTURE)
    assert texts.comparable is True and texts.protocol == "cwm"
    assert texts.origin.startswith(str(CWM_FIXTURE))
    assert texts.max_prompt_tokens == 2048  # read from LCBCodeGenEnv.__init__
    stdio, func = texts.messages(STDIO), texts.messages(FUNC)
    assert stdio[0] == func[0] == {"role": "system", "content": FIXTURE_THINK_SYSTEM}
    assert _user(stdio) == ("FIXTURE QUESTION <<Read n and print n squared.>>\n"
                            "FIXTURE OUTLINE. FIXTURE FORMAT GUIDE: one fenced block. FIXTURE STDIO.")
    assert _user(func) == ("FIXTURE QUESTION <<Return the sum of nums.>>\n"
                           "FIXTURE OUTLINE. FIXTURE FORMAT GUIDE: one fenced block. FIXTURE SIGNATURE:\n"
                           f"```python\n{FUNC.starter_code}\n```")
    # short prompts are not cut
    assert codegen_messages(FUNC, texts, CharEstimate()) == func


def test_think_system_of_both_text_sources():
    assert load_cwm_texts(CWM_FIXTURE).think_system() == FIXTURE_THINK_SYSTEM
    assert ProjectTexts().think_system() == THINK_SYSTEM


def test_the_prompt_budget_is_read_from_the_checkout(tmp_path):
    root = copy_tree(CWM_FIXTURE, tmp_path / CWM_FIXTURE.name)
    edit_file(root / prompt_sources.LCB_PY, "self.max_prompt_len = 2048", "self.max_prompt_len = 777")
    edit_file(root / prompt_sources.LCB_PY, 'self.outline_guide = "FIXTURE OUTLINE. "', 'self.outline_guide = ""')
    texts = load_lcb_texts("cwm", cwm_source=root)
    assert texts.max_prompt_tokens == 777
    assert _user(texts.messages(STDIO)).startswith("FIXTURE QUESTION <<Read n and print n squared.>>\n"
                                                   "FIXTURE FORMAT GUIDE")


def test_lcb_runner_protocol_uses_the_checkouts_system_and_template():
    texts = load_lcb_texts("lcb_runner", lcb_source=LCB_FIXTURE)
    assert texts.comparable is True and texts.protocol == "lcb_runner"
    assert texts.origin.startswith(str(LCB_FIXTURE))
    assert texts.max_prompt_tokens is None
    stdio, func = texts.messages(STDIO), texts.messages(FUNC)
    assert stdio[0] == func[0] == {"role": "system", "content": "FIXTURE GENERIC SYSTEM: write the program."}
    assert _user(stdio) == ("## FIXTURE Q\nRead n and print n squared.\n\n## FIXTURE F FIXTURE read stdin, write "
                            "stdout.\n```python\n# FIXTURE CODE\n```\n\n## FIXTURE A\n\n")
    assert _user(func) == ("## FIXTURE Q\nReturn the sum of nums.\n\n## FIXTURE F FIXTURE use the starter code.\n"
                           f"```python\n{FUNC.starter_code}\n```\n\n## FIXTURE A\n\n")


def test_the_other_protocols_source_is_not_used():
    assert load_lcb_texts("lcb_runner", cwm_source=CWM_FIXTURE, lcb_source=LCB_FIXTURE).protocol == "lcb_runner"
    assert load_lcb_texts("cwm", cwm_source=CWM_FIXTURE, lcb_source=LCB_FIXTURE).protocol == "cwm"


def test_loaded_once_per_root_and_pickled_by_root():
    cwm = load_lcb_texts("cwm", cwm_source=CWM_FIXTURE)
    lcb = load_lcb_texts("lcb_runner", lcb_source=LCB_FIXTURE)
    assert load_lcb_texts("cwm", cwm_source=CWM_FIXTURE / "cwm" / "..") is cwm
    assert load_lcb_texts("lcb_runner", lcb_source=LCB_FIXTURE / "lcb_runner" / "..") is lcb
    assert pickle.loads(pickle.dumps(cwm)) is cwm and pickle.loads(pickle.dumps(lcb)) is lcb


def test_loading_never_imports_the_reference_modules():
    """lcb.py and code_generation.py fail when imported or run (fixture): they are only read, in a fresh interpreter
    too, and no cwm*, lcb_runner* or re2 module is loaded."""
    code = ("import sys; from pathlib import Path; from tasks.livecodebench.prompts import load_lcb_texts; "
            f"load_lcb_texts('cwm', cwm_source=Path({str(CWM_FIXTURE)!r})); "
            f"load_lcb_texts('lcb_runner', lcb_source=Path({str(LCB_FIXTURE)!r})); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('cwm', 'lcb_runner', 're2')))")
    done = subprocess.run([sys.executable, "-c", code], cwd=PROJECT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
    for module in (CWM_FIXTURE / prompt_sources.LCB_PY, LCB_FIXTURE / prompt_sources.CODE_GENERATION):
        with pytest.raises(ImportError):
            exec(compile(module.read_text(), str(module), "exec"), {})  # noqa: S102 - the fixture refuses to run


def test_find_lcb_source(monkeypatch):
    if prompt_sources.find_lcb_source() is not None:
        pytest.skip("a real `lcb_runner` package is importable in this environment")
    monkeypatch.syspath_prepend(str(LCB_FIXTURE))
    assert prompt_sources.find_lcb_source() == LCB_FIXTURE.resolve()
    assert "lcb_runner" not in sys.modules
    assert load_lcb_texts("lcb_runner").comparable is True  # no --lcb-source: the installed package's tree


# -- no source: our own wording --------------------------------------------------------------------------------------


@pytest.fixture
def no_sources(monkeypatch):
    monkeypatch.setattr(cwm_source, "find_cwm_source", lambda: None)
    monkeypatch.setattr(prompt_sources, "find_lcb_source", lambda: None)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_without_a_source_our_wording_is_used_and_labelled(no_sources, protocol):
    texts = load_lcb_texts(protocol)
    assert isinstance(texts, OwnCwmTexts if protocol == "cwm" else OwnLcbRunnerTexts)
    assert texts.comparable is False and texts.protocol == protocol
    assert texts.origin.startswith("cwm-eval (") and "not comparable" in texts.origin
    assert texts.max_prompt_tokens == (2048 if protocol == "cwm" else None)
    for problem in (STDIO, FUNC):
        system, user = texts.messages(problem)
        assert system["role"] == "system" and system["content"]
        assert problem.question_content in user["content"] and "```python" in user["content"]
    assert f"```python\n{FUNC.starter_code}\n```" in _user(texts.messages(FUNC))
    if protocol == "cwm":
        assert texts.messages(STDIO)[0]["content"] == THINK_SYSTEM
    else:
        assert [section in _user(texts.messages(STDIO)) for section in ("Question", "Format", "Answer")] == [True] * 3


# Phrases of the references' prompts that cwm-eval once held; the texts come from the checkouts only.
FORMER_COPIES = ("competitive programming question", "You are an expert Python programmer",
                 "enclosed in triple backticks", "use the provided format with backticks",
                 "Read the inputs from stdin solve the problem", "starter code to write the solution")


def _project_sources() -> list[Path]:
    return [path for name in ("tasks", "agents", "harness") for path in sorted((PROJECT / name).rglob("*"))
            if path.is_file() and "__pycache__" not in path.parts]


def test_the_project_holds_none_of_the_former_copies():
    found = [f"{path.relative_to(PROJECT)}: {phrase!r}" for path in _project_sources()
             for phrase in FORMER_COPIES if phrase.lower() in path.read_text(errors="ignore").lower()]
    assert not found, "the references' prompts must be loaded from their checkouts:\n" + "\n".join(found)


# -- CWM's left truncation to max_prompt_len ------------------------------------------------------------------------

LONG = Problem(question_id="long", question_content="".join(
    f"Line {i}: the array a_{i} holds {i * 7} values; print the maximum of each window.\n" for i in range(260)))


@pytest.fixture(scope="module")
def renderer_counter(tmp_path_factory) -> RendererTokens:
    folder = make_tokenizer("cwm", tmp_path_factory.mktemp("tok") / "cwm")
    return RendererTokens(ChatRenderer(AutoTokenizer.from_pretrained(folder)))


def test_cwm_prompt_is_cut_from_the_left_to_the_budget(renderer_counter):
    counter, renderer = renderer_counter, renderer_counter.renderer
    assert len(LONG.question_content) > 19_000
    texts = load_lcb_texts("cwm", cwm_source=CWM_FIXTURE)
    system, user = codegen_messages(LONG, texts, counter)
    template = _user(texts.messages(LONG))
    assert system == texts.messages(LONG)[0]
    assert counter.message_count("user", template) > 2 * 2048
    assert user["content"].startswith(ABBREV) and "FIXTURE QUESTION" not in user["content"]
    assert template.endswith(user["content"][len(ABBREV):])
    assert user["content"].endswith("FIXTURE FORMAT GUIDE: one fenced block. FIXTURE STDIO.")
    assert counter.message_count("user", user["content"]) <= 2048
    # CWM's rule exactly: [...] + the last `keep` tokens; one token more would not fit
    body = renderer.encode(template)
    keep = 2048 - (counter.message_count("user", template) - len(body)) - len(counter.abbrev)
    assert user["content"] == renderer.decode(counter.abbrev + body[-keep:])
    assert counter.message_count("user", renderer.decode(counter.abbrev + body[-(keep + 1):])) > 2048


def test_cwm_prompt_cut_with_the_character_estimate():
    counter = CharEstimate(4.0)
    texts = load_lcb_texts("cwm", cwm_source=CWM_FIXTURE)
    user = _user(codegen_messages(LONG, texts, counter))
    template = _user(texts.messages(LONG))
    assert user.startswith(ABBREV) and template.endswith(user[len(ABBREV):])
    assert 2047 <= counter.message_count("user", user) <= 2048


def test_own_cwm_wording_is_cut_too(no_sources, renderer_counter):
    user = _user(codegen_messages(LONG, load_lcb_texts("cwm"), renderer_counter))
    assert user.startswith(ABBREV) and renderer_counter.message_count("user", user) <= 2048


@pytest.mark.parametrize("source", [LCB_FIXTURE, None], ids=["checkout", "own"])
def test_lcb_runner_prompt_is_never_cut(no_sources, renderer_counter, source):
    texts = load_lcb_texts("lcb_runner", lcb_source=source)
    for counter in (renderer_counter, CharEstimate()):
        assert codegen_messages(LONG, texts, counter) == texts.messages(LONG)
    assert renderer_counter.message_count("user", _user(texts.messages(LONG))) > 2048


# -- trees that do not fit: one line naming what is missing ---------------------------------------------------------

CWM_BREAKAGES = {
    "no template": ("def _ours_question_template_answer(", "def _ours_template(", "_ours_question_template_answer"),
    "format guide": ('return "FIXTURE FORMAT GUIDE: one fenced block."', 'return "FIXTURE " + "GUIDE"',
                     "format_guide"),
    "budget": ("self.max_prompt_len = 2048", "self.max_prompt_len = 2048.0", "max_prompt_len"),
    "outline": ('self.outline_guide = "FIXTURE OUTLINE. "', "self.outline_guide = outline", "outline_guide"),
    "class": ("class LCBCodeGenEnv(", "class LCBOtherEnv(", "LCBCodeGenEnv"),
    "template fails": ('prompt += " FIXTURE STDIO."', "prompt += missing_name", "_ours_question_template_answer"),
    "decorated": ("def _ours_question_template_answer(", "@cache\ndef _ours_question_template_answer(",
                  "_ours_question_template_answer"),
}
LCB_BREAKAGES = {
    "system": ("SYSTEM_MESSAGE_GENERIC = f\"FIXTURE", "SYSTEM_MESSAGE_GENERIC_X = f\"FIXTURE",
               "SYSTEM_MESSAGE_GENERIC"),
    "system with a field": ('f"FIXTURE GENERIC SYSTEM: write the program."', 'f"FIXTURE {json}"',
                            "SYSTEM_MESSAGE_GENERIC"),
    "no template": ("def get_generic_question_template_answer(", "def get_template(",
                    "get_generic_question_template_answer"),
    "constant": ("FORMATTING_WITHOUT_STARTER_CODE = ", "FORMATTING_WITHOUT_STARTER = ",
                 "FORMATTING_WITHOUT_STARTER_CODE"),
    "class": ("class PromptConstants:", "class Constants:", "PromptConstants"),
}


def _assert_one_line_error(load, root: Path, named: str) -> None:
    before = {name for name in sys.modules if name.split(".")[0] in ("cwm", "lcb_runner")}
    with pytest.raises(UserError) as caught:
        load()
    message = str(caught.value)
    assert named in message and str(root) in message and "\n" not in message
    assert {name for name in sys.modules if name.split(".")[0] in ("cwm", "lcb_runner")} == before


@pytest.mark.parametrize("case", sorted(CWM_BREAKAGES))
def test_a_broken_cwm_tree_names_what_is_missing(tmp_path, case):
    old, new, named = CWM_BREAKAGES[case]
    root = copy_tree(CWM_FIXTURE, tmp_path / CWM_FIXTURE.name)
    edit_file(root / prompt_sources.LCB_PY, old, new)
    _assert_one_line_error(lambda: load_lcb_texts("cwm", cwm_source=root), root.resolve(), named)


@pytest.mark.parametrize("case", sorted(LCB_BREAKAGES))
def test_a_broken_lcb_tree_names_what_is_missing(tmp_path, case):
    old, new, named = LCB_BREAKAGES[case]
    root = copy_tree(LCB_FIXTURE, tmp_path / LCB_FIXTURE.name)
    edit_file(root / prompt_sources.CODE_GENERATION, old, new)
    _assert_one_line_error(lambda: load_lcb_texts("lcb_runner", lcb_source=root), root.resolve(), named)


def test_bad_source_paths(tmp_path):
    cwm = copy_tree(CWM_FIXTURE, tmp_path / CWM_FIXTURE.name)
    (cwm / prompt_sources.LCB_PY).unlink()
    _assert_one_line_error(lambda: load_lcb_texts("cwm", cwm_source=cwm), cwm.resolve(), prompt_sources.LCB_PY)
    empty = tmp_path / "empty"
    empty.mkdir()
    _assert_one_line_error(lambda: load_lcb_texts("lcb_runner", lcb_source=empty), empty.resolve(),
                           prompt_sources.CODE_GENERATION)
    _assert_one_line_error(lambda: load_lcb_texts("cwm", cwm_source=empty), empty.resolve(), "not found")
    for protocol in PROTOCOLS:
        _assert_one_line_error(lambda: load_lcb_texts(protocol, tmp_path / "nowhere", tmp_path / "nowhere"),
                               tmp_path / "nowhere", "not a directory")
    with pytest.raises(UserError, match="lcb_runner"):
        load_lcb_texts("official")


# -- real checkouts (optional) -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def lcb_checkout(tmp_path_factory) -> Path:
    """A real LiveCodeBench/LiveCodeBench checkout: $LCB_SOURCE, else the local mirror exported with git archive."""
    if os.environ.get("LCB_SOURCE"):
        return Path(os.environ["LCB_SOURCE"])
    if LCB_MIRROR.is_dir() and shutil.which("git"):
        root = tmp_path_factory.mktemp("lcb-checkout")
        archive = subprocess.run(["git", "-C", str(LCB_MIRROR), "archive", "HEAD", "lcb_runner"],
                                 capture_output=True, timeout=300)
        if archive.returncode == 0:
            subprocess.run(["tar", "-x", "-C", str(root)], input=archive.stdout, check=True, timeout=300)
            return root
    pytest.skip("optional check: no LiveCodeBench checkout (set LCB_SOURCE); the fixture tests are the required ones")


def _check_real(texts, protocol: str) -> None:
    assert texts.comparable is True and texts.protocol == protocol
    for problem in (STDIO, FUNC):
        system, user = texts.messages(problem)
        assert system["role"] == "system" and system["content"].strip()
        assert problem.question_content in user["content"]
    assert FUNC.starter_code in _user(texts.messages(FUNC))
    assert FUNC.starter_code not in _user(texts.messages(STDIO))


def test_real_cwm_checkout_loads(cwm_checkout):
    texts = load_lcb_texts("cwm", cwm_source=cwm_checkout)
    _check_real(texts, "cwm")
    assert texts.messages(STDIO)[0]["content"] == load_cwm_texts(cwm_checkout).think_system()
    assert texts.max_prompt_tokens == 2048
    assert not [name for name in sys.modules if name.split(".")[0] in ("cwm", "re2")]


def test_real_lcb_checkout_loads(lcb_checkout):
    texts = load_lcb_texts("lcb_runner", lcb_source=lcb_checkout)
    _check_real(texts, "lcb_runner")
    assert texts.max_prompt_tokens is None
    assert not [name for name in sys.modules if name.split(".")[0] == "lcb_runner"]


def _fragments(texts) -> set[str]:
    """The references' own sentences: their messages for marker problems, cut at the markers, lines and sentences."""
    marked = [Problem(question_id="m", question_content="\x00"), Problem(question_id="m", question_content="\x00",
                                                                          starter_code="\x01")]
    pieces = [m["content"] for problem in marked for m in texts.messages(problem)
              if m["role"] == "user" or texts.protocol == "lcb_runner"]
    return {piece.strip() for text in pieces for piece in re.split(r"[\x00\x01\n]|(?<=\.) ", text)
            if len(piece.strip()) >= 25 and len(re.findall(r"[A-Za-z]{2,}", piece)) >= 4}


def test_the_project_holds_none_of_the_real_prompts(cwm_checkout, lcb_checkout):
    fragments = (_fragments(load_lcb_texts("cwm", cwm_source=cwm_checkout))
                 | _fragments(load_lcb_texts("lcb_runner", lcb_source=lcb_checkout)))
    assert len(fragments) >= 6
    copied = [f"{path.relative_to(PROJECT)}: {fragment[:60]!r}" for path in _project_sources()
              for fragment in sorted(fragments) if fragment in path.read_text(errors="ignore")]
    assert not copied, "the references' prompts must come from their checkouts:\n" + "\n".join(copied)
