"""CWM's own texts, tool checks and plugins, loaded at run time from the user's checkout of facebookresearch/cwm.

cwm-eval holds none of CWM's texts or code. With `--cwm-source DIR` the agent takes them from DIR instead:

- the module-level string constants of `cwm/rl/envs/envs/swerl_tool.py` are read with `ast` (a str literal, or a str
  literal's `.strip()`); that module imports heavy things and is never imported or executed. The message of the
  FormatError that `SWERLToolEnv.step` raises for a wrong count of thinking-end texts is an f-string there: it is found
  with `ast` and rendered here.
- `cwm/rl/envs/prompts.py` and the stdlib-only `cwm/rl/swerl/{errors,tools,default_tools}.py` and
  `cwm/rl/swerl/remote/session.py` are imported from their files under a private package name
  (`_cwm_source_<hash>`), so their relative imports resolve without running CWM's package `__init__.py` files (which
  need `unidiff` and more). No `cwm*` entry of `sys.modules` is read or written.
- `cwm/rl/swerl/plugins/{edit,create}.py` are not loaded here: the agent copies them byte for byte into the container.
- the test-generation scenario's texts are loaded on first use, by `CwmSourceTexts.testgen()` (cwm_source_testgen.py).

A tree that is not a CWM checkout gives a one-line `UserError` naming the missing file or name.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import sys
import threading
import types
from pathlib import Path
from typing import Callable

from agents.cwm.source_reading import checkout_origin, not_cwm, one_line, parse_file, string_constants
from agents.cwm.texts import FormatError, NoSuchToolError
from harness.errors import UserError

__all__ = ["CwmSourceTexts", "FormatError", "NoSuchToolError", "find_cwm_source", "load_cwm_texts"]

RunBash = Callable[[str], dict]  # command -> {"status", "output", "error_type", "exit_code"}

PROMPTS = "cwm/rl/envs/prompts.py"
SWERL_TOOL = "cwm/rl/envs/envs/swerl_tool.py"
SWERL = "cwm/rl/swerl"
ERRORS = f"{SWERL}/errors.py"
SESSION = f"{SWERL}/remote/session.py"
TOOLS = f"{SWERL}/tools.py"
DEFAULT_TOOLS = f"{SWERL}/default_tools.py"
PLUGINS = f"{SWERL}/plugins"
PLUGIN_FILES = (f"{PLUGINS}/edit.py", f"{PLUGINS}/create.py")
REQUIRED_FILES = (PROMPTS, SWERL_TOOL, ERRORS, SESSION, TOOLS, DEFAULT_TOOLS, *PLUGIN_FILES)

# The module-level constants of swerl_tool.py that are used, with the placeholders each is formatted with.
CONSTANTS = {
    "SYSTEM_UBUNTU": ("session_timeout", "context_size", "max_turns"),
    "SYSTEM_UBUNTU_NO_PLUGINS": ("session_timeout", "context_size", "max_turns"),
    "USER_ISSUE_SOLVING": ("issue", "repo_root"),
    "BUDGET_NOTICE_TEMPLATE": ("remaining_turns", "remaining_tokens"),
    "SUBMISSION_FEEDBACK_PROMPT": ("pred_patch",),
    "FEEDBACK_OUTPUT_PROMPT": ("feedback",),
}
PLUGIN_TOOLS = frozenset({"bash", "edit", "create", "submit"})
BASH_ONLY_TOOLS = frozenset({"bash", "submit"})

_cache: dict[Path, CwmSourceTexts] = {}
_lock = threading.Lock()


def installed_package_root(package: str, required: tuple[str, ...]) -> Path | None:
    """The checkout root above the importable `package` holding every `required` file (never imported), else None."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    locations = list(spec.submodule_search_locations or [])
    if not locations and spec.origin:
        locations = [str(Path(spec.origin).parent)]
    for location in locations:
        root = Path(location).resolve().parent
        if all((root / name).is_file() for name in required):
            return root
    return None


