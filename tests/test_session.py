"""The CWM-style bash session in real containers: start script, raw protocol, errors that end the session."""

from __future__ import annotations

import subprocess
import threading
import time

import pytest

from harness.sandbox import Limits, Sandbox
from harness.session import OUTPUT_CAP, BashSession, SessionDied, find_plugin_python, start_script

# small enough for any host; a low pid limit makes the fork bomb quick to fill it
LIMITS = Limits(cpus=1.0, memory="2g", pids=1024)

ENV_IMAGE = "cwm-eval/test-session-env:latest"
ENV_DOCKERFILE = r"""
FROM {base}
RUN mkdir -p /opt/envbin /opt/miniconda3/bin \
 && printf '#!/bin/sh\necho envtool-ran\n' > /opt/envbin/envtool && chmod +x /opt/envbin/envtool \
 && printf '#!/bin/sh\nexit 1\n' > /opt/miniconda3/bin/python3 && chmod +x /opt/miniconda3/bin/python3 \
 && echo 'export TESTBED_ACTIVE=1; export PATH=/opt/envbin:$PATH' >> /root/.bashrc
"""
NO_PS_IMAGE = "cwm-eval/test-session-no-ps:latest"
NO_PS_DOCKERFILE = """
FROM {base}
RUN rm -f /bin/ps /usr/bin/ps
"""


def build(name: str, dockerfile: str, base: str) -> str:
    subprocess.run(["docker", "build", "-q", "-t", name, "-"], input=dockerfile.format(base=base).encode(),
                   check=True, capture_output=True)
    return name


@pytest.fixture(scope="module")
def env_image(base_image) -> str:
    return build(ENV_IMAGE, ENV_DOCKERFILE, base_image)


@pytest.fixture(scope="module")
def no_ps_image(base_image) -> str:
    return build(NO_PS_IMAGE, NO_PS_DOCKERFILE, base_image)


@pytest.fixture
def box(base_image):
    sandbox = Sandbox.start(base_image, workdir="/tmp", limits=LIMITS)
    yield sandbox
    sandbox.remove()


@pytest.fixture
def env_box(env_image):
    sandbox = Sandbox.start(env_image, workdir="/tmp", limits=LIMITS)
    yield sandbox
    sandbox.remove()


@pytest.fixture
def no_ps_box(no_ps_image):
    sandbox = Sandbox.start(no_ps_image, workdir="/tmp", limits=LIMITS)
    yield sandbox
    sandbox.remove()


def command_lines(container_id: str) -> list[str]:
    """Every live process's command line, read from /proc (works without ps)."""
    script = ('for d in /proc/[0-9]*; do c=$(tr "\\0" " " < "$d/cmdline" 2>/dev/null); '
              '[ -n "$c" ] && echo "${d#/proc/} $c"; done')
    out = subprocess.run(["docker", "exec", container_id, "bash", "-c", script],
                         capture_output=True, text=True, check=True).stdout
    return out.splitlines()


def sleeping(container_id: str, marker: str) -> list[str]:
    return [line for line in command_lines(container_id) if f"sleep {marker}" in line]


def gone(container_id: str, markers: list[str], wait: float = 3.0) -> bool:
    deadline = time.monotonic() + wait
    while True:
        left = [m for m in markers if sleeping(container_id, m)]
        if not left or time.monotonic() > deadline:
            return not left
        time.sleep(0.1)


# -- item 1: the start script ---------------------------------------------------------------------------------
def test_start_script_builder_is_cwms_chain_then_startup_then_cd():
    script = start_script("/my dir", "export X=1\nmkdir -p /w", "/usr/bin/python3")
    first, *middle, last = script.split("\n")
    assert first == ("export PYPLUGIN_PYTHON_PATH=/usr/bin/python3 && export LC_ALL=en_US.UTF-8 && "
                     "export LANG=en_US.UTF-8 && source ~/.bashrc && ulimit -v 12582912 && "
                     "ulimit -d 12582912 && ulimit -u 65536")
    assert middle == ["export X=1", "mkdir -p /w"]
    assert last == "cd '/my dir'"
    assert start_script("/testbed").split("\n")[1:] == ["", "cd /testbed"]


