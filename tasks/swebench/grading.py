"""Grade a patch as swebench's `run_instance` does (harness/run_evaluation.py), in a fresh container of the task image.

The container is created as swebench creates it (user root, `tail -f /dev/null`, CAP_SYS_ADMIN, Docker's default
network, no CPU, memory or pids limits; plus our labels, so the run's clean-up finds it). The steps are swebench's
own, in its order: the patch copied to `CONTAINER_PATCH_FILE`, its `git apply` fallback chain (a pristine tree
between tries, the reverse check last), the image assets, `/eval.sh` run with `exec_run_with_timeout`, and
`get_eval_report`. The log folder has swebench's layout: `patch.diff`, `run_instance.log`, `eval.sh`,
`test_output.txt` (the eval script's output only, plus swebench's timeout line) and `report.json`. As in swebench,
a patch that does not apply leaves no `test_output.txt` and no `report.json`, and a run past the timeout leaves no
`report.json`; both are unresolved.

Departures that change no verdict, for speed: the container may have been started ahead of time, while the agent
worked (`containers.py`); files go in with one Docker call each time (no `mkdir -p` exec), the eval script with the
patch; and the first `git apply` try shares its exec with the `git diff` after it (`apply.py`).

swebench's infrastructure classification (`classify_logs`) is advisory, as swebench keeps it: the verdict is the
report's, and the classification is a note (`infra_note`, `infra_tier`) in the verdict details.
"""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path

from swebench.harness.constants import CONTAINER_PATCH_FILE, LOG_INSTANCE, LOG_REPORT, LOG_TEST_OUTPUT
from swebench.harness.docker_utils import exec_run_with_timeout
from swebench.harness.grading import get_eval_report, parse_test_exit_code
from swebench.harness.infra_failure import TIER_ENVIRONMENT, classify_logs
from swebench.harness.run_evaluation import _inject_asset_restore, _stage_image_assets
from swebench.harness.utils import make_test_spec
from swebench.image_builder.constants import CONTAINER_WORKDIR

from tasks.base import Verdict
from tasks.swebench.apply import EVAL_FILE, GIT_DIFF, Applied, apply_patch, blob_id
from tasks.swebench.containers import VerifyContainer, create_container, put_files, remove_container
from tasks.swebench.tampering import classify_paths, pytest_section_changed

EVAL_TIMEOUT = 1800  # swebench's default per test run
TAMPERING = "test_tampering"
INFRA_FLAG = "swebench_infra_failure"
_loggers = threading.Lock()
_logger_count = 0


