"""The verifier phase, in the agent's container once the agent is done, as Terminal-Bench and Harbor run it.

1. Every process the agent phase left is killed (the whole PID namespace but docker-init and the keeper; setsid,
   nohup and daemonised ones too), or the container is restarted (files kept): harness.shell_cleanup.
2. /tests and /logs/verifier are deleted with the harness's own shell (a static busybox or the host's bash copied
   in, never the container's `rm`), then /tests (the task's tests/, TB 1.x's run-tests.sh) and an empty
   /logs/verifier are written with Docker's archive API; the folder is checked to be empty.
3. The test script runs in a fresh shell (a new `docker exec`, not the agent's session) under the test timeout.
4. TB 1.x grades the pytest -rA summary; Harbor the reward file, read with Docker's archive API and only when the
   test script ran to its end. A test timeout fails the trial.
Anything the agent broke (its `rm`, `cat`, `python3`, `bash`, the folders) fails the trial as `unresolved`.
Logs: test_output.txt, results.json (and Harbor's /logs/verifier files under logs/) in `log_dir`.
"""

from __future__ import annotations

import io
import json
import re
import shlex
import tarfile
from pathlib import Path

import docker.errors

from harness.sandbox import Sandbox
from harness.shell_cleanup import clear_agent_processes, run_helper
from tasks.base import Verdict
from tasks.terminal_bench.parsers import RewardError, parse_pytest, parse_reward, pytest_resolved
from tasks.terminal_bench.spec import TESTS_IN_CONTAINER, TaskSpec

VERIFIER_LOGS = "/logs/verifier"
EXIT_MARKER = "__cwm_eval_test_exit__="
_EXIT = re.compile(rf"\n?{EXIT_MARKER}(\d+)\s*$")
MAX_REWARD_BYTES = 1 << 20
# run by the harness's helper shell: `x rm` is its own rm; a /logs that is not a folder (a file, a link) goes too
RESET = (f"x rm -rf {TESTS_IN_CONTAINER} {VERIFIER_LOGS} || exit 1\n"
         "if [ -L /logs ] || { [ -e /logs ] && [ ! -d /logs ]; }; then x rm -rf /logs || exit 1; fi\n"
         'for old in /.cwm-eval-verifier-*; do [ "$old" = "$D" ] || x rm -rf "$old"; done\n')


def _test_command(spec: TaskSpec) -> str:
    exports = "".join(f"export {key}={shlex.quote(value)}; " for key, value in spec.verifier_env.items()
                      if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key))
    return f"{exports}{spec.test_command}; echo {EXIT_MARKER}$?"


def _split_exit(output: str) -> tuple[str, int | None]:
    match = _EXIT.search(output)
    if match is None:
        return output, None
    return output[:match.start()], int(match.group(1))