def find_cwm_source() -> Path | None:
    """The root of the CWM checkout whose `cwm` package is importable here (found without importing it), else None."""
    return installed_package_root("cwm", tuple(REQUIRED_FILES))


def load_cwm_texts(root: Path) -> CwmSourceTexts:
    """CWM's texts from the checkout at `root`; loaded once per root. UserError when `root` is not a CWM checkout."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise UserError(f"CWM source {root}: not a directory (give the root of a facebookresearch/cwm checkout)")
    root = root.resolve()
    with _lock:
        texts = _cache.get(root)
        if texts is None:
            texts = _cache[root] = CwmSourceTexts(root)
        return texts


class CwmSourceTexts:
    """The `agents.cwm.texts.Texts` interface with CWM's own texts and functions, from a checkout."""

    comparable = True

    def __init__(self, root: Path):
        self.root = root
        for name in REQUIRED_FILES:
            if not (root / name).is_file():
                raise not_cwm(root, f"{name} not found")
        self.plugin_dir = root / PLUGINS
        tree = parse_file(root, SWERL_TOOL)
        self._constants = string_constants(root, tree, CONSTANTS, SWERL_TOOL)
        self._think_end = _think_end_message(root, tree)
        self.budget_template = self._constants["BUDGET_NOTICE_TEMPLATE"]
        self._testgen = None  # the test-generation texts, loaded on first use (cwm_source_testgen.py)
        self._modules = _load_modules(root)
        try:
            self._bind(root)
        except BaseException:
            _unload(self._modules)
            raise

    def _bind(self, root: Path) -> None:
        needed = (("prompts", PROMPTS, "get_cwm_sys_prompt"), ("swerl.errors", ERRORS, "FormatError"),
                  ("swerl.errors", ERRORS, "NoSuchToolError"), ("swerl.tools", TOOLS, "ToolBackend"),
                  ("swerl.tools", TOOLS, "bash_feedback_default"), ("swerl.tools", TOOLS, "submit_diff_file"),
                  ("swerl.default_tools", DEFAULT_TOOLS, "parse_tool_calls"))
        for short, relative, name in needed:
            if not callable(getattr(self._modules[short], name, None)):
                raise not_cwm(root, f"{relative} has no {name}")
        self._prompts = self._modules["prompts"]
        self._tools = self._modules["swerl.tools"]
        self._default_tools = self._modules["swerl.default_tools"]
        self._cwm_format_error = self._modules["swerl.errors"].FormatError
        self._cwm_no_such_tool = self._modules["swerl.errors"].NoSuchToolError
        self.origin = checkout_origin(root, REQUIRED_FILES)
        self._check()

    def __repr__(self) -> str:
        return f"CwmSourceTexts({str(self.root)!r})"

    def __reduce__(self):  # the loaded modules live in this process only: a copy elsewhere loads the checkout again
        return load_cwm_texts, (self.root,)

    # -- texts ---------------------------------------------------------------------------------------------------

    def system_prompt(self, tools: list[str], *, session_timeout: float, context_size: int, max_turns: int) -> str:
        chosen = set(tools)
        if chosen == PLUGIN_TOOLS:
            template = self._constants["SYSTEM_UBUNTU"]
        elif chosen == BASH_ONLY_TOOLS:
            template = self._constants["SYSTEM_UBUNTU_NO_PLUGINS"]
        else:
            raise UserError(f"tools {','.join(tools)}: CWM's environment has bash,edit,create,submit or bash,submit")
        environment = template.format(session_timeout=f"{int(session_timeout)}-second", context_size=context_size,
                                      max_turns=max_turns)
        return self._prompts.get_cwm_sys_prompt(think=True, use_think_tag=True, environment=environment)

    def think_system(self) -> str:  # the think-tag base alone (CWM's LiveCodeBench system prompt)
        return self._prompts.get_cwm_sys_prompt(think=True, use_think_tag=True)

    def issue_prompt(self, issue: str, repo_root: str) -> str:
        return self._constants["USER_ISSUE_SOLVING"].format(issue=issue, repo_root=repo_root)

    def submission_feedback(self, patch: str) -> str:
        return self._constants["SUBMISSION_FEEDBACK_PROMPT"].format(pred_patch=patch)

    def output(self, feedback: str) -> str:
        return self._constants["FEEDBACK_OUTPUT_PROMPT"].format(feedback=feedback)

    def budget(self, remaining_turns: int, remaining_tokens: int) -> str:
        return self.budget_template.format(remaining_turns=remaining_turns, remaining_tokens=remaining_tokens)

    def think_end_error(self, count: int) -> str:
        return "".join(str(count) if part is None else part for part in self._think_end)

    # -- CWM's functions -----------------------------------------------------------------------------------------

    def parse_tool_calls(self, answer: str) -> tuple[str, str]:
        try:
            name, body = self._default_tools.parse_tool_calls(answer)[0]
        except self._cwm_format_error as exc:
            raise FormatError(str(exc)) from None
        return name, body

    def no_such_tool(self, name: str) -> str:
        try:
            self._tools.ToolBackend.apply_tool(_NoTools(), name, "")
        except self._cwm_no_such_tool as exc:
            return str(exc)
        raise UserError(f"CWM source {self.root}: {TOOLS}: ToolBackend.apply_tool accepted the unknown tool {name!r}")

    def bash_notice(self, error_type: str) -> str:
        result = {"status": "error", "output": "", "error_type": error_type, "exit_code": -1}
        return self._tools.bash_feedback_default(result).output

    def submit(self, body: str, run_bash: RunBash) -> tuple[bool, str]:
        result = self._tools.submit_diff_file(_Backend(run_bash), body)
        return bool(result.success), result.output

    def testgen(self):
        """CWM's test-generation texts and submit, from the same checkout (loaded once, on first use)."""
        from agents.cwm.cwm_source_testgen import CwmTestgenTexts

        with _lock:
            if self._testgen is None:
                self._testgen = CwmTestgenTexts(self.root, self._tools)
            return self._testgen

    def _check(self) -> None:
        """Use every text and function once, so a tree that does not fit fails at load and not in the middle of a run."""
        try:
            for tools in (PLUGIN_TOOLS, BASH_ONLY_TOOLS):
                self.system_prompt(sorted(tools), session_timeout=120.0, context_size=131072, max_turns=128)
            self.issue_prompt("issue", "/testbed")
            self.submission_feedback("diff")
            self.output("feedback")
            self.budget(1, 1)
            self.no_such_tool("no_such_tool")
            self.bash_notice("timeout")
            self.submit("patch.diff", lambda command: {"status": "success", "output": "diff\n", "error_type": "none",
                                                       "exit_code": 0})
            try:
                self.parse_tool_calls("no tool call")
            except FormatError:
                pass
        except UserError:
            raise
        except Exception as exc:  # noqa: BLE001 - anything the checkout's code raises here means it does not fit
            raise not_cwm(self.root, f"its texts or functions do not work as expected ({one_line(exc)})") from exc


