"""How many CPUs this process may actually use: affinity and the cgroup CPU quota.

``os.cpu_count()`` is the host's count; a container or a Lambda execution environment is
limited by its affinity mask and by a CFS quota (cgroup v2 ``cpu.max``, v1
``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``). A quota of 1.5 CPUs rounds up to 2: the
second process gets half a CPU, which still beats one process queueing for the first.
Stdlib only: read before anything heavy is imported.
"""

from __future__ import annotations

import math
import os

CGROUP_ROOT = "/sys/fs/cgroup"
PROC_CGROUP = "/proc/self/cgroup"


def usable_cpus(cgroup_root: str = CGROUP_ROOT, proc_cgroup: str = PROC_CGROUP) -> int:
    """The CPUs this process may run on, capped by its cgroup's CPU quota; at least 1."""
    try:
        count = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        count = os.cpu_count() or 1
    quota = cgroup_cpu_quota(cgroup_root, proc_cgroup)
    if quota is not None:
        count = min(count, math.ceil(quota))
    return max(1, count)


def cgroup_cpu_quota(cgroup_root: str = CGROUP_ROOT, proc_cgroup: str = PROC_CGROUP) -> float | None:
    """The tightest CPU quota (in CPUs) on this process's cgroup and its ancestors, or None."""
    try:
        with open(proc_cgroup, encoding="ascii") as lines:
            memberships = [line.rstrip("\n").split(":", 2) for line in lines if line.count(":") >= 2]
    except OSError:
        return None
    quotas: list[float] = []
    for hierarchy, controllers, path in memberships:
        if hierarchy == "0" and controllers == "":  # cgroup v2, the unified hierarchy
            quotas += _v2_quotas(cgroup_root, path)
        elif "cpu" in controllers.split(","):
            quotas += _v1_quotas(cgroup_root, controllers, path)
    return min(quotas) if quotas else None


def _ancestors(base: str, path: str) -> list[str]:
    """``base/path`` and each parent up to ``base``. In a container the path seen in
    /proc/self/cgroup often does not exist under its own mount: then only the mount's root."""
    parts = [part for part in path.split("/") if part]
    dirs = [os.path.join(base, *parts[:depth]) for depth in range(len(parts), -1, -1)]
    return [d for d in dirs if os.path.isdir(d)]


def _v2_quotas(root: str, path: str) -> list[float]:
    quotas = []
    for directory in _ancestors(root, path):
        text = _read(os.path.join(directory, "cpu.max"))
        fields = text.split() if text else []
        if len(fields) == 2 and fields[0] != "max":
            quotas.append(_ratio(fields[0], fields[1]))
    return [q for q in quotas if q > 0]


def _v1_quotas(root: str, controllers: str, path: str) -> list[float]:
    quotas = []
    for mount in (controllers, "cpu,cpuacct", "cpu"):
        for directory in _ancestors(os.path.join(root, mount), path):
            quota = _read(os.path.join(directory, "cpu.cfs_quota_us"))
            period = _read(os.path.join(directory, "cpu.cfs_period_us"))
            if quota and period and quota.strip() != "-1":
                quotas.append(_ratio(quota, period))
        if quotas:
            break
    return [q for q in quotas if q > 0]


def _ratio(quota: str, period: str) -> float:
    try:
        return int(quota) / int(period)
    except (ValueError, ZeroDivisionError):
        return 0.0


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="ascii") as handle:
            return handle.read().strip()
    except OSError:
        return None