def instance_logger(log_file: Path) -> logging.Logger:
    """A file logger formatted as swebench's `setup_logger`, under a name of its own (attempts run side by side)."""
    global _logger_count
    with _loggers:
        _logger_count += 1
        logger = logging.getLogger(f"cwm-eval.run_instance.{_logger_count}")
    handler = logging.FileHandler(log_file, mode="w", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s - %(levelname)s - %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    logger.log_file = log_file
    return logger


def close_logger(logger: logging.Logger) -> None:
    for handler in list(logger.handlers):
        handler.close()
        logger.removeHandler(handler)


def _read(container, path: str, revision: str | None = None) -> str | None:
    """A file of the work tree (or of `revision`), None when it does not exist there."""
    argv = ["git", "show", f"{revision}:{path}"] if revision is not None else ["cat", "--", path]
    result = container.exec_run(argv, workdir=CONTAINER_WORKDIR, demux=True)
    if result.exit_code != 0:
        return None
    return (result.output[0] or b"").decode(errors="replace")


def tampering(container, patch: str) -> list[str]:
    """The test-infrastructure files the applied patch touches (read-only look at the grading container)."""
    flagged, sectioned = classify_paths(patch)
    for path in sectioned:
        if pytest_section_changed(path, _read(container, path, "HEAD"), _read(container, path)):
            flagged.append(f"{path} (pytest section)")
    return flagged


def ready_eval(container, spec, applied: Applied, log_dir: Path, logger: logging.Logger, task_repo: str | None) -> None:
    """swebench's steps between the patch and the tests: the `git diff` logged before, the image assets, /eval.sh."""
    if applied.diff_before is None:
        before = container.exec_run(GIT_DIFF, workdir=CONTAINER_WORKDIR).output
        applied.diff_before = before.decode("utf-8", errors="replace").strip()
    logger.info(f"Git diff before:\n{applied.diff_before}")
    restore = _stage_image_assets(container, spec, log_dir, logger, task_repo)
    eval_file = log_dir / "eval.sh"
    eval_file.write_text(_inject_asset_restore(spec.eval_script, restore))
    if applied.eval_blob != blob_id(eval_file.read_bytes()):  # not the one put in with the patch
        put_files(container, {EVAL_FILE: eval_file.read_bytes()})


def run_instance(spec, patch: str, log_dir: Path, timeout: int, task_repo: str | None,
                 verifier: VerifyContainer | None = None) -> dict:
    """swebench's `run_instance` steps; returns what happened: applied, timed_out, killed, tampered paths.

    The container is `verifier`'s, started ahead of time (its owner removes it), else one started and removed here.
    """
    logger = instance_logger(log_dir / LOG_INSTANCE)
    container = warm = None
    state = {"applied": False, "timed_out": False, "killed": None, "tampering": []}
    try:
        warm = verifier.take() if verifier is not None else None
        container = warm or create_container(spec.image)
        logger.info(f"Container for {spec.instance_id} started: {container.id}")
        # the eval script goes in with the patch, and again after the chain unless it is exactly that (apply.py)
        put_files(container, {CONTAINER_PATCH_FILE: (log_dir / "patch.diff").read_bytes(),
                              EVAL_FILE: spec.eval_script.encode()})
        applied = apply_patch(container, logger)
        if not applied.applied:
            return state
        state["applied"] = True
        state["tampering"] = tampering(container, patch)
        ready_eval(container, spec, applied, log_dir, logger, task_repo)
        output, timed_out, runtime = exec_run_with_timeout(container, "/bin/bash /eval.sh", timeout)
        logger.info(f"Test runtime: {runtime:_.2f} seconds")
        with open(log_dir / LOG_TEST_OUTPUT, "w") as f:
            f.write(output)
            if timed_out:
                f.write(f"\n\nTimeout error: {timeout} seconds exceeded.")
        if timed_out:
            logger.info(f"Test timed out after {timeout} seconds.")
            state["timed_out"] = True
            return state
        container.reload()
        if not container.attrs["State"].get("Running"):  # the tests brought the container down
            state["killed"] = "verifier out of memory" if container.attrs["State"].get("OOMKilled") else \
                "verifier killed"
            return state
        after = container.exec_run(GIT_DIFF, workdir=CONTAINER_WORKDIR)
        logger.info(f"Git diff after:\n{after.output.decode('utf-8', errors='replace').strip()}")
        return state
    finally:
        if container is not None and container is not warm:
            remove_container(container)
        close_logger(logger)


def grade(instance: dict, patch: str, log_dir: Path, *, model: str = "cwm-eval", timeout: int = EVAL_TIMEOUT,
          task_repo: str | None = None, verifier: VerifyContainer | None = None) -> Verdict:
    """Apply `patch`, run the eval script and grade with swebench; logs go to `log_dir` in swebench's layout.

    `verifier`: a grading container started ahead of time (the runner starts one while the agent works), used once
    and left for its owner to remove; without it (or when it did not start) a fresh one is started and removed here.

    Verdict details: swebench's per-instance report, the test command's exit code, swebench's advisory
    classification of an unresolved log, `reason` (why unresolved, when the patch or its tests caused it) and
    `flags` ("test_tampering", "swebench_infra_failure").
    """
    spec = make_test_spec(instance)
    iid = instance["instance_id"]
    prediction = {"instance_id": iid, "model_name_or_path": model, "model_patch": patch}
    log_dir.mkdir(parents=True, exist_ok=True)
    for stale in (LOG_TEST_OUTPUT, LOG_REPORT, "eval.sh"):  # a re-grade starts from an empty folder
        (log_dir / stale).unlink(missing_ok=True)
    (log_dir / "patch.diff").write_text(patch or "")
    unrun = {"patch_is_None": False, "patch_exists": True, "patch_successfully_applied": False, "resolved": False,
             "infra_failure": False}
    if not patch.strip():  # swebench does not run empty patches
        return Verdict(resolved=False, reward=0.0, details={**unrun, "reason": "empty patch"})
    state = run_instance(spec, patch, log_dir, timeout, task_repo, verifier)
    flags = [TAMPERING] if state["tampering"] else []
    extra = {"test_tampering": state["tampering"]} if state["tampering"] else {}
    if not state["applied"]:
        return Verdict(resolved=False, reward=0.0, details={**unrun, "reason": "patch does not apply"})
    test_output = log_dir / LOG_TEST_OUTPUT
    text = test_output.read_text(errors="replace")
    if state["timed_out"] or state["killed"]:  # swebench writes no report for these
        reason = "verifier timed out" if state["timed_out"] else state["killed"]
        return Verdict(resolved=False, reward=0.0, details={
            **unrun, "patch_successfully_applied": True, "test_exit_code": parse_test_exit_code(text),
            "reason": reason, "flags": flags, **extra})
    report = get_eval_report(spec, prediction, str(test_output), include_tests_status=True)
    (log_dir / LOG_REPORT).write_text(json.dumps(report, indent=4))
    entry = dict(report[iid])
    entry["test_exit_code"] = parse_test_exit_code(text)
    resolved = bool(entry["resolved"])
    # swebench's run report classifies every unresolved log; the per-instance report only an unparsable one
    classification = None if resolved else classify_logs(test_output, log_dir / LOG_INSTANCE)
    entry["infra_note"] = classification[0] if classification else None
    entry["infra_tier"] = classification[1] if classification else None
    if classification and classification[1] == TIER_ENVIRONMENT:
        flags.append(INFRA_FLAG)
        entry["reason"] = (f"swebench notes a likely infrastructure failure ({classification[0]}); advisory, "
                           "scored from the report")
    elif not resolved and not entry.get("patch_successfully_applied"):
        entry["reason"] = "no parsable test results"
    return Verdict(resolved=resolved, reward=1.0 if resolved else 0.0, details={**entry, "flags": flags, **extra})