def test_bashrc_environment_limits_and_startup_on_every_start(env_box):
    # the startup commands create the workdir, so `cd` only works if they ran first
    script = start_script("/work/dir", 'export STARTUP_PWD="$PWD"; mkdir -p /work/dir', "/usr/bin/python3")
    check = ('echo "$TESTBED_ACTIVE|$LC_ALL|$LANG|$PYPLUGIN_PYTHON_PATH|$STARTUP_PWD|$(pwd)|'
             '$(ulimit -v)|$(ulimit -d)|$(ulimit -u)"; envtool')
    expected = ("1|en_US.UTF-8|en_US.UTF-8|/usr/bin/python3|/|/work/dir|12582912|12582912|65536\n"
                "envtool-ran\n")
    with env_box.session(timeout=2, start_script=script) as session:
        assert session.run(check).output == expected
        session.run("export LEFTOVER=1; cd /; unset TESTBED_ACTIVE")
        assert session.run("sleep 30").error == "timeout"  # ends the shell
        assert not session.alive  # the restart is lazy: it waits for the next command
        assert session.run(check).output == expected  # the start script ran again in the fresh shell
        assert session.run('echo "[$LEFTOVER]"').output == "[]\n"


def test_default_start_script_and_failures_in_it_are_ignored(box):
    with box.session(timeout=5) as session:  # Sandbox.session's default: CWM's line with python3, cd workdir
        assert session.run('echo "$PYPLUGIN_PYTHON_PATH $LC_ALL"; pwd').output == "python3 en_US.UTF-8\n/tmp\n"
    broken = start_script("/tmp", "false\nno-such-command\nexport AFTER=yes")
    with box.session(timeout=5, start_script=broken) as session:
        assert session.run('echo "$AFTER"; pwd').output == "yes\n/tmp\n"


def test_find_plugin_python_skips_missing_and_old_pythons(box, env_box):
    assert find_plugin_python(box) == "/usr/bin/python3"  # no /opt/miniconda3 in the base image
    assert find_plugin_python(env_box) == "/usr/bin/python3"  # its /opt/miniconda3/bin/python3 fails the check


# -- item 2: the protocol ---------------------------------------------------------------------------------------
def test_output_is_the_raw_bytes_before_the_sentinel(box):
    with box.session(timeout=5) as session:
        result = session.run("printf abc")
        assert (result.output, result.exit_code, result.error, result.ok) == ("abc", 0, "none", True)
        assert session.run("echo a").output == "a\n"
        failed = session.run("false")
        assert (failed.output, failed.exit_code, failed.ok) == ("", 1, True)
        assert session.run("(exit 7)").exit_code == 7
        assert session.run(r"printf 'a\377\376b\n'").output == "ab\n"  # invalid UTF-8 dropped
        assert session.run("echo 1; echo 2 >&2; echo 3").output == "1\n2\n3\n"  # stderr merged, in order
        assert session.run("echo trailing   \n\n  ").output == "trailing\n"  # command.rstrip() + newline
        assert session.run("for i in 1 2; do\n  echo $i\ndone").output == "1\n2\n"


def test_cwd_and_exported_variables_persist(box):
    with box.session(timeout=5) as session:
        session.run("mkdir -p /tmp/work && cd /tmp/work && export GREETING=hello")
        result = session.run('pwd; echo "$GREETING"')
    assert result.output == "/tmp/work\nhello\n"
    assert result.exit_code == 0


def test_xtrace_shows_the_command_but_no_protocol(box):
    with box.session(timeout=5) as session:
        session.run("set -x")
        assert session.run("echo hi").output == "+ echo hi\nhi\n"
        assert session.run("false").exit_code == 1


def test_a_command_reading_stdin_swallows_the_protocol_and_times_out(box):
    with box.session(timeout=1) as session:
        result = session.run("cat")
        assert (result.error, result.exit_code, result.ok, result.restarted) == ("timeout", None, False, True)
        assert 0.9 < result.seconds < 5
        assert session.run("echo next").output == "next\n"


def test_a_long_command_goes_through(box):
    body = "x" * 300_000
    with box.session(timeout=20) as session:
        result = session.run(f"cat > /tmp/big <<'EOF'\n{body}\nEOF\nwc -c < /tmp/big")
    assert result.output == f"{len(body) + 1}\n"


