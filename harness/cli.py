"""The `cwm-eval` command line."""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from harness.cli_help import HelpGroup
from harness.cli_options import RunOptions, grouped
from harness.cli_run import _raise_interrupt, execute, exits_130, run_interruptible  # noqa: F401  (used by others)
from harness.errors import UserError
from harness.terminal import stdout_console

app = typer.Typer(cls=HelpGroup, add_completion=False, no_args_is_help=True,
                  help="Evaluate and train bash-first coding agents.")
images_app = typer.Typer(no_args_is_help=True, help="Build, list and prune the images the harness uses.")
app.add_typer(images_app, name="images")
grade_app = typer.Typer(no_args_is_help=True, help="Grade external predictions or saved logs.")
app.add_typer(grade_app, name="grade")
console = stdout_console()  # a log file gets whole lines, a terminal its own width


@app.command()
@exits_130
@grouped(RunOptions)
def run(
    ctx: typer.Context,
    suite: str = typer.Argument(..., help="demo | swebench | terminal-bench | livecodebench | cruxeval | "
                                          "trace-prediction"),
    options: RunOptions = None,
) -> None:
    """Run an agent on a suite: one container per trial, graded as the official harness grades."""
    from agents import make_agent
    from harness.run_guard import check_writable
    from tasks import check_suite_options, load_suite

    given = given_options(ctx)
    check_suite_options(suite, given)
    check_writable(options.execution.output, "--output")
    config = run_config(suite, options)
    the_suite = load_suite(suite, options.tasks.dataset, split=options.tasks.split, **options.tasks.selection(),
                           image_source=options.swebench.image_source, namespace=options.swebench.namespace,
                           image_map=config.image_map, test_timeout_multiplier=config.test_timeout_multiplier,
                           cwm_source=config.cwm.cwm_source, **options.livecodebench.suite_options(),
                           **options.code_execution.suite_options())
    tasks = the_suite.load(options.tasks.task or None)
    name = scenario_agent(the_suite, config, given)
    if config.agent == "cwm" and not config.model_url:
        from harness.serve import ensure_embedded_server

        config.model_url = ensure_embedded_server(options.agent.serve_port, log=console.print)
    spec = {"name": name, "model_url": config.model_url, "model": config.model, "cwm_config": config.cwm,
            "sampling": config.sampling, "max_inflight": config.max_model_requests,
            "api_key": config.api_key}  # a SecretStr: masked if printed
    execute(config, the_suite, tasks, make_agent(**spec), spec)


def run_config(suite: str, options: RunOptions):
    """The run's configuration from the command line's groups, each option checked (one line if wrong)."""
    from agents.cwm.config import CwmConfig
    from harness.config import RunConfig, default_run_id
    from harness.sampling import Sampling
    from harness.sandbox import Limits, memory_bytes
    from tasks.terminal_bench.images import parse_image_map

    agent, sandbox, execution = options.agent, options.sandbox, options.execution
    tb = options.terminal_bench
    images = parse_image_map(tb.image_map)
    memory_bytes(sandbox.memory)
    if execution.executor not in ("local", "ray"):
        raise UserError(f"unknown --executor {execution.executor!r}; use local or ray")
    if tb.agent_timeout_multiplier <= 0 or tb.test_timeout_multiplier <= 0:
        raise UserError("--agent-timeout-multiplier and --test-timeout-multiplier must be greater than 0")
    return RunConfig(
        suite=suite, dataset=options.tasks.dataset, task_ids=options.tasks.task, agent=agent.agent,
        model_url=model_urls(agent.model_url), model=agent.model, attempts=execution.attempts,
        concurrency=execution.concurrency, run_id=execution.run_id or default_run_id(suite, agent.agent),
        output=execution.output, trial_timeout=sandbox.trial_timeout, network=sandbox.network,
        agent_timeout_multiplier=tb.agent_timeout_multiplier, test_timeout_multiplier=tb.test_timeout_multiplier,
        image_map=images, executor=execution.executor, ray_address=execution.ray_address,
        max_starting_containers=execution.max_starting_containers, max_model_requests=execution.max_model_requests,
        grade_worktree=options.scoring.grade_worktree, reject_test_tampering=options.scoring.reject_test_tampering,
        api_key=agent.api_key, limits=Limits(cpus=sandbox.cpus, memory=sandbox.memory, disk=sandbox.disk),
        cwm=CwmConfig(max_turns=agent.max_turns, command_timeout=agent.command_timeout, token_exact=agent.token_exact,
                      logprobs=agent.logprobs, tokenizer=agent.tokenizer, max_action_len=agent.max_tokens_per_turn,
                      context_size=agent.context_size, tools=parse_tools(agent.tools),
                      strict_format=agent.strict_format, guided_format=agent.guided_format,
                      cwm_source=resolve_cwm_source(agent.cwm_source)),
        sampling=Sampling(temperature=agent.temperature, top_p=agent.top_p),
        scenario="testgen" if options.livecodebench.scenario == "testgen" else None,
    )


def scenario_agent(suite, config, given: set[str]) -> str:
    """The agent to make. A suite that runs its own trials (LiveCodeBench codegen: one model call per sample) gets
    the codegen agent, on the cwm agent's model, and its samples are the run's attempts."""
    if getattr(suite, "agent_prompt", None) == "testgen":
        from tasks.swebench.testgen import check_run

        check_run(config)
    if getattr(suite, "trial", None) is None:
        return config.agent
    what = "the codegen scenario" if suite.name == "livecodebench" else f"suite {suite.name}"
    agentic = ", or --scenario agentic" if suite.name == "livecodebench" else ""
    if config.agent != "cwm":
        raise UserError(f"{what} samples a model: use --agent cwm (with --model-url){agentic}")
    if "attempts" in given:
        raise UserError(f"{what}'s attempts are its samples: use --samples, not --attempts")
    if config.cwm.guided_format:
        raise UserError(f"--guided-format constrains the agent's tool turns; {what} has none"
                        + (" (use --scenario agentic)" if agentic else ""))
    config.attempts = suite.samples
    return "codegen"


