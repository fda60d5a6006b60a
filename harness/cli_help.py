"""`--help` shows options as users type them: `--max-turns INTEGER`, `--strict-format`, `--help`.

The typer this project installs writes every value's Python type in angle brackets (`<int range>`, `<list[str]>`)
and gives flags one too (`--help <bool>`). `HelpGroup`, the root command group's class, hands every parameter of
every command (the `--help` option included) a class that writes click's names (INTEGER, TEXT, FLOAT, PATH) and
nothing after a flag. A flag that is off unless given is listed alone (`--shuffle`, not `--shuffle --no-shuffle
[default: no-shuffle]`), one that is on as `--packing/--no-packing`: a column of `--no-...` names is what pushed
long option names past 80 columns. Only the help text changes: parsing (`--no-shuffle` still works), errors and the
usage line are typer's.
"""

from __future__ import annotations

import re
from contextlib import contextmanager

from typer.core import TyperArgument, TyperCommand, TyperGroup, TyperOption

NAMES = {"int": "INTEGER", "str": "TEXT", "float": "FLOAT", "path": "PATH", "datetime": "DATETIME"}


def typed_name(label: str) -> str:
    """click's name for typer's type label: `<int range>` -> INTEGER, `<list[str]>` -> TEXT, `<a|b>` -> [a|b]."""
    inner = label.strip("<>").removesuffix(" range")
    element = re.fullmatch(r"list\[(.*)\]", inner)
    inner = element.group(1) if element else inner
    if "|" in inner:
        return f"[{inner}]"
    return NAMES.get(inner, inner.upper())


class ShownOption(TyperOption):
    def display_type_rich(self, ctx) -> str | None:
        if self.is_flag or self.count:
            return None
        if self.metavar is not None:
            return self.metavar
        return typed_name(self.display_type(ctx))


class ShownArgument(TyperArgument):
    def display_type_rich(self, ctx) -> str | None:
        return typed_name(self.display_type(ctx))


@contextmanager
def flags_alone(params):
    """While help is written, a flag is one name: an off-by-default one without its `--no-...` twin and default,
    an on-by-default one as `--packing/--no-packing` (one column of names, not two)."""
    flags = [p for p in params if isinstance(p, TyperOption) and p.is_bool_flag and p.secondary_opts]
    saved = [(p.opts, p.secondary_opts, p.show_default) for p in flags]
    for p in flags:
        if p.default is False:
            p.show_default = False
        else:
            p.opts = [f"{p.opts[0]}/{p.secondary_opts[0]}", *p.opts[1:]]
        p.secondary_opts = []
    try:
        yield
    finally:
        for p, (opts, secondary, show) in zip(flags, saved):
            p.opts, p.secondary_opts, p.show_default = opts, secondary, show


class ShownCommand(TyperCommand):
    def format_help(self, ctx, formatter) -> None:
        with flags_alone(self.params):
            super().format_help(ctx, formatter)


SHOWN = {TyperOption: ShownOption, TyperArgument: ShownArgument, TyperCommand: ShownCommand}


def show_as_typed(command) -> None:
    """Every parameter of `command` and of its subcommands, at any depth, shown as typed in `--help`."""
    context = command.context_class(command, **(command.context_settings or {}))
    params = [*command.params, command.get_help_option(context)]  # the --help option is made once, then cached
    for thing in (command, *params):
        if type(thing) in SHOWN:
            thing.__class__ = SHOWN[type(thing)]  # the same object, its help written differently
    for sub in getattr(command, "commands", {}).values():
        show_as_typed(sub)


class HelpGroup(TyperGroup):
    """The root group: typer builds every command before the group, so all of them are there to adjust."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        show_as_typed(self)