# -- items 3 and 4: errors end the session; the clean-up ----------------------------------------------------------
def test_timeout_kills_setsid_nohup_and_forked_children_without_ps(no_ps_box):
    cid = no_ps_box.id
    with no_ps_box.session(timeout=2) as session:
        assert session.run("command -v ps").exit_code == 1  # this image has no ps
        # started by earlier, successful commands: these must survive the restart
        session.run("nohup sleep 4101 >/dev/null 2>&1 &")
        session.run("(while :; do sleep 4102; done) >/dev/null 2>&1 &")
        result = session.run("export A=1; cd /; setsid sleep 4201 & nohup sleep 4202 >/dev/null 2>&1 & "
                             "(while :; do sleep 4203; done) & echo partial; sleep 4204")
        assert (result.error, result.exit_code) == ("timeout", None)
        assert "partial" in result.output  # the raw partial buffer
        assert result.seconds < 4
        assert gone(cid, ["4201", "4202", "4203", "4204"])
        assert sleeping(cid, "4101") and sleeping(cid, "4102")
        after = session.run("echo $A; pwd")
        assert after.output == "\n/tmp\n"  # exactly what it printed: no job notice; env and cwd reset
        assert session.run("true").output == ""


def test_output_over_the_cap_ends_the_session(box):
    with box.session(timeout=20) as session:
        session.run("cd /usr")
        started = time.monotonic()
        result = session.run(r"head -c 20000000 /dev/zero | tr '\0' a")
        assert (result.error, result.exit_code) == ("too_long", None)
        assert OUTPUT_CAP < len(result.output) < 2 * OUTPUT_CAP and set(result.output) == {"a"}
        assert time.monotonic() - started < 5
        assert not [c for c in command_lines(box.id) if "head -c" in c or " tr " in c]
        assert session.run("echo ok; pwd").output == "ok\n/tmp\n"
    with box.session(timeout=20, output_cap=100_000) as session:
        assert session.run("head -c 99000 /dev/zero").ok  # output + sentinel under the cap
        assert session.run("yes cwm | head -c 300000").error == "too_long"


def test_fork_bomb_gives_an_error_and_a_working_session(box):
    with box.session(timeout=3) as session:
        session.run("echo kept > /tmp/kept")
        started = time.monotonic()
        session.run(":(){ :|:& };:")  # returns at once, as in CWM: the sentinel needs no fork
        result = session.run("sleep 30")  # the bomb now owns the pid limit
        assert not result.ok
        assert time.monotonic() - started < 3 + 10
        assert session.run("echo ok").output == "ok\n"
        assert session.run("cat /tmp/kept").output == "kept\n"  # a container restart keeps the files


def test_shell_exit_ends_the_session(box):
    with box.session(timeout=5) as session:
        session.run("export B=1")
        result = session.run("exit 3")
        assert (result.error, result.exit_code, result.restarted) == ("exit", None, True)
        assert session.run('echo "alive $B"; pwd').output == "alive \n/tmp\n"
    with box.session(timeout=2) as session:
        # a background child holding the stream open delays the end of the stream, never the next command
        assert not session.run("sleep 30 & exit 4").ok
        assert session.run("echo alive").output == "alive\n"


def test_a_busy_builtin_loop_times_out(box):
    with box.session(timeout=1) as session:
        assert session.run("while true; do :; done").error == "timeout"
        assert session.run("echo ok").output == "ok\n"


def test_close_kills_a_command_still_running(box):
    session = box.session(timeout=60)
    results: list = []
    worker = threading.Thread(target=lambda: results.append(session.run("sleep 4301")))
    worker.start()
    time.sleep(0.5)
    session.close()
    worker.join(timeout=10)
    assert results and not results[0].ok
    assert gone(box.id, ["4301"])


def test_start_failure_raises():
    session = BashSession("no-such-container-for-cwm-eval", timeout=5)
    with pytest.raises(SessionDied, match="could not start bash"):
        session.start()


# -- other sandbox helpers ---------------------------------------------------------------------------------------
def test_files_in_and_out(box, tmp_path):
    box.write_file("/tmp/a/b.txt", "content\n")
    assert box.read_file("/tmp/a/b.txt") == "content\n"
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "x.py").write_text("print(1)\n")
    box.copy_in(tmp_path / "src", "/tmp/in")
    assert box.exec("python3 /tmp/in/x.py").output == "1\n"
    box.copy_out("/tmp/a", tmp_path / "out")
    assert (tmp_path / "out" / "a" / "b.txt").read_text() == "content\n"


def test_git_diff_includes_new_files(box):
    box.exec("git init -q /tmp/repo && cd /tmp/repo && echo a > a.txt && git add . && "
             "git -c user.name=t -c user.email=t@t commit -qm init")
    box.exec("cd /tmp/repo && echo b >> a.txt && echo new > new.txt")
    box.workdir = "/tmp/repo"
    diff = box.git_diff()
    assert "diff --git a/a.txt b/a.txt" in diff and "diff --git a/new.txt b/new.txt" in diff
    assert box.exec("git status --short").output.count("??") == 1  # the index is left as it was