def given_options(ctx: typer.Context) -> set[str]:
    """The options the command line set (not left at their defaults)."""
    sources = {name: ctx.get_parameter_source(name) for name in ctx.params}
    return {name for name, source in sources.items()
            if source is not None and source.name not in ("DEFAULT", "DEFAULT_MAP")}


def parse_tools(value: str) -> list[str]:
    from agents.cwm.texts import check_tools

    tools = [name.strip() for name in value.split(",") if name.strip()]
    check_tools(tools)
    return tools


def resolve_cwm_source(path: Path | None) -> Path | None:
    """--cwm-source, else an installed `cwm` package's checkout; the texts are loaded now so errors come early."""
    from agents.cwm.cwm_source import find_cwm_source
    from agents.cwm.texts import load_texts

    path = path or find_cwm_source()
    if path is not None:
        load_texts(path)
        return path.resolve()
    return None


def model_urls(values: list[str]) -> list[str] | str | None:
    """--model-url values, with @file expanded to its lines; one URL stays a string."""
    urls = []
    for value in values:
        if value.startswith("@"):
            path = Path(value[1:])
            if not path.is_file():
                raise UserError(f"--model-url {value}: {path} does not exist")
            urls += [line.strip() for line in path.read_text().splitlines() if line.strip()]
        else:
            urls.append(value)
    return None if not urls else urls[0] if len(urls) == 1 else urls


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def serve(
    ctx: typer.Context,
    model: str = typer.Argument("smollm2-135m", help="preset (cwm, smollm2-135m), local HF folder or hub id"),
    tp: int = typer.Option(2, help="tensor parallel size (cwm preset)"),
    host: str = typer.Option("127.0.0.1"),
    port: int = typer.Option(8000),
    dry_run: bool = typer.Option(False, help="print the vLLM command line and exit"),
    ready_timeout: float = typer.Option(900.0, help="seconds to wait for the server to answer"),
) -> None:
    """Start vLLM's OpenAI-compatible server; extra vLLM flags pass through after `--`."""
    from harness.serve import VllmServer, materialise_embedded, resolve_preset

    preset = resolve_preset(model, tp)
    server = VllmServer(preset, host=host, port=port, extra=list(ctx.args))
    if dry_run:
        print(server.describe())
        return
    if preset.name == "smollm2-135m":
        materialise_embedded(preset, log=console.print)
    console.print(f"$ {server.describe()}\nlog: {server.log_path}")
    signal.signal(signal.SIGTERM, _raise_interrupt)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even when started in the background (SIGINT ignored)
    server.start()
    try:
        server.wait_ready(ready_timeout)
        console.print(f"serving {preset.served_name} at [bold]{server.url}[/] (Ctrl-C to stop)")
        server.proc.wait()
        raise UserError(f"vLLM exited with code {server.proc.returncode}; see {server.log_path}")
    except KeyboardInterrupt:
        console.print("stopping the server")
    finally:
        server.stop()


@images_app.command("bootstrap")
def images_bootstrap(
    ca_bundle: Path = typer.Option(Path("/etc/ssl/certs/ca-certificates.crt"),
                                   help="CA bundle the image trusts (for TLS-intercepting proxies)"),
    force: bool = typer.Option(False, help="rebuild even if the image exists"),
) -> None:
    """Build cwm-eval/base:bookworm with debootstrap + docker import (reused when present)."""
    from harness.images import bootstrap_base

    if not ca_bundle.exists():
        raise UserError(f"CA bundle {ca_bundle} does not exist; pass --ca-bundle PATH")
    bootstrap_base(ca_bundle=ca_bundle, force=force, log=console.print)


@images_app.command("list")
def images_list() -> None:
    """The images the harness built."""
    from harness.images import list_images

    table = Table("tag", "id", "size MB", "created")
    for row in list_images():
        table.add_row(row["tag"], row["id"], str(row["size_mb"]), row["created"])
    console.print(table)


@images_app.command("prune")
def images_prune(
    policy: str = typer.Option("instances", help="instances: drop instance images, keep base and environment "
                                                 "images | built: every image we built but the base | all"),
) -> None:
    """Apply an image cache policy."""
    from harness.images import prune_images
    from tasks.swebench.images import prune_instance_images

    if policy not in ("instances", "built", "all"):
        raise UserError(f"unknown --policy {policy!r}; use instances, built or all")
    removed = prune_instance_images() if policy == "instances" else prune_images(keep_base=policy == "built")
    console.print(f"removed {len(removed)} images" + (f": {', '.join(removed)}" if removed else ""))


from harness import cli_clean, cli_grade, cli_prompt, cli_report, cli_resample, cli_tasks, cli_tts  # noqa: E402, F401
from harness import cli_trace  # noqa: E402, F401  (registers `trace`)
from trainer import cli as trainer_cli  # noqa: E402, F401  (registers `train`)


def main() -> None:
    try:
        app()
    except UserError as exc:
        Console(stderr=True).print(f"[red]error:[/] {exc}", highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)


if __name__ == "__main__":  # run the imported module, where every command module has registered itself
    from harness.cli import main as registered_main

    registered_main()
