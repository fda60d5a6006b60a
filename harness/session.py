"""A persistent bash session inside a container that behaves as CWM's shell session.

The shell is `docker exec -i -w / CONTAINER /bin/bash`: a plain non-interactive bash reading commands from a pipe,
stderr merged into stdout. After every (re)start a start script runs through the same protocol, its output
discarded and its failures ignored (see `start_script`).

Protocol, as CWM's: send `command.rstrip() + "\\n"`, then a line saving `$?`, then a sentinel echo; read until the
buffer holds the sentinel; the output is the bytes before its last occurrence, decoded as UTF-8 with invalid bytes
dropped. Commands that read stdin (`cat` with no arguments) swallow the protocol lines and time out, as in CWM.
Here the sentinel carries a random per-shell token and the exit status (no second round trip), plus the
container's last allocated pid and uptime, which the clean-up after an error uses.

Any error (timeout, too much output, the shell exited, a broken pipe) ends the session; the next `run` starts a
fresh bash and reruns the start script, so cwd and exported variables are reset. Unlike CWM, which only SIGTERMs
bash, the clean-up kills every process the failed command started (setsid and nohup ones included, with bash
builtins and /proc only, so images without `ps` work) and leaves processes of earlier commands running; if it
cannot run in the container (a fork bomb filled the pid limit) the container is restarted (`docker restart -t 0`,
its file system survives).
"""

from __future__ import annotations

import os
import re
import secrets
import select
import shlex
import subprocess
import threading
import time
from typing import Literal

from pydantic import BaseModel

from harness.shell_cleanup import kill_command_processes

DEFAULT_TIMEOUT = 120.0
OUTPUT_CAP = 480 * 1024  # CWM's max_buffer_size: 491,520 bytes
MIN_START_TIMEOUT = 30.0  # the start script (source ~/.bashrc, startup commands) gets at least this long

# CWM's first start-script line (default_configs.py): failures anywhere in this `&&` chain are ignored
ULIMIT_KB = 12 * 1024 * 1024
THREAD_LIMIT = 65536
PLUGIN_PYTHON_CANDIDATES = ("/opt/miniconda3/bin/python3", "/usr/bin/python3", "/usr/local/bin/python3", "python3")

ErrorType = Literal["none", "timeout", "too_long", "exit", "broken_pipe", "other"]

TAG_VAR = "__CWM_CMD_ID"  # exported right before each command: its processes carry it in /proc/PID/environ
EXIT_CODE_VAR = "__EXIT_CODE__"  # CWM's name for the saved `$?`
_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def start_script(workdir: str, startup: str = "", plugin_python: str = "python3") -> str:
    """CWM's session start script: environment line, the task's startup commands, then `cd workdir`."""
    first = (
        f"export PYPLUGIN_PYTHON_PATH={shlex.quote(plugin_python)} && export LC_ALL=en_US.UTF-8 && "
        f"export LANG=en_US.UTF-8 && source ~/.bashrc && ulimit -v {ULIMIT_KB} && ulimit -d {ULIMIT_KB} && "
        f"ulimit -u {THREAD_LIMIT}"
    )
    return f"{first}\n{startup}\ncd {shlex.quote(workdir)}"


_build_start_script = start_script  # BashSession's constructor argument has the same name

_FIND_PYTHON = (
    "for p in " + " ".join(shlex.quote(c) for c in PLUGIN_PYTHON_CANDIDATES) + "; do "
    'if command -v "$p" >/dev/null 2>&1 && '
    '"$p" -c "import sys; sys.exit(0 if sys.version_info >= (3, 6) else 1)" >/dev/null 2>&1; '
    'then echo "$p"; exit 0; fi; done; echo python3'
)


def find_plugin_python(sandbox) -> str:
    """The Python that runs the edit/create plugins: the first candidate that exists and is >= 3.6.

    SWE-bench images' own testbed Python can be older, so the plugins need a pinned one. One docker exec.
    """
    try:
        result = sandbox.exec(_FIND_PYTHON, workdir="/")
    except Exception:  # noqa: BLE001 - a missing answer falls back to PATH's python3
        return "python3"
    lines = (result.output or "").strip().splitlines()
    found = lines[-1].strip() if lines else ""
    return found if found in PLUGIN_PYTHON_CANDIDATES else "python3"


class CommandResult(BaseModel):
    """One command's result. On an error `output` holds the raw partial buffer and `exit_code` is None."""

    output: str
    exit_code: int | None = None
    error: ErrorType = "none"
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error == "none"

    @property
    def restarted(self) -> bool:
        """The session ended with this command; the next one runs in a fresh shell."""
        return not self.ok


class SessionDied(Exception):
    """The shell could not be started (or its start script ended it)."""


def _write(fd: int, data: memoryview) -> int:
    """Write what a non-blocking pipe takes now (a long command goes in pieces while output is read)."""
    try:
        return os.write(fd, data)
    except BlockingIOError:
        return 0


