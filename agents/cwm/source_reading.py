"""Reading a user's CWM checkout without running it: a file parsed with `ast`, its module-level string constants,
the checkout's origin (root and commit), and the one-line error for a tree that is not a CWM checkout."""

from __future__ import annotations

import ast
import subprocess
from pathlib import Path
from typing import Any

from harness.errors import UserError


def parse_file(root: Path, name: str) -> ast.Module:
    try:
        return ast.parse((root / name).read_text(encoding="utf-8"), filename=str(root / name))
    except (OSError, UnicodeDecodeError, SyntaxError, ValueError) as exc:
        raise not_cwm(root, f"cannot read {name} ({one_line(exc)})") from exc


def string_value(node: ast.expr) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if (isinstance(node, ast.Call) and not node.args and not node.keywords and isinstance(node.func, ast.Attribute)
            and node.func.attr == "strip" and isinstance(node.func.value, ast.Constant)
            and isinstance(node.func.value.value, str)):
        return node.func.value.value.strip()
    return None


def string_constants(root: Path, tree: ast.Module, constants: dict[str, tuple[str, ...]],
                     where: str) -> dict[str, str]:
    """The module-level string constants `constants` (name -> allowed placeholders) of `tree`, the file `where`."""
    found: dict[str, str] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            target, value = node.targets[0].id, node.value
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
            target, value = node.target.id, node.value
        else:
            continue
        if target in constants:
            text = string_value(value)
            if text is None:
                raise not_cwm(root, f"{where}: {target} is not a string literal")
            found[target] = text
    for name, fields in constants.items():
        if name not in found:
            raise not_cwm(root, f"{where} has no string constant {name}")
        try:
            found[name].format(**{field: "" for field in fields})
        except (KeyError, IndexError, ValueError) as exc:
            raise not_cwm(root, f"{where}: {name} has placeholders other than "
                                 f"{', '.join('{' + field + '}' for field in fields)} ({one_line(exc)})") from exc
    return found




def checkout_origin(root: Path, files: tuple[str, ...]) -> str:
    """The root, plus its commit when it is the top of a git work tree ("+modified" when `files` changed)."""
    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=30,
                                  check=False)
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    top = git("rev-parse", "--show-toplevel")
    commit = git("rev-parse", "HEAD") if top is not None and Path(top).resolve() == root else None
    if not commit:
        return str(root)
    changed = git("status", "--porcelain", "--untracked-files=no", "--", *files)
    return f"{root} @ {commit}" + (" +modified" if changed else "")


def not_cwm(root: Path, problem: str) -> UserError:
    return UserError(f"CWM source {root}: {one_line(problem)} - is this a checkout of facebookresearch/cwm?")


def one_line(value: Any) -> str:
    return " ".join(str(value).split())
