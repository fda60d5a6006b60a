"""Clean-up after a failed shell command: kill what it started, or restart the container when that cannot run.

Used by harness/session.py. Everything in the container is done with bash builtins and /proc (no `ps`, no fork).
"""

from __future__ import annotations

import subprocess

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
