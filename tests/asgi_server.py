"""An ASGI app (given as Python source) served by uvicorn in vLLM's interpreter, as vLLM serves its own app with
our middleware: the project is on its path."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

PROJECT = Path(__file__).resolve().parents[1]


@contextmanager
def served(source: str) -> Iterator[str]:
    """The base URL of `source` (a script that serves on the port given as its argument) while it runs."""
    python = os.environ.get("CWM_EVAL_VLLM_PYTHON", sys.executable)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([python, "-c", source, str(port)], env={**os.environ, "PYTHONPATH": str(PROJECT)},
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    try:
        while True:
            assert server.poll() is None, server.stdout.read()
            try:
                httpx.get(url, timeout=1)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "uvicorn did not come up"
                time.sleep(0.2)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=10)
