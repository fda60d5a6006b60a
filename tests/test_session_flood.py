"""Output floods end the session quickly: too_long, no exception, a fresh shell for the next command (issue 14).

On Docker 20.10 a new `docker exec` while the session's own exec stream is stalled with unread output blocks
every exec into the container (30 s and more), so the clean-up must close that stream before it execs the kill.
The time limits here are loose (a stall is 30 s); the figures themselves come from bench/session_flood.py.
"""

from __future__ import annotations

import subprocess
import time

import pytest

from harness.sandbox import Limits, Sandbox

LIMITS = Limits(cpus=1.0, memory="2g", pids=1024)
STALL_BOUND = 10.0  # well under the 30 s stall, loose enough for a busy machine

FLOODS = {
    "5MB": r"head -c 5000000 /dev/zero | tr '\0' a",
    "20MB": r"head -c 20000000 /dev/zero | tr '\0' a",
    "100MB": r"head -c 100000000 /dev/zero | tr '\0' a",
    "yes": "yes",
}
FLOOD_PROGRAMS = {"head", "tr", "yes"}


@pytest.fixture
def box(base_image):
    sandbox = Sandbox.start(base_image, workdir="/tmp", limits=LIMITS)
    yield sandbox
    sandbox.remove()


def program_names(container_id: str) -> list[str]:
    """Every live process's name, read from /proc; the `docker exec` itself must not stall either."""
    script = 'for d in /proc/[0-9]*; do read -r c < "$d/comm" 2>/dev/null && echo "$c"; done'
    done = subprocess.run(["docker", "exec", container_id, "bash", "-c", script], capture_output=True, text=True,
                          check=True, timeout=STALL_BOUND)
    return done.stdout.split()


def flood_then_next(session, command: str) -> tuple:
    """Run a flood and the next command; returns both results and the seconds from the flood to the next result."""
    session.run("cd /usr; export FLOOD_MARK=1")
    started = time.monotonic()
    flooded = session.run(command)
    after = session.run('echo ok; echo "[$FLOOD_MARK]"; pwd')
    return flooded, after, time.monotonic() - started


@pytest.mark.parametrize("size", list(FLOODS))
def test_flood_ends_the_session_and_the_next_command_runs_in_a_fresh_shell(box, size):
    with box.session(timeout=60) as session:
        flooded, after, seconds = flood_then_next(session, FLOODS[size])
        assert (flooded.error, flooded.exit_code, flooded.restarted) == ("too_long", None, True)
        assert seconds < STALL_BOUND
        assert after.ok and after.output == "ok\n[]\n/tmp\n"  # start script reran: env and cwd reset
        assert not FLOOD_PROGRAMS & set(program_names(box.id))


def test_repeated_floods_in_one_session(box):
    with box.session(timeout=60) as session:
        for size in ["5MB", "yes", "100MB", "20MB", "yes"]:
            flooded, after, seconds = flood_then_next(session, FLOODS[size])
            assert flooded.error == "too_long" and after.output == "ok\n[]\n/tmp\n", size
            assert seconds < STALL_BOUND, size
        assert session.run("echo still").output == "still\n"


def test_floods_that_outlive_or_end_the_shell(box):
    # the flood in the background, or the shell ending while its output is still unread
    commands = ["yes & exit", "exec yes", "setsid yes & sleep 1", "head -c 5000000 /dev/zero; exit", "yes >&2"]
    with box.session(timeout=60) as session:
        for command in commands:
            flooded, after, seconds = flood_then_next(session, command)
            assert flooded.error == "too_long" and after.output == "ok\n[]\n/tmp\n", command
            assert seconds < STALL_BOUND, command
        assert not FLOOD_PROGRAMS & set(program_names(box.id))


def test_timeout_with_output_still_flowing(box):
    # output under the cap but never ending: the timeout closes a stream that is still busy
    trickle = "while :; do head -c 1000 /dev/zero | tr '\\0' b; sleep 0.01; done"
    with box.session(timeout=2) as session:
        flooded, after, seconds = flood_then_next(session, trickle)
        assert (flooded.error, flooded.exit_code) == ("timeout", None)
        assert seconds < 2 + STALL_BOUND
        assert after.output == "ok\n[]\n/tmp\n"
        assert not FLOOD_PROGRAMS & set(program_names(box.id))
