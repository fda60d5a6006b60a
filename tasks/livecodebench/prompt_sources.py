"""LiveCodeBench's codegen prompt as the references write it, loaded at run time from the user's checkouts.

cwm-eval holds none of these texts; `tasks.livecodebench.prompts` uses its own wording (labelled not comparable)
when no checkout is given.

- CWM (`--cwm-source`, protocol `cwm`): `cwm/rl/envs/envs/lcb.py` imports `re2` and `cwm.exec`, so it is never imported
  or executed. It is read with `ast`: the str constant that the `format_guide` property of `LCBCodeGenEnv` returns, the
  `outline_guide` and `max_prompt_len` assignments in `LCBCodeGenEnv.__init__`, and the function
  `_ours_question_template_answer`, whose FunctionDef alone is compiled and run in an empty namespace. The system
  prompt is the checkout's `get_cwm_sys_prompt(think=True, use_think_tag=True)` (`agents.cwm.cwm_source`).
- lcb_runner (`--lcb-source`, protocol `lcb_runner`): `lcb_runner/prompts/code_generation.py` the same way: the string
  class constants of `PromptConstants` (a str literal, or an f-string with no fields), and the FunctionDef of
  `get_generic_question_template_answer` run with `PromptConstants` as a namespace of those constants. The system
  prompt is `PromptConstants.SYSTEM_MESSAGE_GENERIC` (lcb_runner's chat prompt for OpenAI-style models).

A tree that does not fit gives a one-line `UserError` naming the missing file or name.
"""

from __future__ import annotations

import __future__
import ast
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable

from agents.cwm.cwm_source import (PROMPTS, checkout_origin, installed_package_root, load_cwm_texts,
                                   not_cwm, one_line)
from harness.errors import UserError
from tasks.livecodebench.dataset import Problem

LCB_PY = "cwm/rl/envs/envs/lcb.py"
CWM_ENV, CWM_TEMPLATE = "LCBCodeGenEnv", "_ours_question_template_answer"
CODE_GENERATION = "lcb_runner/prompts/code_generation.py"
LCB_CONSTANTS, LCB_TEMPLATE, LCB_SYSTEM_NAME = ("PromptConstants", "get_generic_question_template_answer",
                                                "SYSTEM_MESSAGE_GENERIC")
# two problems every loaded template is tried on at load, so a tree that does not fit fails before the run
_PROBES = (Problem(question_id="probe-stdio", question_content="PROBE-STDIO"),
           Problem(question_id="probe-func", question_content="PROBE-FUNC", starter_code="class Solution:\n    pass"))

Fail = Callable[[Path, str], UserError]  # makes the one-line error for a tree that does not fit

_cache: dict[tuple[str, Path], Any] = {}
_lock = threading.Lock()


def find_lcb_source() -> Path | None:
    """The directory holding an importable `lcb_runner` package (found without importing it), else None."""
    return installed_package_root("lcb_runner", (CODE_GENERATION,))


def load_cwm_lcb_texts(root: Path) -> CwmLcbTexts:
    """CWM's LiveCodeBench prompt from the CWM checkout at `root`; loaded once per root."""
    return _cached("cwm", root, "CWM", CwmLcbTexts)


def load_lcb_runner_texts(root: Path) -> LcbRunnerTexts:
    """lcb_runner's generic chat prompt from the LiveCodeBench checkout at `root`; loaded once per root."""
    return _cached("lcb_runner", root, "LiveCodeBench", LcbRunnerTexts)


def _cached(protocol: str, root: Path, what: str, make: Callable[[Path], Any]) -> Any:
    root = Path(root).expanduser()
    if not root.is_dir():
        raise UserError(f"{what} source {root}: not a directory (give the root of a checkout)")
    root = root.resolve()
    with _lock:
        texts = _cache.get((protocol, root))
        if texts is None:
            texts = _cache[(protocol, root)] = make(root)
        return texts


