"""The disk bound of a sandbox (harness/disk_limit.py), in real containers: past it the container is killed and
`disk_exceeded` is set; small writes are left alone; the watchdog ends with the sandbox and never raises."""

from __future__ import annotations

import textwrap
import threading
import time

import docker.errors
import pytest

from harness.disk_limit import DiskWatchdog, disk_bytes, quota_refusal, quota_refused
from harness.errors import UserError
from harness.sandbox import Limits, Sandbox, docker_client
from harness.session import SessionDied
from tasks.terminal_bench.spec import read_task
from tasks.terminal_bench.suite import TerminalBenchSuite

MB = 2**20
SMALL = Limits(cpus=1.0, memory="1g", pids=256, disk="50m")
DEADLINE = 30.0  # "a few seconds" on an idle host; generous for a loaded CI machine


def wait_for(condition, timeout: float = DEADLINE) -> float:
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"not within {timeout:.0f}s")
        time.sleep(0.05)
    return time.monotonic() - started


def running(sandbox: Sandbox) -> bool:
    sandbox.container.reload()
    return sandbox.container.status == "running"


@pytest.fixture
def small_box(base_image):
    sandbox = Sandbox.start(base_image, workdir="/tmp", limits=SMALL)
    yield sandbox
    sandbox.remove()


def test_sizes_parse_and_default_is_10_gib():
    assert Limits().disk == "10g" and disk_bytes(Limits().disk) == 10 * 2**30
    assert disk_bytes("50m") == 50 * MB and disk_bytes("1.5G") == int(1.5 * 2**30) and disk_bytes("4096") == 4096
    assert disk_bytes("500MiB") == 500 * MB
    assert disk_bytes("0") is None and disk_bytes("none") is None and disk_bytes(None) is None
    with pytest.raises(UserError, match="--disk"):
        disk_bytes("lots")
    with pytest.raises(UserError, match="--disk"):  # one line at the command line, not a validation dump
        Limits(disk="-1g")


def test_driver_quota_refusal_is_recognised():
    refused = docker.errors.APIError("500 Server Error", explanation="--storage-opt is supported only for overlay "
                                     "over xfs with 'pquota' mount option")
    assert quota_refused(refused)
    assert not quota_refused(docker.errors.APIError("404", explanation="No such image: nothing:latest"))


def test_each_container_is_bounded_by_the_driver_or_a_watchdog(small_box):
    """The driver's size option is tried first; this daemon's refusal (if any) is remembered, not assumed."""
    watchdog = small_box.disk
    assert watchdog is not None and watchdog.limit == 50 * MB and watchdog.thread.is_alive()
    refusal = quota_refusal(docker_client())
    if watchdog.enforced_by == "watchdog":
        assert refusal and quota_refused(docker.errors.APIError("500", explanation=refusal))
    else:
        assert watchdog.enforced_by == "storage-opt" and refusal is None
        assert small_box.container.attrs["HostConfig"]["StorageOpt"] == {"size": str(50 * MB)}


def test_writing_past_the_bound_kills_the_container(small_box):
    session = small_box.session(timeout=120)
    started = time.monotonic()
    result = session.run("head -c 200000000 /dev/zero > /tmp/big; sleep 100; echo survived")
    seconds = time.monotonic() - started
    assert not result.ok and "survived" not in result.output  # the command died with the container
    assert seconds < DEADLINE, seconds
    assert small_box.disk_exceeded
    assert small_box.disk.usage >= small_box.disk.threshold
    wait_for(lambda: not running(small_box), 10)
    with pytest.raises(SessionDied):  # the agent's next command fails
        session.run("echo again")
    small_box.container.start()  # someone restarts it (the session's clean-up, a verifier): killed again
    wait_for(lambda: not running(small_box))


def test_a_small_write_is_left_alone(small_box):
    assert small_box.exec("head -c 10000000 /dev/zero > /tmp/small && echo ok").output.strip() == "ok"
    seen = small_box.disk.polls
    wait_for(lambda: small_box.disk.polls >= seen + 3)  # measured a few times after the write
    assert not small_box.disk_exceeded and running(small_box)
    assert 10_000_000 <= small_box.disk.usage < 50 * MB
    assert small_box.exec("echo still here").output.strip() == "still here"


def test_the_watchdog_ends_with_the_sandbox(base_image):
    sandbox = Sandbox.start(base_image, workdir="/tmp", limits=SMALL)
    thread = sandbox.disk.thread
    assert thread.is_alive()
    sandbox.remove()
    assert not thread.is_alive()
    assert not sandbox.disk_exceeded


def test_the_watchdog_never_raises(base_image, monkeypatch):
    """Its container removed behind its back, its measure failing: logged and retried, nothing raised."""
    raised: list = []
    monkeypatch.setattr(threading, "excepthook", lambda args: raised.append(args.exc_value))
    sandbox = Sandbox.start(base_image, workdir="/tmp", limits=SMALL)
    watchdog = sandbox.disk
    wait_for(lambda: watchdog.polls >= 1)
    docker_client().api.remove_container(sandbox.id, force=True)
    wait_for(lambda: not watchdog.thread.is_alive())  # the container is gone: nothing left to watch
    sandbox.remove()  # already gone: not an error

    broken = DiskWatchdog(Sandbox.start(base_image, workdir="/tmp", limits=Limits(disk="0")).container, 10 * MB,
                          poll_seconds=0.1)
    try:
        monkeypatch.setattr(broken, "measure", lambda: 1 / 0)
        broken.start()
        wait_for(lambda: broken.errors >= 3)
        assert broken.thread.is_alive() and not broken.exceeded
    finally:
        broken.stop()
        broken.join()
        broken.container.remove(force=True)
    assert not raised


def test_no_bound_means_no_watchdog(base_image):
    with Sandbox.start(base_image, workdir="/tmp", limits=Limits(disk="0")) as sandbox:
        assert sandbox.disk is None and not sandbox.disk_exceeded


HARBOR_TOML = """
version = "1.0"

[agent]
timeout_sec = 120.0

[environment]
docker_image = "{image}"
storage_mb = 64
network_mode = "no-network"
"""


def harbor_task(root, image: str):
    task = root / "harbor-disk"
    (task / "tests").mkdir(parents=True)
    (task / "task.toml").write_text(textwrap.dedent(HARBOR_TOML.format(image=image)))
    (task / "instruction.md").write_text("Fill the disk.\n")
    (task / "tests" / "test.sh").write_text("echo 1 > /logs/verifier/reward.txt\n")
    return task


def test_harbor_storage_mb_is_read(tmp_path):
    assert read_task(harbor_task(tmp_path, "cwm-eval/base:bookworm")).storage_mb == 64


def test_harbor_storage_mb_bounds_the_container(base_image, tmp_path):
    harbor_task(tmp_path, base_image)
    suite = TerminalBenchSuite(tmp_path)
    [task] = suite.load()
    sandbox = Sandbox.start(task.image, workdir="/", limits=Limits(cpus=1.0, memory="1g", disk="10g"))
    try:
        suite.setup(task, sandbox)
        assert sandbox.disk.limit == 64 * MB  # the task's bound, in place of --disk
        sandbox.exec("head -c 30000000 /dev/zero > /tmp/fits")
        polls = sandbox.disk.polls
        wait_for(lambda: sandbox.disk.polls >= polls + 2)
        assert not sandbox.disk_exceeded
        sandbox.exec("head -c 100000000 /dev/zero > /tmp/too-much")
        wait_for(lambda: sandbox.disk_exceeded)
        wait_for(lambda: not running(sandbox))
    finally:
        sandbox.remove()
