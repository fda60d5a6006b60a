"""Which builder builds task images, and the build itself.

Terminal-Bench and Harbor build their task images through the docker CLI (`docker compose build`), that is with
BuildKit, and their Dockerfiles use BuildKit-only features (`RUN --mount=...`, heredocs). So do we: `docker buildx
build --load` where the buildx plugin is installed, else `DOCKER_BUILDKIT=1 docker build` with a docker CLI older
than 23.0 (those carry BuildKit's client themselves; newer ones build with BuildKit only through buildx). The legacy
builder (the Docker API's /build, as the docker SDK calls it) is the fallback when neither is there, when the engine
has no BuildKit, or when DOCKER_BUILDKIT=0 is set; the reason is logged once, in one line.

BuildKit here is the engine's own, with its built-in Dockerfile frontend (a `# syntax=` line would pull another
frontend from a registry). Docker Engine 20.10's reads `RUN --mount` but not heredocs; Engine 23.0 and later read
both.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path

import docker.errors

from harness.sandbox import docker_client

BUILDKIT_MIN_API = (1, 39)  # Docker Engine 18.09, the first with BuildKit
CLI_WITHOUT_CLASSIC_BUILDKIT = 23  # from docker CLI 23.0 on, BuildKit builds need the buildx plugin
FALSE = {"0", "f", "false"}  # DOCKER_BUILDKIT is read as Go's ParseBool reads it

_log = logging.getLogger("cwm-eval.images")


@dataclass(frozen=True)
class Builder:
    kind: str  # "buildx", "buildkit" (DOCKER_BUILDKIT=1 docker build) or "legacy"
    argv: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    reason: str = ""  # for "legacy": why not BuildKit

    def describe(self) -> str:
        if self.kind == "legacy":
            return f"the legacy builder ({self.reason})"
        return f"BuildKit ({' '.join(f'{k}={v}' for k, v in self.env.items())} {' '.join(self.argv)})".replace("( ", "(")


class BuildFailed(Exception):
    """A build that ran and failed; the message is the end of its log."""


_chosen: Builder | None = None
_lock = threading.Lock()


def image_builder() -> Builder:
    """The builder this process uses, chosen once; a fallback to the legacy builder is logged with its reason."""
    global _chosen
    with _lock:
        if _chosen is None:
            _chosen = choose_builder()
            if _chosen.kind == "legacy":
                _log.warning("building images with the legacy builder, not BuildKit: %s", _chosen.reason)
            else:
                _log.info("building images with %s", _chosen.describe())
        return _chosen


def reset_image_builder() -> None:
    """Forget the choice (tests; a process whose PATH or environment changed)."""
    global _chosen
    with _lock:
        _chosen = None


def choose_builder() -> Builder:
    if os.environ.get("DOCKER_BUILDKIT", "").strip().lower() in FALSE:
        return Builder("legacy", reason="DOCKER_BUILDKIT=0 is set")
    refusal = _engine_refusal()
    if refusal:
        return Builder("legacy", reason=refusal)
    clis = docker_clis()
    if not clis:
        return Builder("legacy", reason="no docker CLI on PATH")
    for cli in clis:
        if _quiet([cli, "buildx", "version"]) is not None:
            return Builder("buildx", (cli, "buildx", "build", "--load"))
    seen = []
    for cli in clis:
        version = cli_version(cli)
        seen.append(f"{cli} {version or '(version unknown)'}")
        if version and int(version.split(".")[0]) < CLI_WITHOUT_CLASSIC_BUILDKIT:
            return Builder("buildkit", (cli, "build"), {"DOCKER_BUILDKIT": "1"})
    return Builder("legacy", reason=f"no docker CLI here can drive BuildKit ({', '.join(seen)}: no buildx plugin, "
                                    f"and {CLI_WITHOUT_CLASSIC_BUILDKIT}.0+ needs it); install docker-buildx")


def _engine_refusal() -> str | None:
    """Why the engine cannot build with BuildKit, or None."""
    try:
        info = docker_client().version()
    except docker.errors.DockerException:
        return None  # the build will say what is wrong with the engine
    if str(info.get("Os", "linux")).lower() == "windows":
        return "the engine runs Windows containers, which BuildKit does not build"
    api = tuple(int(x) for x in str(info.get("ApiVersion", "0.0")).split(".")[:2])
    if api < BUILDKIT_MIN_API:
        return f"engine {info.get('Version', '?')} (API {'.'.join(map(str, api))}) predates BuildKit"
    return None


def docker_clis() -> list[str]:
    """Every docker executable on PATH, in PATH order, each real file once."""
    found, seen = [], set()
    for folder in os.environ.get("PATH", "").split(os.pathsep):
        path = Path(folder or ".") / "docker"
        if path.is_file() and os.access(path, os.X_OK) and path.resolve() not in seen:
            seen.add(path.resolve())
            found.append(str(path))
    return found


def cli_version(cli: str) -> str | None:
    """'20.10.24' from `docker --version` (no engine contacted)."""
    match = re.search(r"version (\d+\.\d+(?:\.\d+)?)", _quiet([cli, "--version"]) or "")
    return match.group(1) if match else None


def _quiet(cmd: list[str]) -> str | None:
    """stdout of a quick command that succeeded, else None."""
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout if proc.returncode == 0 else None


def build(builder: Builder, context: Path, tag: str, labels: dict[str, str]) -> None:
    """Build `tag` from `context`/Dockerfile with `builder`; BuildFailed carries the end of the build's log."""
    if builder.kind == "legacy":
        _legacy_build(context, tag, labels)
        return
    cmd = [*builder.argv, "--progress=plain", "-t", tag]
    for key, value in labels.items():
        cmd += ["--label", f"{key}={value}"]
    proc = subprocess.run([*cmd, str(context)], capture_output=True, text=True, env={**os.environ, **builder.env})
    if proc.returncode != 0:
        raise BuildFailed(tail(proc.stderr + proc.stdout))