class CwmLcbTexts:
    """`LcbTexts` with CWM's prompt: CWM's think-tag system prompt and lcb.py's "ours" user prompt."""

    comparable = True
    protocol = "cwm"

    def __init__(self, root: Path):
        self.root = root
        cwm = load_cwm_texts(root)  # prompts.py and the rest of CWM's layout; UserError when it is not CWM's
        tree = _parse(root, LCB_PY, not_cwm)
        env = _class(tree, CWM_ENV, root, LCB_PY, not_cwm)
        self.format_guide = _property_string(env, "format_guide", root)
        init = _method(env, "__init__", root, LCB_PY, not_cwm)
        self.outline_guide = _self_assignment(init, "outline_guide", str, root)
        self.max_prompt_tokens: int | None = _self_assignment(init, "max_prompt_len", int, root)
        self._template = _function(tree, CWM_TEMPLATE, root, LCB_PY, not_cwm)
        self._system = cwm.think_system()
        self.origin = checkout_origin(root, (LCB_PY, PROMPTS))
        _check(self, root, f"{LCB_PY}: {CWM_TEMPLATE}", not_cwm)

    def messages(self, problem: Problem) -> list[dict[str, str]]:
        episode = SimpleNamespace(content=problem.question_content, starter_code=problem.starter_code)
        user = self._template(self.format_guide, self.outline_guide, lcb_episode=episode)
        return [{"role": "system", "content": self._system}, {"role": "user", "content": user}]

    def __repr__(self) -> str:
        return f"CwmLcbTexts({str(self.root)!r})"

    def __reduce__(self):  # the compiled template lives in this process only: a copy elsewhere loads it again
        return load_cwm_lcb_texts, (self.root,)


class LcbRunnerTexts:
    """`LcbTexts` with lcb_runner's prompt for chat models: the generic system message and question template."""

    comparable = True
    protocol = "lcb_runner"
    max_prompt_tokens: int | None = None  # lcb_runner does not truncate the prompt

    def __init__(self, root: Path):
        self.root = root
        if not (root / CODE_GENERATION).is_file():
            raise _not_lcb(root, f"{CODE_GENERATION} not found")
        tree = _parse(root, CODE_GENERATION, _not_lcb)
        constants = _class_strings(_class(tree, LCB_CONSTANTS, root, CODE_GENERATION, _not_lcb))
        if LCB_SYSTEM_NAME not in constants:
            raise _not_lcb(root, f"{CODE_GENERATION}: {LCB_CONSTANTS} has no string constant {LCB_SYSTEM_NAME}")
        self._system = constants[LCB_SYSTEM_NAME]
        self._template = _function(tree, LCB_TEMPLATE, root, CODE_GENERATION, _not_lcb,
                                   {LCB_CONSTANTS: SimpleNamespace(**constants)})
        self.origin = checkout_origin(root, (CODE_GENERATION,))
        _check(self, root, f"{CODE_GENERATION}: {LCB_TEMPLATE}", _not_lcb)

    def messages(self, problem: Problem) -> list[dict[str, str]]:
        question = SimpleNamespace(question_content=problem.question_content, starter_code=problem.starter_code)
        return [{"role": "system", "content": self._system}, {"role": "user", "content": self._template(question)}]

    def __repr__(self) -> str:
        return f"LcbRunnerTexts({str(self.root)!r})"

    def __reduce__(self):
        return load_lcb_runner_texts, (self.root,)


def _check(texts: CwmLcbTexts | LcbRunnerTexts, root: Path, template: str, fail: Fail) -> None:
    """Build both kinds of prompt once: a template that does not run or gives no text fails at load."""
    try:
        for probe in _PROBES:
            for message in texts.messages(probe):
                if not isinstance(message["content"], str):
                    raise TypeError(f"the {message['role']} prompt is a {type(message['content']).__name__}, "
                                    "not a str")
    except Exception as exc:  # noqa: BLE001 - anything the checkout's function raises means it does not fit
        raise fail(root, f"{template} does not work as expected ({type(exc).__name__}: {one_line(exc)})") from exc


# -- reading the files with ast -----------------------------------------------------------------------------------


def _parse(root: Path, name: str, fail: Fail) -> ast.Module:
    try:
        return ast.parse((root / name).read_text(encoding="utf-8"), filename=str(root / name))
    except FileNotFoundError:
        raise fail(root, f"{name} not found") from None
    except (OSError, UnicodeDecodeError, SyntaxError, ValueError) as exc:
        raise fail(root, f"cannot read {name} ({one_line(exc)})") from exc


