"""Plain data: values built only of the exact builtin types None, bool, int, float, complex, str, bytes, list,
tuple, dict, set and frozenset (no subclasses), bounded in depth and size, and their JSON encoding.

Stdlib only: copied into the grading container, where the predicted OUTPUT is evaluated by an unprivileged process
that prints its value's encoding (evaluate_output.py), and the root process that runs the program decodes it and
compares (sandbox_check.py). The encoding carries no behaviour: whatever the evaluated value did (`__eq__`,
`__hash__`, a subclass) stays in the process that evaluated it, and only data of these types comes back.

    encode(value) -> JSON-able tree, or NotPlainData      ["i", "12"], ["s", "ab"], ["l", [...]], ...
    decode(tree) -> value, or NotPlainData                 the inverse; refuses what encode never writes
    same(truth, predicted) -> bool                         truth == predicted (Python's equality)
"""

from __future__ import annotations

import base64

MAX_DEPTH = 100
MAX_NODES = 100_000  # values in all, containers included
MAX_TEXT = 1_000_000  # characters and bytes of all str, bytes and int values together
MAX_INT = 10 ** 4000  # ints past Python's own int/str conversion bound are refused

SCALARS = {type(None): "n", bool: "b", int: "i", float: "f", complex: "c", str: "s", bytes: "y"}
SEQUENCES = {list: "l", tuple: "t", set: "S", frozenset: "F"}
TAGS = {tag: kind for kind, tag in {**SCALARS, **SEQUENCES, dict: "d"}.items()}


class NotPlainData(ValueError):
    """The value holds something other than plain data, or more of it than the bounds allow."""


class _Budget:
    def __init__(self):
        self.nodes, self.text = 0, 0

    def spend(self, depth: int, text: int = 0) -> None:
        self.nodes += 1
        self.text += text
        if depth > MAX_DEPTH:
            raise NotPlainData(f"nested deeper than {MAX_DEPTH} levels")
        if self.nodes > MAX_NODES:
            raise NotPlainData(f"more than {MAX_NODES} values")
        if self.text > MAX_TEXT:
            raise NotPlainData(f"more than {MAX_TEXT} characters of text")


def encode(value) -> list:
    return _encode(value, 0, _Budget())


def _encode(value, depth: int, budget: _Budget) -> list:
    kind = type(value)  # exact: a subclass of int or str is not plain data
    if kind in (type(None), bool):
        budget.spend(depth)
        return [SCALARS[kind], value]
    if kind is int:
        if abs(value) >= MAX_INT:
            raise NotPlainData("an int of more than 4000 digits")
        text = str(value)
        budget.spend(depth, len(text))
        return ["i", text]
    if kind is float:
        budget.spend(depth)
        return ["f", repr(value)]
    if kind is complex:
        budget.spend(depth)
        return ["c", repr(value.real), repr(value.imag)]
    if kind is str:
        budget.spend(depth, len(value))
        return ["s", value]
    if kind is bytes:
        budget.spend(depth, len(value))
        return ["y", base64.b64encode(value).decode()]
    if kind in SEQUENCES:
        budget.spend(depth)
        return [SEQUENCES[kind], [_encode(item, depth + 1, budget) for item in value]]
    if kind is dict:
        budget.spend(depth)
        return ["d", [[_encode(k, depth + 1, budget), _encode(v, depth + 1, budget)] for k, v in value.items()]]
    raise NotPlainData(f"a value of type {_name(kind)}")


def _name(kind: type) -> str:
    try:
        return str(type.__dict__["__name__"].__get__(kind))[:80]  # not the class's own, possibly hostile, lookup
    except Exception:  # noqa: BLE001
        return "?"


def decode(tree):
    return _decode(tree, 0, _Budget())


def _decode(tree, depth: int, budget: _Budget):
    if not isinstance(tree, list) or not tree or tree[0] not in TAGS:
        raise NotPlainData(f"not an encoded value: {str(tree)[:80]}")
    tag, rest = tree[0], tree[1:]
    kind = TAGS[tag]
    try:
        if tag in "nb":
            (value,) = rest
            budget.spend(depth)
            if type(value) is not kind:
                raise NotPlainData(f"a {tag} node holding {value!r}")
            return value
        if tag in "isy":
            (text,) = rest
            budget.spend(depth, len(text))
            return int(text) if tag == "i" else text if tag == "s" else base64.b64decode(text, validate=True)
        if tag == "f":
            budget.spend(depth)
            return float(rest[0])
        if tag == "c":
            budget.spend(depth)
            return complex(float(rest[0]), float(rest[1]))
        (items,) = rest
        budget.spend(depth)
        if tag == "d":
            return {_decode(k, depth + 1, budget): _decode(v, depth + 1, budget) for k, v in items}
        return kind(_decode(item, depth + 1, budget) for item in items)
    except (TypeError, ValueError) as exc:  # a malformed node; NotPlainData is a ValueError and passes through
        if isinstance(exc, NotPlainData):
            raise
        raise NotPlainData(f"a malformed {tag} node: {type(exc).__name__}") from None


def same(truth, predicted) -> bool:
    """`truth == predicted`, as CruxEval's assertion compares (1 equals True and 1.0; a list is not a tuple). The
    prediction is decoded plain data, so no behaviour of the model's value takes part; a comparison that raises is
    not equality."""
    try:
        return bool(truth == predicted)
    except Exception:  # noqa: BLE001 - the program's value may compare badly
        return False
