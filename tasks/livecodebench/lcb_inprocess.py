"""The worker of the LiveCodeBench runner: one process per sample that runs the program IN PROCESS, the way CWM's
executor (protocol "cwm") and lcb_runner's (protocol "lcb_runner") do. Stdlib only: sandbox_runner.py starts it
from the same folder, as nobody, with stdin and stdout on /dev/null and stderr on a pipe.

    python3 -I lcb_inprocess.py SPEC.json CHANNEL_FD

SPEC.json holds {"code_path", "fn_name", "protocol", "timeout" (whole seconds), "inputs"}. The worker loads the
program once, then runs the tests in turn and sends one frame per test on the channel: the captured stdout
(stdio problems) or the pickled return value (functional problems). It never sees an expected output: the runner
compares, and kills the worker at the first failure or when the sample runs past its overall bound.

What the program sees (both references): stdio code is moved into `def wrapped_function():` (top-level imports
stay at module level) after the import prelude; per test sys.stdout is a fresh StringIO, and stdin is fed through
unittest.mock patches (see `fed_stdin`); SystemExit inside a stdio test is swallowed. The prelude's star imports
bind `stdin`, `stdout`, `open`, `exit`... at load time, to the real objects.

Where this differs from the references' code (not in a verdict, short of pathological programs): the alarm
handler prints its own line into the captured stdout; a functional answer leaves the process as a pickle (the
runner compares plain values only: see sandbox_runner.py); the worker sends per test rather than once at the end.

Frames: a 4-byte big-endian length, then a pickled tuple of plain values:
    ("loaded",) | ("compile_error", text) | ("test", index, kind, payload, seconds, error)
with kind "output" (payload: the captured text), "value" (payload: the value's own pickle), "unpicklable"
(payload: its type's name), "too_large", "timeout" or "runtime_error".
"""

from __future__ import annotations

import ast
import faulthandler
import io
import json
import os
import pickle
import select
import signal
import struct
import sys
import time
import traceback
import types
from contextlib import ExitStack
from unittest.mock import mock_open, patch

PROTOCOLS = ("cwm", "lcb_runner")
HEADER = struct.Struct(">I")
MAX_FRAME = 64 << 20  # bytes of one pickled frame; a bigger answer is a wrong answer ("too_large")
PRELUDE_MODULES = ("string", "re", "datetime", "collections", "heapq", "bisect", "copy", "math", "random",
                   "statistics", "itertools", "functools", "operator", "io", "sys", "json")
RECURSION_LIMIT = {"cwm": 6 * 10**5, "lcb_runner": 50000}
WRAPPER = "wrapped_function"
# what pyext's RuntimeModule (CWM) leaves out of the module it builds from the executed namespace
MODULE_DUNDERS = {"__name__", "__doc__", "__package__", "__loader__", "__spec__", "__file__", "__cached__",
                  "__builtins__"}
# lcb_runner's reliability_guard with maximum_memory_bytes=None, as data: attributes it sets to None
GUARDED = {"os": ("kill", "system", "putenv", "remove", "removedirs", "rmdir", "fchdir", "setuid", "fork",
                  "forkpty", "killpg", "rename", "renames", "truncate", "replace", "unlink", "fchmod", "fchown",
                  "chmod", "chown", "chroot", "lchflags", "lchmod", "lchown", "getcwd", "chdir"),
           "shutil": ("rmtree", "move", "chown"), "subprocess": ("Popen",), "builtins": ("quit", "help")}
BLOCKED_MODULES = ("ipdb", "joblib", "resource", "psutil", "tkinter")


class TimeoutException(Exception):
    """The per-test alarm. An Exception, so a program's `except Exception` can swallow it, as in both references."""


def on_alarm(signum, frame):
    print("[cwm-eval] alarm: the test's time limit")  # into the captured stdout, where the references print too
    raise TimeoutException


def prelude(protocol: str) -> str:
    lines = [f"from {name} import *" for name in (*PRELUDE_MODULES, "builtins", "typing")]
    lines += [f"import {name}" for name in PRELUDE_MODULES]
    return "\n".join(lines + [f"sys.setrecursionlimit({RECURSION_LIMIT[protocol]})"]) + "\n"