class _NoTools:
    tools: dict = {}


class _Backend:
    def __init__(self, run_bash: RunBash):
        self.run_bash = run_bash


# -- reading swerl_tool.py with ast -------------------------------------------------------------------------------


def _think_end_message(root: Path, tree: ast.Module) -> list[str | None]:
    """The parts of the f-string message of the FormatError raised in SWERLToolEnv.step: text, or None for the count."""
    where = f"{SWERL_TOOL}: SWERLToolEnv.step"
    env = next((node for node in tree.body if isinstance(node, ast.ClassDef) and node.name == "SWERLToolEnv"), None)
    if env is None:
        raise not_cwm(root, f"{SWERL_TOOL} has no class SWERLToolEnv")
    step = next((node for node in env.body if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
                 and node.name == "step"), None)
    if step is None:
        raise not_cwm(root, f"{where} not found")
    messages = [node.exc.args[0] for node in ast.walk(step)
                if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call)
                and _called_name(node.exc.func).endswith("FormatError")
                and len(node.exc.args) == 1 and isinstance(node.exc.args[0], ast.JoinedStr)]
    if len(messages) != 1:
        raise not_cwm(root, f"{where} raises {len(messages)} FormatErrors with an f-string message, expected 1 "
                             "(the thinking-end count check)")
    parts: list[str | None] = []
    names = set()
    for part in messages[0].values:
        if isinstance(part, ast.Constant) and isinstance(part.value, str):
            parts.append(part.value)
        elif (isinstance(part, ast.FormattedValue) and isinstance(part.value, ast.Name) and part.format_spec is None
              and part.conversion in (-1, ord("s"), ord("r"))):
            parts.append(None)
            names.add(part.value.id)
        else:
            raise not_cwm(root, f"{where}: the thinking-end FormatError message has a part other than text and "
                                 f"plain names (line {messages[0].lineno})")
    if len(names) != 1:
        raise not_cwm(root, f"{where}: the thinking-end FormatError message uses {len(names)} names, expected one "
                             f"(the count; line {messages[0].lineno})")
    return parts