def _class(tree: ast.Module, name: str, root: Path, where: str, fail: Fail) -> ast.ClassDef:
    found = next((node for node in tree.body if isinstance(node, ast.ClassDef) and node.name == name), None)
    if found is None:
        raise fail(root, f"{where} has no class {name}")
    return found


def _method(cls: ast.ClassDef, name: str, root: Path, where: str, fail: Fail) -> ast.FunctionDef:
    found = next((node for node in cls.body if isinstance(node, ast.FunctionDef) and node.name == name), None)
    if found is None:
        raise fail(root, f"{where} has no {cls.name}.{name}")
    return found


def _string(node: ast.expr | None) -> str | None:
    """A str literal, or an f-string whose parts are all literal text."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr) and all(isinstance(part, ast.Constant) and isinstance(part.value, str)
                                               for part in node.values):
        return "".join(part.value for part in node.values)
    return None


def _property_string(cls: ast.ClassDef, name: str, root: Path) -> str:
    """The str constant the property returns (its only statement, a docstring aside)."""
    prop = _method(cls, name, root, LCB_PY, not_cwm)
    body = [node for node in prop.body if not (isinstance(node, ast.Expr) and _string(node.value) is not None)]
    decorated = any(isinstance(d, ast.Name) and d.id == "property" for d in prop.decorator_list)
    if not decorated or len(body) != 1 or not isinstance(body[0], ast.Return) or _string(body[0].value) is None:
        raise not_cwm(root, f"{LCB_PY}: {cls.name}.{name} is not a property returning a string literal")
    return _string(body[0].value)


def _self_assignment(init: ast.FunctionDef, name: str, kind: type, root: Path) -> Any:
    """The literal of the one `self.<name> = <literal>` statement of __init__."""
    values = [node.value for node in ast.walk(init) if isinstance(node, (ast.Assign, ast.AnnAssign))
              for target in (node.targets if isinstance(node, ast.Assign) else [node.target])
              if isinstance(target, ast.Attribute) and target.attr == name
              and isinstance(target.value, ast.Name) and target.value.id == "self"]
    value = _string(values[0]) if len(values) == 1 and kind is str else None
    if len(values) == 1 and kind is int and isinstance(values[0], ast.Constant) and type(values[0].value) is int:
        value = values[0].value
    if value is None:
        raise not_cwm(root, f"{LCB_PY}: {CWM_ENV}.__init__ has no single `self.{name} = <{kind.__name__} literal>`")
    return value


def _class_strings(cls: ast.ClassDef) -> dict[str, str]:
    found = {}
    for node in cls.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            text = _string(node.value)
            if text is not None:
                found[node.targets[0].id] = text
    return found


def _function(tree: ast.Module, name: str, root: Path, where: str, fail: Fail,
              namespace: dict[str, Any] | None = None) -> Callable[..., str]:
    """The module-level function `name`, its FunctionDef alone compiled and run in `namespace` (else an empty one).

    Annotations are compiled as under `from __future__ import annotations`, so the names they use need not exist."""
    node = next((n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == name), None)
    if node is None:
        raise fail(root, f"{where} has no function {name}")
    module = ast.Module(body=[node], type_ignores=[])
    scope: dict[str, Any] = dict(namespace or {})
    try:
        code = compile(module, str(root / where), "exec", flags=__future__.annotations.compiler_flag,
                       dont_inherit=True)
        exec(code, scope)  # noqa: S102 - only the def statement: it defines the function and runs none of its body
    except Exception as exc:  # noqa: BLE001 - decorators or defaults that need the rest of the module
        raise fail(root, f"{where}: cannot define {name} on its own ({type(exc).__name__}: {one_line(exc)})") from exc
    return scope[name]


# -- helpers ------------------------------------------------------------------------------------------------------


def _not_lcb(root: Path, problem: str) -> UserError:
    return UserError(f"LiveCodeBench source {root}: {one_line(problem)} - is this a checkout of "
                     "LiveCodeBench/LiveCodeBench (the folder holding lcb_runner/)?")