def inline_main_guard(code: str) -> str:
    """A LAST top-level `if __name__ == '__main__':` is replaced by its body; any other is left to never run."""
    try:
        body = ast.parse(code).body
        last = body[-1]
        if isinstance(last, ast.If) and ast.unparse(last.test).strip() == "__name__ == '__main__'":
            return ast.unparse(body[:-1]) + "\n" + ast.unparse(last.body)
    except BaseException:  # noqa: BLE001 - the references keep the code as it is on any failure
        pass
    return code


def wrap_stdio(code: str, protocol: str) -> str:
    """Top-level imports stay; every other statement becomes the body of a function (so `global x` on a former
    top-level name raises NameError, and an empty body does not compile). On any failure, the code as it is."""
    try:
        imports, others = [], []
        for statement in ast.parse(code).body:
            (imports if isinstance(statement, (ast.Import, ast.ImportFrom)) else others).append(statement)
        no_args = ast.arguments(posonlyargs=[], args=[], kwonlyargs=[], kw_defaults=[], defaults=[])
        function = ast.FunctionDef(name=WRAPPER, args=no_args, body=others, decorator_list=[], lineno=-1)
        return prelude(protocol) + "\n" + ast.unparse(imports) + "\n" + ast.unparse(function)
    except Exception:  # noqa: BLE001
        return code


def module_text(code: str, protocol: str, fn_name: str | None) -> str:
    return prelude(protocol) + "\n\n" + code if fn_name else wrap_stdio(inline_main_guard(code), protocol)


def load(text: str, protocol: str, name: str, seconds: int):
    """The callable to test, or raises. CWM executes into a plain dict (`__name__` is then builtins' own);
    lcb_runner into a fresh module's namespace."""
    signal.alarm(seconds)
    try:
        if protocol == "cwm":
            namespace: dict = {}
            exec(text, namespace)  # noqa: S102
            module = types.ModuleType("tmp_sol")
            module.__dict__.update((k, v) for k, v in namespace.items() if k not in MODULE_DUNDERS)
        else:
            module = types.ModuleType("tmp_sol")
            exec(text, module.__dict__)  # noqa: S102
        target = module.Solution() if "class Solution" in text else module
        if not hasattr(target, name):
            raise AttributeError(f"no {name} to call")
        return getattr(target, name)
    finally:
        signal.alarm(0)


class MockStdin:
    """lcb_runner's stdin: read() and readlines() see the whole input, readline() reads on, .buffer gives bytes;
    anything else (iteration excepted: __iter__ is looked up on the type) comes from a StringIO."""

    def __init__(self, text: str):
        self.text, self.stream, self.buffer = text, io.StringIO(text), MockBuffer(text)

    def read(self, *args):
        return self.text

    def readline(self, *args):
        return self.stream.readline(*args)

    def readlines(self, *args):
        return self.text.split("\n")

    def __getattr__(self, name):
        return getattr(self.stream, name)


class MockBuffer:
    def __init__(self, text: str):
        self.data = text.encode("utf-8")

    def read(self, *args):
        return self.data

    def readline(self, *args):
        return self.data.split(b"\n")[0] + b"\n"


def fed_stdin(stack: ExitStack, text: str, protocol: str) -> None:
    """The patches in the references' order: read/readlines/readline onto the ORIGINAL sys.stdin (what a
    load-time `from sys import stdin` holds), then sys.stdin replaced, then builtins.open mocked."""
    lines = iter(text.split("\n"))
    stack.enter_context(patch("sys.stdin.read", lambda *args: text))
    stack.enter_context(patch("sys.stdin.readlines", lambda *args: text.split("\n")))
    stack.enter_context(patch("sys.stdin.readline", lambda *args: next(lines)))
    stack.enter_context(patch("sys.stdin", io.StringIO(text) if protocol == "cwm" else MockStdin(text)))
    stack.enter_context(patch("builtins.open", mock_open(read_data=text)))