def _legacy_build(context: Path, tag: str, labels: dict[str, str]) -> None:
    try:
        docker_client().images.build(path=str(context), tag=tag, labels=labels, rm=True, forcerm=True)
    except docker.errors.BuildError as exc:
        lines = [str(line.get("stream", line.get("error", ""))) for line in exc.build_log]  # docker 7: an iterator
        raise BuildFailed(tail("\n".join(lines) or str(exc))) from None


NOISE = re.compile(r"#\d+ (sha256:|DONE|CACHED|transferring )")  # BuildKit's plain progress, not its errors


def tail(log: str, lines: int = 4) -> str:
    """The last lines of a build log that say something, joined on one line."""
    kept = [line.strip() for line in log.splitlines()
            if line.strip() and set(line.strip()) != {"-"} and not NOISE.match(line.strip())]
    return " | ".join(kept[-lines:])


HEREDOC = re.compile(r"^\s*(RUN|COPY|ADD)\b.*<<-?\s*[\"']?[A-Za-z_]\w*", re.M | re.I)
MOUNT = re.compile(r"^\s*RUN\s+(--\w+(=\S+)?\s+)*--mount\b", re.M | re.I)


def hint(dockerfile: str, failure: str, builder: Builder) -> str:
    """Why a build that failed on a BuildKit-only feature failed here, or ''."""
    if builder.kind == "legacy" and MOUNT.search(dockerfile):
        return f"; the Dockerfile uses RUN --mount, which only BuildKit builds, and BuildKit is not used: {builder.reason}"
    if builder.kind != "legacy" and HEREDOC.search(dockerfile) and "unknown instruction" in failure.lower():
        return ("; the Dockerfile uses a heredoc, which this engine's built-in Dockerfile frontend does not read "
                "(Docker Engine 23.0 and later read heredocs)")
    return ""
