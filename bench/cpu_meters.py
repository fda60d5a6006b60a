"""CPU counters for benches that ask where a host's CPU went: this process, the Docker daemons, the containers, the
whole host. Each is cumulative CPU seconds (None where it cannot be read); take two snapshots and subtract."""

from __future__ import annotations

import os
import time
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")
DAEMONS = ("dockerd", "containerd")
# the parent cgroup of Docker's containers with the cgroupfs driver (v1, v2); it keeps removed containers' usage
CONTAINER_CGROUPS = (Path("/sys/fs/cgroup/cpuacct/docker/cpuacct.usage"), Path("/sys/fs/cgroup/docker/cpu.stat"))


def process_cpu() -> float:
    used = os.times()
    return used.user + used.system


def daemons_cpu() -> float | None:
    """CPU seconds dockerd and containerd have used (their /proc/PID/stat: root reads them)."""
    total, found = 0.0, False
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        name, rest = text[text.index("(") + 1:text.rindex(")")], text[text.rindex(")") + 2:].split()
        if name in DAEMONS:
            total, found = total + (int(rest[11]) + int(rest[12])) / TICK, True
    return total if found else None


def containers_cpu() -> float | None:
    """CPU seconds every Docker container used, removed ones included (cgroupfs driver), or None."""
    for path in CONTAINER_CGROUPS:
        try:
            text = path.read_text()
        except OSError:
            continue
        if path.name == "cpuacct.usage":
            return int(text) / 1e9
        fields = dict(line.split() for line in text.splitlines() if line.strip())
        return int(fields["usage_usec"]) / 1e6
    return None


def host_cpu() -> tuple[float, float] | None:
    """(busy, total) CPU seconds over all cores since boot, or None off Linux."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except OSError:
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields) - idle) / TICK, sum(fields) / TICK


def snapshot() -> dict:
    return {"process": process_cpu(), "daemons": daemons_cpu(), "containers": containers_cpu(), "host": host_cpu()}


def used(before: dict, after: dict) -> dict[str, float | None]:
    """CPU seconds between two snapshots; `host_busy` is the share of all cores busy (0..1)."""
    out = {key: after[key] - before[key] if before[key] is not None and after[key] is not None else None
           for key in ("process", "daemons", "containers")}
    out["host_busy"] = None
    if before["host"] and after["host"] and after["host"][1] > before["host"][1]:
        out["host_busy"] = (after["host"][0] - before["host"][0]) / (after["host"][1] - before["host"][1])
    return out


def background_busy(seconds: float = 3.0) -> float | None:
    """How busy the host's CPUs are while nothing of ours runs (other work skews every figure)."""
    before = snapshot()
    time.sleep(seconds)
    return used(before, snapshot())["host_busy"]
