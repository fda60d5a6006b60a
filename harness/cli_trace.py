"""`cwm-eval trace FILE.py --entry FUNC`: a function's execution trace in CWM's format, and the neural debugger."""

from __future__ import annotations

import asyncio
import json
import sys
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import typer

from harness.cli import app
from harness.cli_options import grouped, option
from harness.errors import UserError

FORMATS = ("cwm", "text", "json")
BACKENDS = ("auto", "sys.monitoring", "sys.settrace")


@dataclass
class TracingOptions:
    PANEL: typing.ClassVar[str] = "Tracing"
    args: Optional[str] = option(None, help='the call\'s arguments as JSON: a list (positional) or an object '
                                            '(keywords), e.g. \'[3, "abc"]\'')
    format: str = option("cwm", "--format", help="cwm (CWM's tokens) | text (for people) | json")
    prompt: bool = option(False, help="cwm format: print CWM's trace prompt (the marked source) before the frames")
    local: bool = option(False, help="trace in a subprocess here instead of a container: trusted code only")
    python: Optional[str] = option(None, help="--local: the Python to trace with (default: cwm-eval's; 3.12+ uses "
                                              "sys.monitoring)")
    image: Optional[str] = option(None, help="the container's image (default: the harness's base image)")
    backend: str = option("auto", help="auto (sys.monitoring on 3.12+, else sys.settrace) | sys.monitoring | "
                                       "sys.settrace")
    max_frames: int = option(10_000, min=1, help="stop the trace after this many frames")
    max_repr: int = option(1_000, min=1, help="cut each repr to this many characters")
    timeout: float = option(10.0, min=0.1, help="seconds before the trace is stopped")


@dataclass
class DebuggerOptions:
    PANEL: typing.ClassVar[str] = "Neural debugger (CWM predicts the rest of the trace)"
    predict_from: Optional[int] = option(None, min=0, help="give the model the real trace up to frame N and compare "
                                                          "its continuation frame by frame")
    model_url: Optional[str] = option(None, help="OpenAI-compatible base URL with /v1/completions")
    model: Optional[str] = option(None, help="model name (default: the first the server lists)")
    api_key: Optional[str] = option(None, envvar="OPENAI_API_KEY", show_envvar=True)
    temperature: float = option(0.6, help="sampling temperature (CWM's debugger demo: 0.6)")
    top_p: float = option(0.95)
    max_tokens: int = option(2048, min=1, help="tokens per frame")
    cwm_source: Optional[Path] = option(None, help="a facebookresearch/cwm checkout: the prompt's texts (entry "
                                                   "marker, layout) from its prompting guide and debugger demo")


@dataclass
class TraceCommandOptions:
    tracing: TracingOptions
    debugger: DebuggerOptions


@app.command()
@grouped(TraceCommandOptions)
def trace(
    file: Path = typer.Argument(..., help="the Python file"),
    entry: str = typer.Option(..., "--entry", help="the function to call (top level, or Class.method)"),
    options: TraceCommandOptions = None,
) -> None:
    """Trace one call of a function, frame by frame, in CWM's execution-trace format (in a container, network off)."""
    from harness.traces.format import entry_line
    from harness.traces.run import TraceJob
    from harness.traces.tracer import TraceLimits

    tracing, debugger = options.tracing, options.debugger
    check_choices(tracing)
    source = read_source(file)
    try:
        entry_line(source, entry)
    except SyntaxError as exc:
        raise UserError(f"{file}: not valid Python (line {exc.lineno}: {exc.msg})") from None
    except ValueError as exc:
        raise UserError(f"{file}: {exc}") from None
    limits = TraceLimits(max_frames=tracing.max_frames, max_repr=tracing.max_repr, timeout=tracing.timeout)
    job = TraceJob(source=source, entry=entry, args=parse_args(tracing.args), limits=limits, filename=str(file),
                   backend=None if tracing.backend == "auto" else tracing.backend)
    texts = trace_texts(debugger.cwm_source)
    if debugger.predict_from is not None and not debugger.model_url:
        raise UserError("--predict-from needs --model-url (an OpenAI-compatible server with /v1/completions)")
    result = run_job(job, tracing)
    if result.end == "error" and not result.frames:  # the module or the entry could not be used
        raise UserError(f"{file}: {result.detail}")
    if debugger.predict_from is not None:
        return print_prediction(source, entry, result, debugger, tracing.format, texts)
    print_trace(result, source, entry, tracing, texts)


