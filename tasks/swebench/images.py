"""SWE-bench instance images: pull the official prebuilt ones, or build them; a disk preflight; cache pruning."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import docker.errors
from tenacity import retry, retry_if_exception_type, stop_after_attempt, wait_exponential

from harness.errors import UserError
from harness.images import BASE_IMAGE, bootstrap_base, build_image, image_exists
from harness.outcomes import InfraError
from harness.sandbox import docker_client
# swebench.image_builder pulls in datasets and modal (over a second): imported where an image is built from a row

PULLS_AT_ONCE = 4
_pulls = threading.BoundedSemaphore(PULLS_AT_ONCE)
ESTIMATED_BYTES = {"prebuilt": 3_000_000_000, "build": 1_000_000_000}  # per missing image (Verified: ~2.5 GB)


class ImagePullError(InfraError):
    """A registry did not serve the image: an infrastructure failure, retried on resume."""


def set_parallel_pulls(n: int) -> None:
    global _pulls
    _pulls = threading.BoundedSemaphore(max(1, n))


@retry(retry=retry_if_exception_type(docker.errors.APIError), wait=wait_exponential(multiplier=2, max=60),
       stop=stop_after_attempt(4), reraise=True)
def _pull(name: str) -> None:
    repository, _, tag = name.rpartition(":") if ":" in name.split("/")[-1] else (name, "", "latest")
    docker_client().images.pull(repository, tag=tag or "latest")


def pull(name: str) -> None:
    with _pulls:  # a bounded number of pulls at once, so a large run does not flood the registry
        try:
            _pull(name)
        except docker.errors.APIError as exc:
            raise ImagePullError(f"could not pull {name}: {exc.explanation or exc}") from None


def ensure_image(row: dict, source: str, task_dir: Path | None) -> str:
    """The instance image, present locally: reused, built (task repo Dockerfile or swebench's builder) or pulled."""
    name = row["image"]
    if source == "build":
        if task_dir is not None:
            if BASE_IMAGE in (task_dir / "Dockerfile").read_text() and not image_exists(BASE_IMAGE):
                bootstrap_base()
            return build_image(task_dir, name)
        if image_exists(name):
            return name
        if not row.get("dockerfile"):
            raise UserError(f"{row['instance_id']} has no Dockerfile to build from; use --image-source prebuilt")
        from swebench.image_builder.docker_build import build_instance_image
        from swebench.image_builder.image_spec import ImageSpec

        spec = ImageSpec(instance_id=row["instance_id"], dockerfile=row["dockerfile"], namespace=None)
        build_instance_image(spec, docker_client(), None, nocache=False)
        return spec.name
    if not image_exists(name):
        pull(name)
    return name


def preflight_disk(rows: list[dict], source: str, task_dirs: dict[str, Path]) -> None:
    """Refuse a run whose missing images cannot fit on the Docker engine's disk."""
    missing = [row for row in rows if not image_exists(row["image"])]
    if not missing:
        return
    needed = sum(ESTIMATED_BYTES["build" if source == "build" else "prebuilt"] for _ in missing)
    root = Path(docker_client().info().get("DockerRootDir", "/var/lib/docker"))
    free = shutil.disk_usage(root if root.exists() else "/").free
    if needed > free:
        raise UserError(f"{len(missing)} images to {('build' if source == 'build' else 'pull')} need about "
                        f"{needed / 1e9:.0f} GB but {root} has {free / 1e9:.0f} GB free; free space, run "
                        "`cwm-eval images prune`, or use --limit")


def is_instance_image(tag: str) -> bool:
    return "sweb.eval." in tag or tag.startswith("cwm-eval/demo.")


def prune_instance_images() -> list[str]:
    """The `env` cache policy: drop instance images, keep base and environment images."""
    removed = []
    for image in docker_client().images.list():
        for tag in image.tags:
            if is_instance_image(tag):
                try:
                    docker_client().images.remove(tag, force=True)
                    removed.append(tag)
                except docker.errors.APIError:
                    pass
    return removed