def _called_name(func: ast.expr) -> str:
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return ""


# -- importing the stdlib-only modules from their files -----------------------------------------------------------


def _load_modules(root: Path) -> dict[str, types.ModuleType]:
    """prompts.py and the swerl modules, under `_cwm_source_<hash>`, with empty stand-ins for CWM's packages."""
    base = "_cwm_source_" + hashlib.sha256(str(root).encode()).hexdigest()[:16]
    packages = {base: None, f"{base}.swerl": root / SWERL, f"{base}.swerl.remote": root / SWERL / "remote"}
    files = {"prompts": PROMPTS, "swerl.errors": ERRORS, "swerl.remote.session": SESSION, "swerl.tools": TOOLS,
             "swerl.default_tools": DEFAULT_TOOLS}
    added: list[str] = []
    try:
        for name, path in packages.items():
            package = types.ModuleType(name)
            package.__path__ = [] if path is None else [str(path)]
            package.__package__ = name
            _register(name, package, added)
        loaded = {}
        for short, relative in files.items():
            name = f"{base}.{short}"
            spec = importlib.util.spec_from_file_location(name, root / relative)
            if spec is None or spec.loader is None:
                raise not_cwm(root, f"cannot load {relative}")
            module = importlib.util.module_from_spec(spec)
            _register(name, module, added)
            try:
                spec.loader.exec_module(module)
            except Exception as exc:  # noqa: BLE001 - whatever the file raises, the tree does not fit
                raise not_cwm(root, f"cannot load {relative} ({type(exc).__name__}: {one_line(exc)})") from exc
            loaded[short] = module
        return loaded
    except BaseException:
        for name in reversed(added):
            sys.modules.pop(name, None)
        raise


def _register(name: str, module: types.ModuleType, added: list[str]) -> None:
    """Put the module in sys.modules (relative imports, dataclasses and typing look it up there) and on its parent."""
    if name in sys.modules:  # loaded before (a failed, then fixed, load is retried under the same name): replace it
        sys.modules.pop(name)
    sys.modules[name] = module
    added.append(name)
    parent, _, child = name.rpartition(".")
    if parent:
        setattr(sys.modules[parent], child, module)


def _unload(modules: dict[str, types.ModuleType]) -> None:
    base = next(iter(modules.values())).__name__.split(".")[0]
    for name in [name for name in sys.modules if name == base or name.startswith(base + ".")]:
        sys.modules.pop(name, None)