def _layout(spec: TaskSpec) -> bytes:
    """/tests (the task's tests/, run-tests.sh) and empty /logs folders, owned by root, as one archive for /."""
    def root_owned(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.uid = info.gid = 0
        info.uname = info.gname = "root"
        return info

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, mode in (("logs", 0o755), ("logs/agent", 0o755), ("logs/verifier", 0o777)):
            info = root_owned(tarfile.TarInfo(name))
            info.type, info.mode = tarfile.DIRTYPE, mode
            tar.addfile(info)
        tar.add(spec.tests_dir, arcname=TESTS_IN_CONTAINER.strip("/"), filter=root_owned)
        if spec.run_tests:
            data = Path(spec.run_tests).read_bytes()
            info = root_owned(tarfile.TarInfo(f"{TESTS_IN_CONTAINER.strip('/')}/run-tests.sh"))
            info.size, info.mode = len(data), 0o755
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _listing(sandbox: Sandbox, path: str) -> list[str] | None:
    """The names in a container folder (its own name first), read with Docker's archive API; None if absent."""
    try:
        stream, _ = sandbox.container.get_archive(path)
    except docker.errors.NotFound:
        return None
    with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as tar:
        return tar.getnames()


def _read(sandbox: Sandbox, path: str) -> str | None:
    """A regular file's text through Docker's archive API (no binary of the container runs); None if absent."""
    try:
        stream, stat = sandbox.container.get_archive(path)
    except docker.errors.NotFound:
        return None
    if stat.get("size", 0) > MAX_REWARD_BYTES:
        return None
    with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as tar:
        member = tar.next()
        if member is None or not member.isfile():
            return None
        return tar.extractfile(member).read().decode(errors="replace")


def _unresolved(log_dir: Path, details: dict, reason: str) -> Verdict:
    details.update(is_resolved=False, failure_mode="verifier_setup", reason=reason)
    (log_dir / "results.json").write_text(json.dumps(details, indent=2) + "\n")
    return Verdict(resolved=False, reward=0.0, details=details)


def prepare_in_place(spec: TaskSpec, sandbox: Sandbox) -> tuple[dict, str | None]:
    """Steps 1-2: the agent's processes gone, fresh /tests and an empty /logs/verifier. (notes, failure reason)"""
    notes = {"agent_processes": clear_agent_processes(sandbox.container)}
    code, output = run_helper(sandbox.container, RESET)
    if code != 0:
        return notes, f"could not clear {TESTS_IN_CONTAINER} and {VERIFIER_LOGS} (exit {code}): {output[-300:]}"
    try:
        sandbox.container.put_archive("/", _layout(spec))
    except docker.errors.APIError as exc:
        if not sandbox.container.client.api.ping():
            raise
        return notes, f"could not write {TESTS_IN_CONTAINER} and {VERIFIER_LOGS}: {exc}"
    found = _listing(sandbox, VERIFIER_LOGS)
    if found != ["verifier"]:
        return notes, f"{VERIFIER_LOGS} is not a fresh empty folder before the tests: {found}"
    return notes, None


def run_verifier(spec: TaskSpec, sandbox: Sandbox, log_dir: Path, timeout: float) -> Verdict:
    log_dir.mkdir(parents=True, exist_ok=True)
    details: dict = {"format": spec.format, "command": spec.test_command, "timeout_sec": timeout}
    notes, failure = prepare_in_place(spec, sandbox)
    details.update(notes)
    if failure:
        return _unresolved(log_dir, details, failure)
    command = _test_command(spec)
    result = sandbox.exec(command, timeout=timeout)  # a new docker exec: a fresh shell, not the agent's
    output, exit_code = _split_exit(result.output)
    (log_dir / "test_output.txt").write_text(output)
    details.update(exit_code=exit_code, timed_out=result.timed_out, seconds=round(result.seconds, 3))
    if spec.run_tests_in_same_shell:
        details["note"] = "run_tests_in_same_shell: the tests ran in a fresh shell (the agent's session had ended)"
    if spec.format == "harbor":
        verdict = _grade_reward(sandbox, log_dir, details, ran=exit_code is not None)
    else:
        verdict = _grade_pytest(output, details)
    if result.timed_out:
        details["failure_mode"] = "test_timeout"
        verdict = Verdict(resolved=False, reward=0.0, details=details)
    (log_dir / "results.json").write_text(json.dumps(verdict.details, indent=2) + "\n")
    return verdict


def _grade_pytest(output: str, details: dict) -> Verdict:
    results = parse_pytest(output)
    resolved = pytest_resolved(results)
    details.update(parser="pytest", parser_results=results or {}, is_resolved=resolved,
                   failure_mode="none" if results else ("parse_error" if results is None else "no tests"))
    if results is None:
        details["parse_error"] = "no `short test summary info` in the test output (run pytest with -rA)"
    return Verdict(resolved=resolved, reward=1.0 if resolved else 0.0, details=details)


def _grade_reward(sandbox: Sandbox, log_dir: Path, details: dict, ran: bool) -> Verdict:
    reward_json = _read(sandbox, f"{VERIFIER_LOGS}/reward.json")
    reward_txt = _read(sandbox, f"{VERIFIER_LOGS}/reward.txt")
    try:
        sandbox.copy_out(VERIFIER_LOGS, log_dir / "logs")
    except Exception as exc:  # noqa: BLE001 - the copy is for the record only
        details["copy_error"] = f"{type(exc).__name__}: {exc}"
    if not ran:  # the test command did not run to its end (the agent broke the shell or the work folder)
        details.update(parser="reward", reward=None, is_resolved=False, failure_mode="tests_did_not_finish",
                       reason="the test script did not run to its end (no reward is read)")
        return Verdict(resolved=False, reward=0.0, details=details)
    try:
        reward, metrics = parse_reward(reward_json, reward_txt)
    except RewardError as exc:
        details.update(parser="reward", reward=None, reward_error=str(exc), is_resolved=False)
        return Verdict(resolved=False, reward=0.0, details=details)
    resolved = reward >= 1.0
    details.update(parser="reward", reward=reward, metrics=metrics, is_resolved=resolved,
                   reward_file="reward.json" if reward_json is not None else "reward.txt")
    return Verdict(resolved=resolved, reward=reward, details=details)
