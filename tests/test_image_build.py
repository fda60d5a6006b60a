"""Task images build as Terminal-Bench and Harbor build them: with BuildKit (RUN --mount, heredocs where the engine's
frontend reads them), the legacy builder only as a logged fallback."""

from __future__ import annotations

import logging
import uuid
from pathlib import Path

import docker.errors
import pytest

from harness.errors import UserError
from harness.image_builder import choose_builder, reset_image_builder
from harness.images import HASH_LABEL, build_image
from harness.sandbox import docker_client

CACHED = """FROM {base}
RUN --mount=type=cache,id={cache},target=/cache sh -c '{command}'
"""


@pytest.fixture
def tags():
    made: list[str] = []
    yield made
    for tag in made:
        try:
            docker_client().images.remove(tag, force=True)
        except docker.errors.APIError:
            pass


@pytest.fixture
def fresh_builder():
    reset_image_builder()
    yield
    reset_image_builder()


def context(root: Path, name: str, dockerfile: str) -> Path:
    folder = root / name
    folder.mkdir()
    (folder / "Dockerfile").write_text(dockerfile)
    return folder


def cat(tag: str, path: str) -> str:
    return docker_client().containers.run(tag, ["cat", path], remove=True).decode().strip()


def test_buildkit_is_used_here_and_its_cache_mount_persists_across_builds(tmp_path, base_image, tags, fresh_builder):
    assert choose_builder().kind != "legacy", choose_builder().reason
    cache = f"cwm-eval-test-{uuid.uuid4().hex[:8]}"
    first = context(tmp_path, "first", CACHED.format(base=base_image, cache=cache,
                                                     command="cat /proc/sys/kernel/random/uuid > /cache/stamp; "
                                                             "cp /cache/stamp /stamp"))
    second = context(tmp_path, "second", CACHED.format(base=base_image, cache=cache, command="cp /cache/stamp /stamp"))
    tags += ["cwm-eval/test.cache-1:latest", "cwm-eval/test.cache-2:latest"]
    build_image(first, tags[0], log=lambda line: None)
    build_image(second, tags[1], log=lambda line: None)
    assert cat(tags[1], "/stamp") == cat(tags[0], "/stamp")  # the second build read what the first left in the cache
    image = docker_client().images.get(tags[0])
    assert image.labels[HASH_LABEL]
    lines: list[str] = []
    build_image(first, tags[0], log=lines.append)  # unchanged context: reused, not rebuilt
    assert lines == [] and docker_client().images.get(tags[0]).id == image.id


def test_heredocs_build_or_fail_saying_the_engine_frontend_lacks_them(tmp_path, base_image, tags, fresh_builder):
    folder = context(tmp_path, "heredoc", f"FROM {base_image}\nRUN <<EOF\necho from-heredoc > /note\nEOF\n")
    tags.append("cwm-eval/test.heredoc:latest")
    engine = int(docker_client().version()["Version"].split(".")[0])
    if engine >= 23:
        build_image(folder, tags[0], log=lambda line: None)
        assert cat(tags[0], "/note") == "from-heredoc"
    else:  # Engine 20.10's built-in Dockerfile frontend predates heredocs
        with pytest.raises(UserError, match="heredoc, which this engine's built-in Dockerfile frontend does not read"):
            build_image(folder, tags[0], log=lambda line: None)


def test_legacy_builder_is_the_fallback_with_its_reason_logged_once(tmp_path, base_image, tags, fresh_builder,
                                                                   monkeypatch, caplog):
    monkeypatch.setenv("DOCKER_BUILDKIT", "0")
    plain = context(tmp_path, "plain", f"FROM {base_image}\nRUN echo legacy > /note\n")
    mounted = context(tmp_path, "mounted", CACHED.format(base=base_image, cache="x", command="true"))
    tags += ["cwm-eval/test.legacy:latest", "cwm-eval/test.legacy-mount:latest"]
    lines: list[str] = []
    with caplog.at_level(logging.WARNING, logger="cwm-eval.images"):
        build_image(plain, tags[0], log=lines.append)
        with pytest.raises(UserError, match="RUN --mount, which only BuildKit builds.*DOCKER_BUILDKIT=0"):
            build_image(mounted, tags[1], log=lambda line: None)
    assert cat(tags[0], "/note") == "legacy"
    assert lines == [f"building {tags[0]} with the legacy builder (DOCKER_BUILDKIT=0 is set)"]
    warnings = [r.getMessage() for r in caplog.records if r.name == "cwm-eval.images"]
    assert warnings == ["building images with the legacy builder, not BuildKit: DOCKER_BUILDKIT=0 is set"]


def fake_docker(folder: Path, version: str, buildx: bool) -> None:
    folder.mkdir()
    script = folder / "docker"
    script.write_text(f"""#!/bin/sh
case "$1" in
  --version) echo "Docker version {version}, build 0000000" ;;
  buildx) {"echo 'github.com/docker/buildx v0.20.0'" if buildx else "exit 1"} ;;
  *) exit 1 ;;
esac
""")
    script.chmod(0o755)


def test_builder_choice_follows_the_clis_on_path(tmp_path, monkeypatch):
    fake_docker(tmp_path / "new", "28.2.2", buildx=False)
    fake_docker(tmp_path / "old", "20.10.24+dfsg1", buildx=False)
    fake_docker(tmp_path / "plugin", "27.0.1", buildx=True)
    monkeypatch.setenv("PATH", str(tmp_path / "new"))
    legacy = choose_builder()
    assert legacy.kind == "legacy" and "28.2.2" in legacy.reason and "buildx" in legacy.reason
    monkeypatch.setenv("PATH", f"{tmp_path / 'new'}:{tmp_path / 'old'}")
    classic = choose_builder()
    assert (classic.kind, classic.argv, classic.env) == ("buildkit", (str(tmp_path / "old/docker"), "build"),
                                                         {"DOCKER_BUILDKIT": "1"})
    monkeypatch.setenv("PATH", f"{tmp_path / 'new'}:{tmp_path / 'old'}:{tmp_path / 'plugin'}")
    assert choose_builder().argv == (str(tmp_path / "plugin/docker"), "buildx", "build", "--load")
