"""LMI_GEVENT_WORKERS: parsing, `auto` from affinity and the cgroup CPU quota, slot shares."""

from __future__ import annotations

from pathlib import Path

import pytest

from lmi_gevent import config
from lmi_gevent.workers import cpus
from lmi_gevent.workers.supervisor import slot_shares


def load(**environ: str) -> tuple[config.Config, list[config.ConfigError]]:
    return config.load({"AWS_LAMBDA_RUNTIME_API": "127.0.0.1:9001", **environ})


@pytest.mark.parametrize("raw, expected", [("", "auto"), ("auto", "auto"), (" AUTO ", "auto"),
                                           ("1", 1), ("4", 4), ("1600", 1600)])
def test_workers_accepts_auto_or_a_count(raw: str, expected: object) -> None:
    cfg, problems = load(LMI_GEVENT_WORKERS=raw)
    assert problems == [] and cfg.workers == expected


@pytest.mark.parametrize("raw", ["0", "-1", "two", "2.5", "1601"])
def test_invalid_workers_is_a_configuration_problem_naming_the_setting(raw: str) -> None:
    _, problems = load(LMI_GEVENT_WORKERS=raw, AWS_LAMBDA_MAX_CONCURRENCY="abc")
    assert [p.env for p in problems] == ["AWS_LAMBDA_MAX_CONCURRENCY", "LMI_GEVENT_WORKERS"]
    assert "`auto` or a whole number" in str(problems[1]) and repr(raw) in str(problems[1])


def test_worker_count_never_exceeds_the_slots_and_is_1_when_sequential() -> None:
    cfg, _ = load(AWS_LAMBDA_MAX_CONCURRENCY="3", LMI_GEVENT_WORKERS="8")
    assert cfg.worker_count() == 3
    auto, _ = load(AWS_LAMBDA_MAX_CONCURRENCY="64")
    assert auto.worker_count(lambda: 16) == 16
    assert auto.worker_count(lambda: 100) == 64
    sequential, _ = load(LMI_GEVENT_WORKERS="4")
    assert sequential.worker_count(lambda: 16) == 1


@pytest.mark.parametrize("slots, workers", [(8, 2), (7, 3), (1600, 16), (5, 5), (17, 16)])
def test_slot_shares_sum_to_n_and_differ_by_at_most_one(slots: int, workers: int) -> None:
    shares = slot_shares(slots, workers)
    assert len(shares) == workers and sum(shares) == slots
    assert max(shares) - min(shares) <= 1 and min(shares) >= 1


def fake_cgroups(tmp_path: Path, proc: str, files: dict[str, str]) -> tuple[str, str]:
    root = tmp_path / "cgroup"
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    root.mkdir(exist_ok=True)
    proc_file = tmp_path / "proc-self-cgroup"
    proc_file.write_text(proc)
    return str(root), str(proc_file)


def test_cgroup_v2_quota_rounds_up_and_caps_affinity(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root, proc = fake_cgroups(tmp_path, "0::/lambda/env\n", {
        "lambda/env/cpu.max": "150000 100000\n", "lambda/cpu.max": "max 100000\n"})
    assert cpus.cgroup_cpu_quota(root, proc) == 1.5
    monkeypatch.setattr(cpus.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    assert cpus.usable_cpus(root, proc) == 2


def test_cgroup_v2_tightest_ancestor_wins_and_max_means_no_quota(tmp_path: Path) -> None:
    root, proc = fake_cgroups(tmp_path, "0::/a/b\n", {
        "a/b/cpu.max": "max 100000\n", "a/cpu.max": "300000 100000\n", "cpu.max": "max 100000\n"})
    assert cpus.cgroup_cpu_quota(root, proc) == 3.0
    unlimited, proc2 = fake_cgroups(tmp_path / "u", "0::/\n", {"cpu.max": "max 100000\n"})
    assert cpus.cgroup_cpu_quota(unlimited, proc2) is None


def test_cgroup_v1_cfs_quota_and_container_root_fallback(tmp_path: Path) -> None:
    # Inside a container the path in /proc/self/cgroup does not exist under the mount.
    root, proc = fake_cgroups(tmp_path, "4:memory:/x\n3:cpu,cpuacct:/docker/abc\n", {
        "cpu,cpuacct/cpu.cfs_quota_us": "400000\n", "cpu,cpuacct/cpu.cfs_period_us": "100000\n"})
    assert cpus.cgroup_cpu_quota(root, proc) == 4.0
    unlimited, proc2 = fake_cgroups(tmp_path / "u", "3:cpu,cpuacct:/\n", {
        "cpu,cpuacct/cpu.cfs_quota_us": "-1\n", "cpu,cpuacct/cpu.cfs_period_us": "100000\n"})
    assert cpus.cgroup_cpu_quota(unlimited, proc2) is None


def test_usable_cpus_without_cgroup_files_is_the_affinity(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cpus.os, "sched_getaffinity", lambda pid: {5, 7, 9}, raising=False)
    assert cpus.usable_cpus(str(tmp_path / "none"), str(tmp_path / "missing")) == 3