class Captured:
    """sys.stdout as a fresh StringIO whose close() wants one argument (so a bare close() raises TypeError)."""

    def __enter__(self):
        self.saved, self.stream = sys.stdout, io.StringIO()
        self.stream.close = lambda _unused: 1
        sys.stdout = self.stream
        return self

    def __exit__(self, *exc):
        self.text = self.stream.getvalue()
        sys.stdout = self.saved


class Channel:
    def __init__(self, fd: int):
        self.fd = fd

    def send(self, *frame) -> None:
        self.write(pickle.dumps(frame, protocol=5))

    def write(self, data: bytes) -> None:
        view = memoryview(HEADER.pack(len(data)) + data)
        while view:
            view = view[os.write(self.fd, view):]

    def test(self, index: int, kind: str, payload=None, seconds: float = 0.0, error: str | None = None) -> None:
        data = pickle.dumps(("test", index, kind, payload, round(seconds, 4), error), protocol=5)
        if len(data) > MAX_FRAME:
            data = pickle.dumps(("test", index, "too_large", None, round(seconds, 4),
                                 f"the answer takes {len(data)} bytes, more than {MAX_FRAME}"), protocol=5)
        self.write(data)


# --- the runner's end of the channel (sandbox_runner.py loads this file) -------------------------------------


class NotPlain(pickle.UnpicklingError):
    def __init__(self, name: str):
        super().__init__(name)
        self.name = name


class PlainUnpickler(pickle.Unpickler):
    """Plain builtin values only: protocol 5 writes sets, frozensets and bytearrays with their own opcodes, so the
    one class it may name is complex."""

    def find_class(self, module, name):
        if (module, name) == ("builtins", "complex"):
            return complex
        raise NotPlain(f"{module}.{name}")

    def persistent_load(self, pid):
        raise pickle.UnpicklingError("no persistent ids")


def plain_loads(data: bytes):
    return PlainUnpickler(io.BytesIO(data)).load()


class FrameReader:
    """The runner's end: frames, each awaited until a deadline, with the tail of the worker's stderr kept aside.
    Nothing in a frame is trusted: it is rebuilt from plain values, and anything else reads as "garbled"."""

    def __init__(self, channel: int, stderr: int):
        self.channel, self.stderr = channel, stderr
        self.buffer, self.tail, self.eof = bytearray(), b"", False

    def next(self, deadline: float):
        """A frame (a tuple), or "timeout", "eof" or "garbled"."""
        while True:
            if len(self.buffer) >= HEADER.size:
                (size,) = HEADER.unpack_from(self.buffer)
                if size > MAX_FRAME:
                    return "garbled"
                if len(self.buffer) >= HEADER.size + size:
                    data = bytes(self.buffer[HEADER.size:HEADER.size + size])
                    del self.buffer[:HEADER.size + size]
                    try:
                        frame = plain_loads(data)
                    except Exception:  # noqa: BLE001 - anything a forged frame provokes
                        return "garbled"
                    return frame if isinstance(frame, tuple) and frame else "garbled"
            if self.eof:
                return "eof"
            left = deadline - time.monotonic()
            if left <= 0:
                return "timeout"
            self.read(left)

    def read(self, timeout: float) -> None:
        fds = [self.channel] + ([self.stderr] if self.stderr is not None else [])
        for fd in select.select(fds, [], [], timeout)[0]:
            chunk = os.read(fd, 1 << 20)
            if fd == self.channel:
                self.eof = self.eof or not chunk
                self.buffer += chunk
            elif chunk:
                self.tail = (self.tail + chunk)[-1500:]
            else:
                self.stderr = None

    def stderr_tail(self) -> str:
        return self.tail.decode(errors="replace")


def failure(exc: BaseException) -> tuple[str, str]:
    """(kind, error text) of an exception a test raised. A BaseException that is not an Exception ends the
    references' worker: a runtime error here too."""
    try:
        text = repr(exc)
    except BaseException:  # noqa: BLE001
        text = type(exc).__name__
    timed_out = isinstance(exc, Exception) and "timeoutexception" in text.lower()
    kind = "timeout" if timed_out else "runtime_error"
    try:  # the program's frames only: this file's are the same for every program
        frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename != __file__][-4:]
        text = "".join(["Traceback (most recent call last):\n", *traceback.format_list(frames),
                        *traceback.format_exception_only(exc)])
    except BaseException:  # noqa: BLE001
        pass
    return kind, text[-1500:]


