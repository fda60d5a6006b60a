"""Clean-up in a container: after a failed shell command (harness/session.py), and before verifying in place.

After a failed command: kill what it started, or restart the container when that cannot run; bash builtins and
/proc only (no `ps`, no fork). Before verifying (Terminal-Bench): kill every process of the agent phase with a
harness-provided shell (a static busybox copied in, else the host's own bash with its libraries), checked from
outside with `docker top`, and a container restart as the fallback.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import tarfile
import time
import uuid
from dataclasses import dataclass
from functools import lru_cache

import docker.errors

KILL_TIMEOUT = 20.0  # the in-container clean-up; past it the container is restarted
RESTART_TIMEOUT = 120.0

# Kill what the failed command started. Arguments: the session's bash pid, the command's tag, and the
# last pid / uptime tick the container had when the previous command ended. Victims:
# - the session's bash;
# - every process whose environment carries the command's tag (what it exec'd, setsid/nohup ones too);
# - untagged processes (forked subshells of bash, `env -i` children) created after the previous command
#   ended (pid above its last pid and started no earlier than its tick) that descend from the session's
#   bash or were orphaned to pid 1 (not other `docker exec`s, whose tree ends at pid 0).
# Repeated until a pass finds nothing; exit 1 if processes keep appearing, 3 if there are too many to scan
# (a fork bomb: the caller restarts the container). Bash builtins only: no ps, no fork.
_KILL_SCRIPT = r"""
B=$1 TAG=$2 L=$3 T=$4 me=$$
declare -A pp st
all=(/proc/[0-9]*)
[ "${#all[@]}" -gt 3000 ] && exit 3  # a fork bomb: the caller restarts the container instead
[ -n "$B" ] && kill -KILL "$B" 2>/dev/null
pass=0
while [ "$pass" -lt 12 ]; do
  pass=$((pass + 1))
  pids=()
  pp=()
  st=()
  for d in /proc/[0-9]*; do
    p=${d#/proc/}
    [ "$p" = "$me" ] && continue
    line=
    { read -r line < "$d/stat"; } 2>/dev/null
    [ -n "$line" ] || continue
    rest=${line##*) }
    set -f; set -- $rest; set +f
    [ "$1" = Z ] && continue
    pids+=("$p")
    pp[$p]=$2
    st[$p]=${20}
  done
  victims=()
  for p in "${pids[@]}"; do
    has=0 hit=0
    while IFS= read -r -d '' e; do
      case $e in __CWM_CMD_ID=*) has=1; [ "$e" = "__CWM_CMD_ID=$TAG" ] && hit=1; break;; esac
    done 2>/dev/null < "/proc/$p/environ"
    if [ "$hit" = 1 ]; then victims+=("$p"); continue; fi
    [ "$has" = 0 ] && [ "$L" -ge 0 ] && [ "$p" -gt "$L" ] && [ "$p" != 1 ] && [ "${st[$p]:-0}" -ge "$T" ] || continue
    q=$p n=0
    while [ -n "$q" ] && [ "$q" != 0 ] && [ "$q" != 1 ] && [ "$q" != "$B" ] && [ "$n" -lt 500 ]; do
      q=${pp[$q]}
      n=$((n + 1))
    done
    if [ "$q" = 1 ] || { [ -n "$B" ] && [ "$q" = "$B" ]; }; then victims+=("$p"); fi
  done
  [ "${#victims[@]}" = 0 ] && exit 0
  kill -KILL "${victims[@]}" 2>/dev/null
done
exit 1
"""


_PIDS_CGROUP_DIRS = (  # where the Docker host keeps a container's pids cgroup (v1/v2, cgroupfs/systemd drivers)
    "/sys/fs/cgroup/pids/docker/{id}",
    "/sys/fs/cgroup/docker/{id}",
    "/sys/fs/cgroup/system.slice/docker-{id}.scope",
    "/sys/fs/cgroup/pids/system.slice/docker-{id}.scope",
)


def _pids_nearly_full(container_id: str) -> bool:
    """Whether the container's process count is at its pids limit, read from the host's cgroup files.

    False where they cannot be read (a remote Docker host, a short id): the in-container kill still runs and a
    container restart remains the fallback.
    """
    for pattern in _PIDS_CGROUP_DIRS:
        folder = pattern.format(id=container_id)
        try:
            with open(f"{folder}/pids.current") as f:
                current = int(f.read())
            with open(f"{folder}/pids.max") as f:
                limit = f.read().strip()
        except (OSError, ValueError):
            continue
        cap = int(limit) if limit.isdigit() else 32768
        return current >= cap - max(8, cap // 64)
    return False


def kill_command_processes(docker_bin: str, container_id: str, bash_pid: int | None, tag: str, last_pid: int,
                           last_tick: int) -> None:
    """Kill the session's bash and what its last command started; restart the container if that cannot run."""
    if _pids_nearly_full(container_id):  # a fork bomb: an exec would crawl or fail, a restart takes 1 s
        restart_container(docker_bin, container_id)
        return
    args = [str(bash_pid or ""), tag, str(last_pid), str(last_tick)]
    argv = [docker_bin, "exec", "-w", "/", container_id, "/bin/bash", "-c", _KILL_SCRIPT, "cwm-kill", *args]
    try:
        done = subprocess.run(argv, capture_output=True, timeout=KILL_TIMEOUT, check=False)
        if done.returncode == 0:
            return
    except (subprocess.TimeoutExpired, OSError):
        pass
    restart_container(docker_bin, container_id)


def restart_container(docker_bin: str, container_id: str) -> None:
    """The fallback when the in-container kill cannot run: restart the container (its files survive)."""
    try:
        state = subprocess.run([docker_bin, "inspect", "-f", "{{.State.Running}}", container_id],
                               capture_output=True, text=True, timeout=30, check=False)
        if state.stdout.strip() != "true":
            return  # removed or stopped on purpose: nothing to rescue
        subprocess.run([docker_bin, "restart", "-t", "0", container_id], capture_output=True,
                       timeout=RESTART_TIMEOUT, check=False)
    except (subprocess.TimeoutExpired, OSError):
        pass


# --- the verifier's side: a shell the agent cannot replace, and the end of every process of the agent phase ---

BUSYBOX_ENV = "CWM_EVAL_BUSYBOX"  # a statically linked busybox to use; else one on PATH, else the host's bash
HELPER_TIMEOUT = 60.0
CLEAR_TIMEOUT = 30.0  # the in-container kill of every agent process; past it the container is restarted
_HOST_PROGRAMS = ("bash", "rm", "sleep")  # the fallback bundle: these, their libraries and the host's ld.so

# Kill every process of the container's PID namespace except PID 1 (docker-init), the keeper (the oldest child of
# PID 1: `sleep infinity`, started with the container) and this script. `kill -STOP -1` freezes all of them at
# once (no fork completes while the kernel walks the list), then each is killed; repeated until a pass finds
# nothing alive. The keeper stays stopped. POSIX sh builtins and /proc only (no ps); `x sleep` is the helper's own.
KILL_ALL_SCRIPT = r"""
me=$$ keep= kst=
for d in /proc/[0-9]*; do
  p=${d#/proc/}
  case $p in 1|"$me") continue;; esac
  line=
  read -r line 2>/dev/null < "$d/stat" || continue
  set -f; set -- ${line##*) }; set +f
  [ "$2" = 1 ] || continue
  if [ -z "$keep" ] || [ "${20}" -lt "$kst" ] || { [ "${20}" = "$kst" ] && [ "$p" -lt "$keep" ]; }; then
    keep=$p kst=${20}
  fi
done
n=0 first=
while [ "$n" -lt 300 ]; do
  n=$((n + 1)) left=0
  kill -STOP -1 2>/dev/null
  for d in /proc/[0-9]*; do
    p=${d#/proc/}
    case $p in 1|"$me"|"$keep") continue;; esac
    line=
    read -r line 2>/dev/null < "$d/stat" || continue
    rest=${line##*) }
    case ${rest%% *} in Z|X|x) continue;; esac
    kill -KILL "$p" 2>/dev/null
    left=$((left + 1))
  done
  [ -z "$first" ] && first=$left
  if [ "$left" = 0 ]; then echo "killed=$first passes=$n keeper=$keep"; exit 0; fi
  [ "$n" -gt 1 ] && x sleep 0.02
done
echo "killed=$first passes=$n left=$left"
exit 1
"""


def _static_elf(path: str) -> bool:
    """A 64-bit little-endian ELF executable with no program interpreter (statically linked)."""
    try:
        with open(path, "rb") as f:
            head = f.read(64)
            if head[:4] != b"\x7fELF" or head[4] != 2 or head[5] != 1:
                return False
            phoff = int.from_bytes(head[0x20:0x28], "little")
            size, count = int.from_bytes(head[0x36:0x38], "little"), int.from_bytes(head[0x38:0x3A], "little")
            f.seek(phoff)
            table = f.read(size * count)
    except OSError:
        return False
    return all(int.from_bytes(table[i * size:i * size + 4], "little") != 3 for i in range(count))  # 3: PT_INTERP


def _host_bundle() -> dict[str, str] | None:
    """The host's bash, rm and sleep with their libraries and ld.so: runs in any Linux container of this arch."""
    files: dict[str, str] = {}
    for program in _HOST_PROGRAMS:
        path = shutil.which(program)
        if path is None:
            return None
        files[program] = path
        try:
            listing = subprocess.run(["ldd", path], capture_output=True, text=True, timeout=30, check=True).stdout
        except (OSError, subprocess.SubprocessError):
            return None
        for line in listing.splitlines():
            parts = line.split()
            if "=>" in parts and len(parts) >= 3 and parts[2].startswith("/"):
                files[parts[0]] = parts[2]
            elif parts and parts[0].startswith("/"):
                files["ld.so"] = parts[0]
    return files if "ld.so" in files else None


@dataclass(frozen=True)
class HelperTools:
    """A harness-provided shell for the verifier's own steps: a static busybox, else the host's bash bundle.

    Scripts are POSIX sh; `x PROGRAM ARGS` runs one of the helper's own programs (rm, sleep), never the
    container's. The files are copied into a fresh folder for each run (the agent cannot have touched them).
    """

    kind: str  # "busybox" | "host-bash" | "container" (no harness shell: the container's own /bin/sh)
    files: tuple[tuple[str, str], ...] = ()

    def argv(self, folder: str, script: str, args: list[str]) -> list[str]:
        if self.kind == "busybox":
            prelude, head = 'x() { "$D/busybox" "$@"; }\n', [f"{folder}/busybox", "sh", "-c"]
        elif self.kind == "host-bash":
            prelude = 'x() { p=$1; shift; "$D/ld.so" --library-path "$D" "$D/$p" "$@"; }\n'
            head = [f"{folder}/ld.so", "--library-path", folder, f"{folder}/bash", "--norc", "--noprofile", "-c"]
        else:
            prelude, head = 'x() { "$@"; }\n', ["/bin/sh", "-c"]
        prelude += 'trap \'x rm -rf "$D"\' EXIT\n' if self.files else ""
        return [*head, 'D=$1; shift\n' + prelude + script, "cwm-eval-verifier", folder, *args]


def busybox_tools() -> HelperTools | None:
    """A statically linked busybox: $CWM_EVAL_BUSYBOX, else one on PATH or in /bin (Debian's busybox-static)."""
    for path in (os.environ.get(BUSYBOX_ENV), shutil.which("busybox"), "/bin/busybox", "/usr/bin/busybox"):
        if path and os.path.isfile(path) and _static_elf(path):
            return HelperTools("busybox", (("busybox", path),))
    return None


def host_bash_tools() -> HelperTools | None:
    bundle = _host_bundle()
    return HelperTools("host-bash", tuple(sorted(bundle.items()))) if bundle is not None else None


@lru_cache(maxsize=1)
def helper_tools() -> HelperTools:
    return busybox_tools() or host_bash_tools() or HelperTools("container")


def run_helper(container, script: str, *args: str, docker_bin: str = "docker", timeout: float = HELPER_TIMEOUT,
               tools: HelperTools | None = None) -> tuple[int | None, str]:
    """Run a POSIX sh script as root in the container with the helper shell (exit code, output; None: timed out)."""
    tools = tools or helper_tools()
    folder = f"/.cwm-eval-verifier-{uuid.uuid4().hex[:16]}"
    if tools.files:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            tar.addfile(_tar_entry(folder[1:], tarfile.DIRTYPE, 0o700))
            for name, path in tools.files:
                with open(path, "rb") as f:
                    data = f.read()
                tar.addfile(_tar_entry(f"{folder[1:]}/{name}", tarfile.REGTYPE, 0o755, len(data)), io.BytesIO(data))
        container.put_archive("/", buf.getvalue())
    argv = [docker_bin, "exec", "-u", "0", "-w", "/", "-e", "LC_ALL=C", "-e", "ENV=", "-e", "BASH_ENV=",
            container.id, *tools.argv(folder, script, list(args))]
    try:
        done = subprocess.run(argv, capture_output=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return None, ""
    return done.returncode, (done.stdout + done.stderr).decode(errors="replace")


def _tar_entry(name: str, kind: bytes, mode: int, size: int = 0) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.size, info.uid, info.gid = kind, mode, size, 0, 0
    info.uname = info.gname = "root"
    info.mtime = int(time.time())
    return info


def _running(container) -> bool:
    container.reload()
    return container.status == "running"


def _leftovers(container) -> list[str] | None:
    """What runs in the container besides docker-init and its keeper, as the Docker host's `ps` sees it.

    Read from outside (docker top), so a helper the agent swapped cannot hide anything. None when top is not
    available.
    """
    if not _running(container):
        container.start()  # the keeper died (the agent stopped its container): a fresh start keeps the files
        return []
    try:
        top = container.top(ps_args="-o pid,stat,args")
    except docker.errors.APIError:
        return None
    titles = top.get("Titles") or []
    if titles[:3] != ["PID", "STAT", "COMMAND"]:
        return None
    init = str(container.attrs["State"].get("Pid"))
    alive = [row for row in top.get("Processes") or [] if row[0] != init and not row[1].startswith("Z")]
    return [row[2] for row in alive] if len(alive) > 1 else []


def clear_agent_processes(container, docker_bin: str = "docker", tools: HelperTools | None = None) -> dict:
    """Before verifying in place: kill every process the agent phase left (the whole PID namespace except
    docker-init and the container's keeper), setsid, nohup and daemonised ones included; restart the container
    (files kept) when that cannot be done. Returns what was done; raises RuntimeError if processes survive even
    a restart (Docker failing)."""
    tools = tools or helper_tools()
    notes: dict = {"helper": tools.kind, "restarted": False}
    if not _running(container):
        container.start()
        notes["started"] = True  # the agent stopped its own container
    if _pids_nearly_full(container.id):
        notes["pids_full"] = True
    else:
        code, output = run_helper(container, KILL_ALL_SCRIPT, docker_bin=docker_bin, timeout=CLEAR_TIMEOUT,
                                   tools=tools)
        notes.update(exit_code=code, report=output.strip()[-300:])
        if code == 0:
            left = _leftovers(container)
            if left == [] or left is None:
                return notes
            notes["left_after_kill"] = left[:20]
    restart_container(docker_bin, container.id)
    notes["restarted"] = True
    left = _leftovers(container)
    if left:
        raise RuntimeError(f"processes survived a restart of {container.id[:12]}: {left[:5]}")
    return notes
