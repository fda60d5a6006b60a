"""Run the tracer on a program out of process: in a container with the network off (untrusted code), or in a local
subprocess (trusted code, or another local Python). Either way the process is killed past the timeout and the
frames it had written still count.

    TraceJob(source, entry, args=None, limits=TraceLimits(), filename="<trace>", backend=None)
    run_in_container(job, image=BASE_IMAGE) -> TraceResult
    run_local(job, python=sys.executable) -> TraceResult

The tracer's two stdlib-only files are copied as the package `cwmtrace` and run as `python3 -m cwmtrace.tracer`
(REQUEST.json -> FRAMES.jsonl, one JSON line per frame as it is recorded, then an end line). In the container the
program runs as `nobody`, with 1 CPU, 1 GiB of memory and no network.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from harness.traces.format import Frame
from harness.traces.tracer import TraceLimits, TraceResult

HERE = Path(__file__).resolve().parent
PACKAGE = "cwmtrace"
GRACE = 2.0  # seconds past the tracer's own timeout before its process is killed
KILLED = (124, 137)  # coreutils timeout's codes (TERM, then KILL)
OUTPUT_TAIL = 2000  # bytes of the tracer's stderr kept for an error's detail


@dataclass
class TraceJob:
    source: str
    entry: str
    args: list | dict | None = None
    limits: TraceLimits = field(default_factory=TraceLimits)
    filename: str = "<trace>"
    backend: str | None = None  # None: sys.monitoring where the Python has it, else sys.settrace

    def request(self) -> str:
        return json.dumps({"source": self.source, "entry": self.entry, "args": self.args,
                           "limits": asdict(self.limits), "filename": self.filename, "backend": self.backend})

    @property
    def kill_after(self) -> float:
        return self.limits.timeout + GRACE


def package_files() -> dict[str, bytes]:
    """The tracer as a package: relative paths -> contents."""
    return {f"{PACKAGE}/__init__.py": b"", f"{PACKAGE}/format.py": (HERE / "format.py").read_bytes(),
            f"{PACKAGE}/tracer.py": (HERE / "tracer.py").read_bytes()}


def read_frames(lines: str, exit_code: int | None, output: str, job: TraceJob) -> TraceResult:
    """The result from the frames file; a process that wrote no end line was killed (timeout) or crashed."""
    result = TraceResult()
    for line in lines.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue  # a line cut by the kill
        if "frame" in record:
            result.frames.append(Frame.from_dict(record["frame"]))
        elif "end" in record:
            result.end, result.detail, result.backend = record["end"], record.get("detail", ""), record.get(
                "backend", "")
            return result
    if exit_code in KILLED:
        result.end, result.detail = "timeout", f"killed at the timeout ({job.limits.timeout:g} s)"
    else:
        tail = " ".join(output.split())[-300:]
        result.end, result.detail = "error", f"the tracer exited with code {exit_code}" + (f": {tail}" if tail else "")
    return result


def tail(path: Path) -> str:
    with path.open("rb") as handle:
        handle.seek(max(0, path.stat().st_size - OUTPUT_TAIL))
        return handle.read().decode(errors="replace")


def run_local(job: TraceJob, python: str = sys.executable) -> TraceResult:
    """In a subprocess of `python` on this machine: no sandbox, for trusted code."""
    with tempfile.TemporaryDirectory(prefix="cwm-eval-trace-") as tmp:
        root = Path(tmp)
        for relative, data in package_files().items():
            (root / relative).parent.mkdir(parents=True, exist_ok=True)
            (root / relative).write_bytes(data)
        (root / "request.json").write_text(job.request(), encoding="utf-8")
        frames = root / "frames.jsonl"
        command = [python, "-m", f"{PACKAGE}.tracer", str(root / "request.json"), str(frames)]
        errors = root / "stderr.txt"
        try:
            with errors.open("wb") as stderr:
                done = subprocess.run(command, cwd=root, stdout=subprocess.DEVNULL, stderr=stderr,
                                      timeout=job.kill_after, stdin=subprocess.DEVNULL, check=False)
            code = done.returncode
        except subprocess.TimeoutExpired:
            code = 124
        except OSError as exc:
            return TraceResult(end="error", detail=f"cannot run {python}: {exc}")
        text = frames.read_text(encoding="utf-8", errors="replace") if frames.exists() else ""
        return read_frames(text, code, tail(errors), job)


def run_in_container(job: TraceJob, image: str | None = None) -> TraceResult:
    """In a fresh container of `image` (the harness's base image by default) with the network off."""
    from harness.images import BASE_IMAGE
    from harness.sandbox import Limits, Sandbox

    files = {f"/opt/{relative}": data for relative, data in package_files().items()}
    files["/trace/request.json"] = job.request().encode()
    # the program's output is not kept: its stdout is dropped and only the end of its stderr comes back, so a
    # program that floods them cannot fill the host's memory
    command = (f"chmod 1777 /trace && cd /trace && timeout -k 1 {job.kill_after:g} runuser -u nobody -- "
               f"env PYTHONPATH=/opt python3 -m {PACKAGE}.tracer request.json frames.jsonl "
               f">/dev/null 2> >(tail -c {OUTPUT_TAIL} >&2)")
    with Sandbox.start(image or BASE_IMAGE, phase="trace", workdir="/", network=False,
                       limits=Limits(cpus=1, memory="1g", disk="0")) as sandbox:
        sandbox.write_files(files)
        done = sandbox.exec(command)
        text = sandbox.exec("cat /trace/frames.jsonl 2>/dev/null").output
        return read_frames(text, done.exit_code, done.output, job)
