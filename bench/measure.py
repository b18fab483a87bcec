"""CPU time and memory of a process and everything it forked, read with psutil.

A runtime is measured as a process tree: awslambdaric serves N slots from N forked workers,
so the parent alone would hide almost all of its cost.
"""

from __future__ import annotations

import psutil


def process_tree(pid: int) -> list[psutil.Process]:
    """The process and its live descendants (empty when it is gone)."""
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds used so far by the live processes of the tree."""
    total = 0.0
    for process in process_tree(pid):
        try:
            times = process.cpu_times()
        except psutil.NoSuchProcess:
            continue  # exited between listing and reading; it is not serving anyway
        total += times.user + times.system
    return total


def tree_pss(pid: int) -> tuple[int, int]:
    """(PSS bytes summed over the tree, number of processes).

    PSS charges each shared page to the processes sharing it in equal parts, so the sum is
    what the tree really costs the machine: fork's copy-on-write sharing is credited to
    awslambdaric rather than counted N times as RSS would.
    """
    total = 0
    counted = 0
    for process in process_tree(pid):
        try:
            total += process.memory_full_info().pss
        except psutil.NoSuchProcess:
            continue
        counted += 1
    return total, counted


def cpu_seconds_of(pid: int) -> float:
    """CPU seconds of one process (the emulator, the upstream server), 0.0 when gone."""
    try:
        times = psutil.Process(pid).cpu_times()
    except psutil.NoSuchProcess:
        return 0.0
    return times.user + times.system
