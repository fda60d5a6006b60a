"""The grading container: swebench's settings, files put in one Docker call each, and one started ahead of time.

A `VerifyContainer` is created and started from the task image on a thread of its own while the agent works, so
grading does not wait for a container to start. It is a container of its own, made by the harness, never shown to the
agent: no volume, no namespace shared with the agent's container, nothing run in it before grading; the grader uses
it once, and `close()` removes it whatever happened to the trial (also while it is still starting).
"""

from __future__ import annotations

import contextvars
import threading

import docker.errors

from harness.sandbox import docker_client, files_archive, run_labels


def create_container(image: str):
    """swebench's `create_container` settings, with our labels."""
    # imported here, on the starting thread: swebench.image_builder pulls in datasets and modal (over a second)
    from swebench.image_builder.constants import CONTAINER_USER

    return docker_client().containers.run(image, command="tail -f /dev/null", user=CONTAINER_USER, detach=True,
                                          cap_add=["SYS_ADMIN"], labels=run_labels("verify"))


def remove_container(container) -> None:
    try:
        container.remove(force=True)
    except docker.errors.NotFound:
        pass
    except docker.errors.APIError as exc:  # "removal already in progress": someone else is removing it
        if "already in progress" not in str(exc):
            raise


def put_files(container, files: dict[str, bytes]) -> None:
    """Root-owned 0644 files at these absolute paths, in one archive and one Docker call (Docker makes missing
    folders, as swebench's `mkdir -p` before each copy does)."""
    container.put_archive("/", files_archive(files))


class VerifyContainer:
    """A grading container of `image`, starting now on its own thread (with the current trial's labels)."""

    def __init__(self, image: str):
        self.image = image
        self._container = None
        self._lock = threading.Lock()
        self._used = False
        context = contextvars.copy_context()  # run_labels reads the trial from a context variable
        self._thread = threading.Thread(target=context.run, args=(self._create,), name=f"verify-start {image}")
        self._thread.start()

    def _create(self) -> None:
        try:
            self._container = create_container(self.image)
        except Exception:  # noqa: BLE001 - the grader then starts one itself, and what fails fails there
            pass

    def wait(self) -> None:
        """Until the container has started (or failed to)."""
        self._thread.join()

    @property
    def id(self) -> str | None:
        self.wait()
        return self._container.id if self._container is not None else None

    def take(self):
        """The started container, once; None when it did not start, is no longer running, or was used or closed."""
        self.wait()
        with self._lock:
            if self._used or self._container is None:
                return None
            self._used = True
            container = self._container
        try:
            container.reload()
        except docker.errors.NotFound:  # removed by someone else (`cwm-eval clean`)
            return None
        return container if container.status == "running" else None

    def close(self) -> None:
        """Remove the container, waiting for its start first if it is still starting; again is a no-op."""
        with self._lock:
            self._used = True  # never handed out after this
        self.wait()
        with self._lock:
            container, self._container = self._container, None
        if container is not None:
            remove_container(container)
