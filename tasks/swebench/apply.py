"""swebench's patch apply chain, with its common case in one exec.

The first try (`git apply --verbose`) applies almost every patch. It runs in one exec with what swebench runs next
when it applies: `git diff` (logged as "Git diff before") and a look at `/eval.sh` (put in beside the patch, before
the chain: the exec reports its git blob id, and the grader puts it in again unless it is exactly the eval script).
A random token, made after the patch was written and unknown to it, separates the three outputs (one stream, so in
the order written); nothing of the patch runs in this exec. When the first try fails, the rest of swebench's chain
runs as swebench runs it.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from dataclasses import dataclass

from swebench.harness.constants import APPLY_PATCH_FAIL, APPLY_PATCH_PASS, CONTAINER_PATCH_FILE
from swebench.harness.run_evaluation import GIT_APPLY_CMDS
from swebench.image_builder.constants import CONTAINER_USER, CONTAINER_WORKDIR

EVAL_FILE = "/eval.sh"
GIT_DIFF = "git -c core.fileMode=false diff"  # swebench's "git diff before/after"


@dataclass
class Applied:
    applied: bool
    diff_before: str | None = None  # from the first try's exec; None: not run yet
    eval_blob: str | None = None  # git blob id of /eval.sh when the first try applied


def blob_id(data: bytes) -> str:
    """git's object id of a blob with these bytes (what `git hash-object` prints)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def first_try(container) -> tuple[int | None, bytes, Applied]:
    """`git apply --verbose` and, when it applies, `git diff` and /eval.sh's blob id, in one exec."""
    token = secrets.token_hex(16)
    script = (f"exec 2>&1; {GIT_APPLY_CMDS[0]} {CONTAINER_PATCH_FILE}; status=$?; echo {token} $status; "
              f"[ $status -eq 0 ] || exit $status; {GIT_DIFF}; echo {token}; git hash-object --stdin < {EVAL_FILE}")
    result = container.exec_run(["/bin/bash", "-c", script], workdir=CONTAINER_WORKDIR, user=CONTAINER_USER)
    output, found, rest = result.output.partition(token.encode())
    status, _, rest = rest.partition(b"\n")
    if not found or status.strip() != b"0":  # git apply's own status decides (the exec's is the last command's)
        return result.exit_code or 1, output, Applied(False)
    diff, _, blob = rest.partition(token.encode())
    before, blob_text = diff.decode("utf-8", errors="replace").strip(), blob.decode(errors="replace").strip()
    return 0, output, Applied(True, before, blob_text or None)


def apply_patch(container, logger: logging.Logger) -> Applied:
    """swebench's fallback chain, exactly: a pristine tree between tries, the reverse check when every try failed."""
    output = b""
    for attempt, command in enumerate(GIT_APPLY_CMDS):
        if attempt:
            container.exec_run(["/bin/bash", "-c", "git checkout -- . ; git clean -fd"], workdir=CONTAINER_WORKDIR,
                               user=CONTAINER_USER)
            val = container.exec_run(f"{command} {CONTAINER_PATCH_FILE}", workdir=CONTAINER_WORKDIR,
                                     user=CONTAINER_USER)
            code, output, applied = val.exit_code, val.output, Applied(val.exit_code == 0)
        else:
            code, output, applied = first_try(container)
        if code == 0:
            logger.info(f"{APPLY_PATCH_PASS}:\n{output.decode('utf-8', errors='replace')}")
            return applied
        logger.info(f"Failed to apply patch to container: {command}")
    reverse = container.exec_run(f"git apply --check --reverse {CONTAINER_PATCH_FILE}", workdir=CONTAINER_WORKDIR,
                                 user=CONTAINER_USER)
    if reverse.exit_code == 0:
        logger.info(f"{APPLY_PATCH_PASS}: verified already applied")
        return Applied(True)
    logger.info(f"{APPLY_PATCH_FAIL}:\n{output.decode('utf-8', errors='replace')}")
    return Applied(False)