def check_choices(tracing: TracingOptions) -> None:
    if tracing.format not in FORMATS:
        raise UserError(f"unknown --format {tracing.format!r}; use {', '.join(FORMATS)}")
    if tracing.backend not in BACKENDS:
        raise UserError(f"unknown --backend {tracing.backend!r}; use {', '.join(BACKENDS)}")


def read_source(file: Path) -> str:
    if not file.is_file():
        raise UserError(f"{file} does not exist")
    try:
        return file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read {file}: {exc}") from None


def parse_args(text: str | None) -> list | dict | None:
    if text is None:
        return None
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise UserError(f"--args is not valid JSON ({exc})") from None
    if not isinstance(value, (list, dict)):
        raise UserError("--args must be a JSON list (positional arguments) or object (keyword arguments)")
    return value


def trace_texts(cwm_source: Path | None):
    from agents.cwm.cwm_source import find_cwm_source
    from agents.cwm.cwm_source_traces import load_trace_texts
    from harness.traces.format import BUILTIN_TEXTS

    if cwm_source is not None:
        return load_trace_texts(cwm_source)
    installed = find_cwm_source()  # an installed checkout without the demo (a package install) keeps the built-in
    if installed is not None and (installed / "demos" / "cwmdbg.py").is_file():
        return load_trace_texts(installed)
    return BUILTIN_TEXTS


def run_job(job, tracing: TracingOptions):
    from harness.traces.run import run_in_container, run_local

    if tracing.local:
        return run_local(job, python=tracing.python or sys.executable)
    from harness.images import BASE_IMAGE, bootstrap_base, image_exists

    image = tracing.image or BASE_IMAGE
    if image == BASE_IMAGE and not image_exists(image):
        from rich.console import Console

        bootstrap_base(log=Console(stderr=True).print)
    elif not image_exists(image):
        raise UserError(f"image {image} not found (build or pull it first)")
    return run_in_container(job, image)


def print_trace(result, source: str, entry: str, tracing: TracingOptions, texts) -> None:
    from harness.traces.format import trace_prompt
    from harness.traces.readable import end_line, trace_text

    if tracing.format == "json":
        print(json.dumps({**result.to_dict(), "texts": texts.origin}, indent=1, ensure_ascii=False))
    elif tracing.format == "text":
        print(trace_text(result))
    else:
        prompt = trace_prompt(source, entry, texts) if tracing.prompt else ""
        cut = "" if result.finished else f"\n# {end_line(result)}"
        print(prompt + result.render() + cut)


def print_prediction(source: str, entry: str, result, debugger: DebuggerOptions, output: str, texts) -> None:
    from harness.traces.format import trace_prompt
    from harness.traces.predict import compare
    from harness.traces.readable import report_text

    given = debugger.predict_from
    if given > len(result.frames):
        raise UserError(f"--predict-from {given}: the real trace has only {len(result.frames)} frames")
    client = model_client(debugger)
    expected = len(result.frames) - given + (1 if result.finished else 0)  # one more: does it end there?
    prompt = trace_prompt(source, entry, texts)
    continuation = asyncio.run(predict(client, prompt, result.frames[:given], expected, debugger.max_tokens))
    report = compare(result.frames, result.finished, given, continuation, texts.marker)
    if output == "json":
        print(json.dumps({**report.to_dict(), "model": client.model, "texts": texts.origin,
                          "sampling": {"temperature": debugger.temperature, "top_p": debugger.top_p}},
                         indent=1, ensure_ascii=False))
    else:
        print(report_text(report, f"{client.model} (T={debugger.temperature:g}; texts: {texts.origin})"))


def model_client(debugger: DebuggerOptions):
    from harness.model import ModelClient
    from harness.sampling import Sampling

    client = ModelClient(debugger.model_url, debugger.model, api_key=debugger.api_key,
                         sampling=Sampling(temperature=debugger.temperature, top_p=debugger.top_p))
    client.check()
    return client


async def predict(client, prompt: str, given: list, max_new: int, max_tokens: int):
    from harness.model import ModelServerError
    from harness.traces.format import FRAME_SEP
    from harness.traces.predict import continue_trace

    async def complete(text: str) -> tuple[str, str | None]:
        reply = await client.complete_text(text, max_tokens, [FRAME_SEP])
        return reply.text, reply.finish_reason

    try:
        return await continue_trace(prompt, given, complete, max_new)
    except ModelServerError as exc:
        raise UserError(str(exc)) from None