def encoded(value) -> tuple[str, object]:
    """("value", its pickle) or why it cannot be sent. The runner unpickles plain builtin values only."""
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(min(limit, 10000))  # pickling recurses in C: CWM's 6*10**5 would overflow the C stack
    try:
        data = pickle.dumps(value, protocol=5)
    except BaseException as exc:  # noqa: BLE001 - a program's own __reduce__ may raise anything
        kind = type(value)
        return "unpicklable", f"{kind.__module__}.{kind.__qualname__} ({type(exc).__name__}: {str(exc)[:200]})"
    finally:
        sys.setrecursionlimit(limit)
    return "value", data


def timed(call, seconds: int):
    """(value, failure or None, seconds taken) of `call()` under the per-test alarm, as the references time a test."""
    started, value, outcome = time.monotonic(), None, None
    signal.alarm(seconds)
    faulthandler.enable()
    try:
        value = call()
        signal.alarm(0)
    except BaseException as exc:  # noqa: BLE001 - SystemExit included: it fails a functional test
        signal.alarm(0)
        outcome = failure(exc)
    finally:
        signal.alarm(0)
        faulthandler.disable()
    return value, outcome, time.monotonic() - started


def run_main(method, text: str, protocol: str) -> None:
    with ExitStack() as stack:
        fed_stdin(stack, text, protocol)
        try:
            method()
        except SystemExit:  # swallowed: the output so far is graded
            pass


def run_stdio(method, inputs: list[str], protocol: str, seconds: int, channel: Channel) -> None:
    for index, text in enumerate(inputs):
        with Captured() as captured:
            _, outcome, elapsed = timed(lambda: run_main(method, text, protocol), seconds)
        if outcome is not None:
            channel.test(index, outcome[0], None, elapsed, outcome[1])
            return
        channel.test(index, "output", captured.text, elapsed)


def run_functional(method, inputs: list[str], seconds: int, channel: Channel) -> None:
    arguments = [[json.loads(line) for line in text.split("\n")] for text in inputs]
    for index, args in enumerate(arguments):
        value, outcome, elapsed = timed(lambda: method(*args), seconds)
        if outcome is not None:
            channel.test(index, outcome[0], None, elapsed, outcome[1])
            return
        if isinstance(value, tuple):  # a top-level tuple only, as both references do
            value = list(value)
        kind, payload = encoded(value)
        channel.test(index, kind, payload, elapsed)


def reliability_guard() -> None:
    """lcb_runner's guard as it runs there (no memory limit): destructive functions set to None."""
    import builtins
    import shutil
    import subprocess

    faulthandler.disable()
    os.environ["OMP_NUM_THREADS"] = "1"
    modules = {"os": os, "shutil": shutil, "subprocess": subprocess, "builtins": builtins}
    for module, names in GUARDED.items():
        for name in names:
            setattr(modules[module], name, None)
    for name in BLOCKED_MODULES:
        sys.modules[name] = None


def main() -> int:
    channel = Channel(int(sys.argv[2]))
    with open(sys.argv[1]) as fh:
        spec = json.load(fh)
    with open(spec["code_path"], errors="replace") as fh:
        code = fh.read()
    protocol, fn_name, seconds = spec["protocol"], spec.get("fn_name"), int(spec["timeout"])
    signal.signal(signal.SIGALRM, on_alarm)
    if protocol == "lcb_runner":
        sys.set_int_max_str_digits(50000)  # lcb_runner's evaluation sets it in the process its workers fork from
        reliability_guard()
    text = module_text(code, protocol, fn_name)
    try:
        method = load(text, protocol, fn_name or WRAPPER, seconds)
    except Exception as exc:  # noqa: BLE001
        channel.send("compile_error", failure(exc)[1])
        return 0
    channel.send("loaded")
    if fn_name:
        run_functional(method, spec["inputs"], seconds, channel)
    else:
        run_stdio(method, spec["inputs"], protocol, seconds, channel)
    return 0


if __name__ == "__main__":
    sys.exit(main())
