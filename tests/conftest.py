"""Shared fixtures: real Docker containers from the real base image."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from harness.images import BASE_IMAGE, bootstrap_base
from harness.sandbox import Sandbox


@pytest.fixture(scope="session")
def base_image() -> str:
    return bootstrap_base()  # reused when present; `make test` builds it first


@pytest.fixture
def sandbox(base_image):
    box = Sandbox.start(base_image, workdir="/tmp")
    yield box
    box.remove()


def processes(container_id: str) -> str:
    return subprocess.run(["docker", "exec", container_id, "ps", "-eo", "pid,pgid,args"],
                          capture_output=True, text=True, check=True).stdout


__all__ = ["BASE_IMAGE", "processes"]


CWM_MIRROR = "/work/.mirror/facebookresearch+cwm/repo"


@pytest.fixture(scope="session")
def cwm_checkout(tmp_path_factory):
    """A real facebookresearch/cwm checkout, for extra comparisons: $CWM_SOURCE, else a local mirror when present.

    CWM's code is never part of this project, so CI has none; the required tests use tests/fixtures/cwm_source.
    """
    import os
    from pathlib import Path

    if os.environ.get("CWM_SOURCE"):
        return Path(os.environ["CWM_SOURCE"])
    if not Path(CWM_MIRROR).exists():
        pytest.skip("no CWM checkout here (set CWM_SOURCE to compare with CWM's own code)")
    root = tmp_path_factory.mktemp("cwm-checkout")
    subprocess.run(f"git -C {CWM_MIRROR} archive HEAD | tar -x -C {root}", shell=True, check=True)
    return root


@pytest.fixture(scope="session")
def model_path() -> Path:
    """The embedded model's local folder (SmolLM2-135M-Instruct), made from its GGUF once."""
    from harness.serve import embedded_preset, materialise_embedded

    preset = embedded_preset()
    materialise_embedded(preset)
    return Path(preset.model)
