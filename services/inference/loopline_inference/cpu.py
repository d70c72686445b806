"""How many CPUs this process may use: the cgroup CPU limit (v2 or v1), the affinity mask, or os.cpu_count."""

from __future__ import annotations

import math
import os
from pathlib import Path


def _cgroup_quota(root: Path = Path("/sys/fs/cgroup")) -> float | None:
    """CPUs allowed by the cgroup quota, or None when unlimited or unknown."""
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]  # cgroup v2: "max 100000" or "200000 100000"
        if quota != "max":
            return int(quota) / int(period)
        return None
    except (OSError, ValueError):
        pass
    try:  # cgroup v1
        quota_us = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period_us = int((root / "cpu" / "cpu.cfs_period_us").read_text())
        if quota_us > 0 and period_us > 0:
            return quota_us / period_us
    except (OSError, ValueError):
        pass
    return None


def cpu_limit(root: Path = Path("/sys/fs/cgroup")) -> int:
    """Whole CPUs this process should use (at least 1): min of the cgroup quota (rounded up) and the
    CPUs in its affinity mask (what `taskset` or a cpuset allows)."""
    try:
        available = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        available = os.cpu_count() or 1
    quota = _cgroup_quota(root)
    if quota is not None:
        available = min(available, max(1, math.ceil(quota)))
    return max(1, available)