class _Shell:
    """One `docker exec ... /bin/bash` and what the clean-up needs to know about it."""

    def __init__(self, proc: subprocess.Popen):
        self.proc = proc
        self.stdin = proc.stdin.fileno()
        self.stdout = proc.stdout.fileno()
        os.set_blocking(self.stdin, False)
        self.poller = select.poll()
        self.poller.register(self.stdout, select.POLLIN)
        self.token = secrets.token_hex(12)
        self.sentinel = re.compile(rb"<<cwm:" + self.token.encode() + rb">(-?\d+):(\d*):(\d*)\.?(\d*)>>\n")
        # Protocol lines run in `{ ...; } 2>/dev/null` groups, so under `set -x` their traces go nowhere (and the
        # sentinel is assembled by printf, so no trace or echo of the input could contain it).
        self.sentinel_command = (
            "{ __cwm_lp=; __cwm_up=; builtin read -r __cwm_lp </proc/sys/kernel/ns_last_pid; "
            "builtin read -r __cwm_up _ </proc/uptime; "
            f"builtin printf '<<%s%s>%s:%s:%s>>\\n' cwm: {self.token} \"${EXIT_CODE_VAR}\" "
            "\"$__cwm_lp\" \"$__cwm_up\"; } 2>/dev/null\n"
        )
        self.counter = 0
        self.bash_pid: int | None = None
        self.tag = ""  # the command in flight (or the last one)
        self.last_pid = -1  # the container's last allocated pid when the previous command ended
        self.last_tick = 0  # and its uptime, in clock ticks
        self.busy = False
        self.lock = threading.Lock()
        self.stream_closed = False
        self.cleaned = False

    def close_stream(self) -> None:
        """Kill the host-side docker CLI (the in-container bash then reads EOF and exits when idle)."""
        with self.lock:
            if self.stream_closed:
                return
            self.stream_closed = True
        try:
            self.proc.kill()
        except OSError:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass

    def release_fds(self) -> None:
        for stream in (self.proc.stdin, self.proc.stdout):
            try:
                stream.close()
            except OSError:
                pass


