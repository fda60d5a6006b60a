"""The `cwm-eval` command line."""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from harness.cli_run import _raise_interrupt, execute, exits_130, run_interruptible  # noqa: F401  (used by others)
from harness.errors import UserError

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Evaluate and train bash-first coding agents.")
images_app = typer.Typer(no_args_is_help=True, help="Build, list and prune the images the harness uses.")
app.add_typer(images_app, name="images")
grade_app = typer.Typer(no_args_is_help=True, help="Grade external predictions or saved logs.")
app.add_typer(grade_app, name="grade")
console = Console()


@app.command()
@exits_130
def run(
    ctx: typer.Context,
    suite: str = typer.Argument(..., help="demo | swebench | terminal-bench | livecodebench"),
    dataset: Optional[str] = typer.Option(None, help="the suite's dataset (swebench: a task repo folder; "
                                                     "terminal-bench: a folder of task folders)"),
    task: list[str] = typer.Option([], "--task", help="run only these task ids (repeatable)"),
    agent: str = typer.Option("cwm", help="cwm | oracle | nop"),
    model_url: list[str] = typer.Option([], help="OpenAI-compatible base URL, e.g. http://127.0.0.1:8000/v1; "
                                                 "repeat it (or @file of URLs) to spread requests over several"),
    model: Optional[str] = typer.Option(None, help="model name (default: the first the server lists)"),
    attempts: int = typer.Option(1, min=1, help="attempts per task"),
    concurrency: int = typer.Option(2, min=1, help="trials at once"),
    run_id: Optional[str] = typer.Option(None, help="re-use an id to resume a run"),
    output: Path = typer.Option(Path("results"), help="results folder"),
    max_turns: int = typer.Option(128, min=1),
    command_timeout: float = typer.Option(120.0, help="seconds per bash command"),
    trial_timeout: float = typer.Option(7200.0, help="wall-clock seconds for the agent phase of a trial "
                                                     "(CWM's sandbox lifetime)"),
    cpus: float = typer.Option(4.0, min=0.01, help="CPUs per agent container (capped at the host's)"),
    memory: str = typer.Option("16g", help="memory per agent container, e.g. 16g (capped at the host's)"),
    disk: str = typer.Option("10g", help="disk per agent container (its writable layer), e.g. 10g; 0: no bound; "
                                         "a Harbor task's storage_mb replaces it"),
    cwm_source: Optional[Path] = typer.Option(None, help="a facebookresearch/cwm checkout: the agent uses CWM's own "
                                                         "prompts, messages and edit/create plugins from it (default: "
                                                         "the installed `cwm` package, else cwm-eval's own wording)"),
    tools: str = typer.Option("bash,edit,create,submit", help="bash,edit,create,submit or bash,submit "
                                                              "(CWM's bash-only scaffold)"),
    strict_format: bool = typer.Option(False, help="CWM's training mode: the first format error ends the episode"),
    grade_worktree: bool = typer.Option(False, help="grade the work tree's diff when nothing was submitted, "
                                                    "however the episode ended (not CWM's protocol)"),
    reject_test_tampering: bool = typer.Option(False, help="score unresolved a patch that touches test "
                                                           "infrastructure (conftest.py, pytest config, ...)"),
    api_key: Optional[str] = typer.Option(None, envvar="OPENAI_API_KEY", show_envvar=True,
                                          help="the model endpoint's API key"),
    temperature: float = typer.Option(1.0),
    top_p: float = typer.Option(0.95),
    network: bool = typer.Option(False, help="let the agent reach the network"),
    token_exact: bool = typer.Option(False, help="render with the model's tokenizer; send token ids"),
    logprobs: bool = typer.Option(False, help="record the logprob of every sampled token"),
    tokenizer: Optional[str] = typer.Option(None, help="token-exact: tokenizer folder (default: the server's)"),
    max_tokens_per_turn: int = typer.Option(65536, min=1, help="CWM's max_action_len"),
    context_size: int = typer.Option(131072, min=1, help="total context budget in tokens"),
    serve_port: int = typer.Option(8000, help="port of the embedded model server started without --model-url"),
    split: str = typer.Option("test", help="dataset split"),
    filter: Optional[str] = typer.Option(None, "--filter", help="regex on task ids"),
    limit: Optional[int] = typer.Option(None, min=1, help="at most N tasks"),
    shuffle: bool = typer.Option(False, help="shuffle tasks (with --seed) before --limit"),
    seed: int = typer.Option(0),
    exclude_file: Optional[Path] = typer.Option(None, help="file of task ids to leave out (one per line)"),
    image_source: Optional[str] = typer.Option(None, help="swebench: prebuilt | build (default: build for task "
                                                          "repos, prebuilt for datasets)"),
    namespace: str = typer.Option("swebench", help="swebench: registry namespace of prebuilt images"),
    agent_timeout_multiplier: float = typer.Option(1.0, min=0.0, help="scales each task's own agent timeout"),
    test_timeout_multiplier: float = typer.Option(1.0, min=0.0, help="scales each task's own test timeout"),
    image_map: list[str] = typer.Option([], "--image-map", help="FROM=TO: rewrite this image in task Dockerfiles "
                                                               "and compose files (repeatable, or @file)"),
    executor: str = typer.Option("local", help="local | ray: run trials across a Ray cluster"),
    ray_address: Optional[str] = typer.Option(None, help="Ray cluster to join (default: start a local one)"),
    max_starting_containers: int = typer.Option(4, min=1, help="containers starting at once"),
    max_model_requests: int = typer.Option(64, min=1, help="model requests in flight across endpoints"),
    release: Optional[str] = typer.Option(None, help="livecodebench: v5 | v6 (CWM's sets: the hub's release_v5/v6 "
                                                     "with contest_date in [2024-10-01, 2025-02-01) / [2024-08-01, "
                                                     "2025-05-01)), or release_v1..release_v6 (the whole hub "
                                                     "release; default release_latest)"),
    since: Optional[str] = typer.Option(None, help="livecodebench: contest_date on or after YYYY-MM-DD (inclusive)"),
    until: Optional[str] = typer.Option(None, help="livecodebench: contest_date before YYYY-MM-DD (exclusive, as "
                                                   "CWM's windows)"),
    difficulty: list[str] = typer.Option([], help="livecodebench: easy | medium | hard (repeatable or a,b)"),
    platform: list[str] = typer.Option([], help="livecodebench: leetcode | codeforces | atcoder (repeatable)"),
    scenario: str = typer.Option("codegen", help="livecodebench: codegen (single turn, n samples, pass@k) | "
                                                 "agentic (the agent writes /workspace/solution.py)"),
    samples: int = typer.Option(10, min=1, help="livecodebench codegen: samples per problem"),
    protocol: str = typer.Option("cwm", help="livecodebench: cwm (CWM's prompt, extraction and grading) | "
                                             "lcb_runner (lcb_runner's)"),
    lcb_source: Optional[Path] = typer.Option(None, help="livecodebench --protocol lcb_runner: a LiveCodeBench "
                                                         "checkout whose prompts are used (default: the installed "
                                                         "lcb_runner, else cwm-eval's own wording)"),
) -> None:
    """Run an agent on a suite: one container per trial, graded as the official harness grades."""
    from agents import make_agent
    from agents.cwm.config import CwmConfig
    from harness.config import RunConfig, default_run_id
    from harness.run_guard import check_writable, claim_run
    from harness.sampling import Sampling
    from harness.sandbox import Limits, memory_bytes
    from tasks import check_suite_options, load_suite
    from tasks.terminal_bench.images import parse_image_map

    check_suite_options(suite, given_options(ctx))
    check_writable(output, "--output")
    images = parse_image_map(image_map)
    memory_bytes(memory)
    urls = model_urls(model_url)
    if executor not in ("local", "ray"):
        raise UserError(f"unknown --executor {executor!r}; use local or ray")
    if agent_timeout_multiplier <= 0 or test_timeout_multiplier <= 0:
        raise UserError("--agent-timeout-multiplier and --test-timeout-multiplier must be greater than 0")
    config = RunConfig(
        suite=suite, dataset=dataset, task_ids=task, agent=agent, model_url=urls, model=model,
        attempts=attempts, concurrency=concurrency, run_id=run_id or default_run_id(suite, agent), output=output,
        trial_timeout=trial_timeout, network=network, agent_timeout_multiplier=agent_timeout_multiplier,
        test_timeout_multiplier=test_timeout_multiplier, image_map=images, executor=executor,
        ray_address=ray_address, max_starting_containers=max_starting_containers,
        max_model_requests=max_model_requests, grade_worktree=grade_worktree,
        reject_test_tampering=reject_test_tampering, api_key=api_key,
        limits=Limits(cpus=cpus, memory=memory, disk=disk),
        cwm=CwmConfig(max_turns=max_turns, command_timeout=command_timeout, token_exact=token_exact,
                      logprobs=logprobs, tokenizer=tokenizer, max_action_len=max_tokens_per_turn,
                      context_size=context_size, tools=parse_tools(tools), strict_format=strict_format,
                      cwm_source=resolve_cwm_source(cwm_source)),
        sampling=Sampling(temperature=temperature, top_p=top_p),
    )
    the_suite = load_suite(suite, dataset, split=split, filter=filter, limit=limit, shuffle=shuffle, seed=seed,
                           exclude_file=exclude_file, image_source=image_source, namespace=namespace,
                           image_map=images, test_timeout_multiplier=test_timeout_multiplier, release=release,
                           since=since, until=until, difficulty=difficulty, platform=platform, scenario=scenario,
                           samples=samples, protocol=protocol, cwm_source=config.cwm.cwm_source,
                           lcb_source=lcb_source)
    tasks = the_suite.load(task or None)
    if agent == "cwm" and not urls:
        from harness.serve import ensure_embedded_server

        config.model_url = urls = ensure_embedded_server(serve_port, log=console.print)
    spec = {"name": agent, "model_url": urls, "model": model, "cwm_config": config.cwm, "sampling": config.sampling,
            "max_inflight": max_model_requests, "api_key": config.api_key}  # a SecretStr: masked if printed
    the_agent = make_agent(**spec)
    if getattr(the_suite, "scenario", None) == "codegen":  # livecodebench's single-turn protocol: no agent loop
        from harness.cli_run import on_interrupt
        from tasks.livecodebench.codegen import run_codegen

        with claim_run(config, the_agent.model, the_suite), on_interrupt(config.run_id):
            run_codegen(config, the_suite, tasks, the_agent, console)
        return
    execute(config, the_suite, tasks, the_agent, spec)


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


from harness import cli_clean, cli_grade, cli_prompt, cli_report, cli_resample, cli_tasks  # noqa: E402, F401
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