class BashSession:
    """A long-lived bash inside a container: cwd and exported variables persist between commands."""

    def __init__(
        self,
        container_id: str,
        *,
        workdir: str = "/",
        timeout: float = DEFAULT_TIMEOUT,
        output_cap: int = OUTPUT_CAP,
        start_script: str | None = None,
        start_timeout: float | None = None,
        docker_bin: str = "docker",
    ):
        self.container_id = container_id
        self.workdir = workdir
        self.timeout = timeout
        self.output_cap = output_cap
        self.start_script = _build_start_script(workdir) if start_script is None else start_script
        self.start_timeout = max(timeout, MIN_START_TIMEOUT) if start_timeout is None else start_timeout
        self.docker_bin = docker_bin
        self._shell: _Shell | None = None

    # -- lifecycle ---------------------------------------------------------------
    def start(self) -> None:
        """Start a fresh bash (ending any current one) and run the start script in it."""
        if self._shell is not None:
            self._end(self._shell, cleanup=False)
        argv = [self.docker_bin, "exec", "-i", "-w", "/", self.container_id, "/bin/bash"]
        try:
            proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                    bufsize=0, start_new_session=True)
        except OSError as exc:
            raise SessionDied(f"could not run {self.docker_bin}: {exc}") from None
        shell = _Shell(proc)
        self._shell = shell
        # stderr into stdout inside the container, so both keep their order; then the shell's pid for the clean-up
        hello = self._exchange(shell, "exec 2>&1\necho $$", self.start_timeout)
        if hello.ok:
            try:
                shell.bash_pid = int(hello.output.split()[-1])
            except (ValueError, IndexError):
                hello = hello.model_copy(update={"error": "other"})
        if not hello.ok:
            self._end(shell, cleanup=hello.error != "exit")
            raise SessionDied(f"could not start bash in {self.container_id[:12]} ({hello.error}): "
                              f"{hello.output.strip()[-500:]}")
        if self.start_script.strip():
            started = self._exchange(shell, self.start_script, self.start_timeout)  # output discarded
            if not started.ok:  # the script hung, flooded or ended the shell: this environment is unusable
                self._end(shell, cleanup=started.error != "exit")
                raise SessionDied(f"the session start script failed in {self.container_id[:12]} "
                                  f"({started.error}): {started.output.strip()[-500:]}")

    def close(self) -> None:
        """End the session. A command still running (in another thread) is killed with everything it started."""
        shell, self._shell = self._shell, None
        if shell is None:
            return
        if shell.busy:
            self._end(shell, cleanup=True, release=False)  # the running `run` releases the pipes
        else:
            self._end(shell, cleanup=False)

    def restart(self) -> None:
        if self._shell is not None:
            self._end(self._shell, cleanup=True)
        self.start()

    @property
    def alive(self) -> bool:
        shell = self._shell
        return shell is not None and shell.proc.poll() is None

    # -- commands ----------------------------------------------------------------
    def run(self, command: str, timeout: float | None = None) -> CommandResult:
        """Run one command (any bash text, multi-line allowed) and wait for it.

        Starts the shell first if the previous command ended it (the start script reruns).
        """
        timeout = self.timeout if timeout is None else timeout
        if self._shell is None:
            self.start()
        shell = self._shell
        result = self._exchange(shell, command, timeout)
        if not result.ok:
            if self._shell is shell:
                self._shell = None
            self._end(shell, cleanup=result.error != "exit")
        return result

    def _exchange(self, shell: _Shell, command: str, timeout: float) -> CommandResult:
        started = time.monotonic()
        shell.counter += 1
        shell.tag = f"{shell.token}.{shell.counter}"
        shell.busy = True
        buf = bytearray()
        try:
            payload = (f"{{ export {TAG_VAR}={shell.tag}; }} 2>/dev/null\n{command.rstrip()}\n"
                       f"{{ {EXIT_CODE_VAR}=$?; }} 2>/dev/null\n{shell.sentinel_command}").encode()
            return self._send_and_read(shell, memoryview(payload), buf, started, started + timeout)
        except (BrokenPipeError, ConnectionResetError) as exc:
            return self._error(shell, "broken_pipe", buf, started, str(exc))
        except Exception as exc:  # noqa: BLE001 - CWM reports anything else as "other"
            return self._error(shell, "other", buf, started, f"{type(exc)}: {exc}")
        finally:
            shell.busy = False

    def _send_and_read(self, shell: _Shell, pending: memoryview, buf: bytearray, started: float,
                       deadline: float) -> CommandResult:
        pending = pending[_write(shell.stdin, pending):]
        if pending:
            shell.poller.register(shell.stdin, select.POLLOUT)
        scan_from = 0
        try:
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    error = "exit" if shell.proc.poll() is not None else "timeout"
                    return self._error(shell, error, buf, started)
                for fd, events in shell.poller.poll(max(1, int(remaining * 1000 + 1))):
                    if fd == shell.stdin:
                        if events & (select.POLLERR | select.POLLHUP):
                            raise BrokenPipeError("the shell's input closed")
                        pending = pending[_write(shell.stdin, pending):]
                        if not pending:
                            shell.poller.unregister(shell.stdin)
                        continue
                    chunk = os.read(shell.stdout, 65536)
                    if not chunk:  # the docker exec ended: the shell is gone
                        try:
                            shell.proc.wait(timeout=5)
                        except subprocess.TimeoutExpired:
                            pass
                        return self._error(shell, "exit", buf, started)
                    buf += chunk
                    match = None
                    for match in shell.sentinel.finditer(buf, max(0, scan_from - 200)):
                        pass
                    scan_from = len(buf)
                    if match is not None and not pending:
                        if match.end() > self.output_cap:
                            return self._error(shell, "too_long", buf, started)
                        code, last_pid, up_s, up_cs = match.groups()
                        shell.last_pid = int(last_pid) if last_pid else -1
                        if up_s:
                            shell.last_tick = (int(up_s) * 100 + int(up_cs or 0)) * _CLK_TCK // 100
                        return CommandResult(output=bytes(buf[: match.start()]).decode("utf-8", errors="ignore"),
                                             exit_code=int(code), seconds=time.monotonic() - started)
                    if len(buf) > self.output_cap:
                        return self._error(shell, "too_long", buf, started)
        finally:
            if pending:
                try:
                    shell.poller.unregister(shell.stdin)
                except (KeyError, ValueError):
                    pass

    @staticmethod
    def _error(shell: _Shell, error: ErrorType, buf: bytearray, started: float, text: str | None = None
               ) -> CommandResult:
        output = text if text is not None else bytes(buf).decode("utf-8", errors="ignore")
        return CommandResult(output=output, exit_code=None, error=error, seconds=time.monotonic() - started)

    # -- clean-up ----------------------------------------------------------------
    def _end(self, shell: _Shell, *, cleanup: bool, release: bool = True) -> None:
        """End one shell: close its stream first, then (if asked) kill what its last command started.

        Never raises. The stream goes first: on Docker 20.10 a new exec while a stalled exec stream with unread
        output is open blocks every exec into the container for 30 s.
        """
        if self._shell is shell:
            self._shell = None
        try:
            shell.close_stream()
            if cleanup:
                with shell.lock:
                    todo, shell.cleaned = not shell.cleaned, True
                if todo:
                    self._kill_in_container(shell)
        except Exception:  # noqa: BLE001 - the trial goes on whatever the clean-up met
            pass
        finally:
            if release:
                shell.release_fds()

    def _kill_in_container(self, shell: _Shell) -> None:
        kill_command_processes(self.docker_bin, self.container_id, shell.bash_pid, shell.tag, shell.last_pid,
                               shell.last_tick)

    def __enter__(self) -> BashSession:
        if self._shell is None:
            self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()
