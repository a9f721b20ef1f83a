"""How much memory a dataset may take: checked before allocating, so that a dataset too large for this
machine is refused with a line naming what it needs, instead of being killed or raising mid-allocation.

No torch here: the shapes dataset checks its parameters with it while a run is being planned.
"""
from __future__ import annotations

import os
from pathlib import Path

_CGROUP = Path("/sys/fs/cgroup")


def _meminfo_available() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # not on this platform
        return None


def _cgroup_room() -> int | None:
    """What a memory-limited container (cgroup v2) still allows this process, if it is limited."""
    try:
        limit = (_CGROUP / "memory.max").read_text().strip()
        if limit == "max":
            return None
        return max(int(limit) - int((_CGROUP / "memory.current").read_text()), 0)
    except (OSError, ValueError):
        return None


def available_memory() -> int | None:
    """Bytes that can be allocated without swapping (the smaller of the system's and the container's), or
    None where this cannot be told."""
    known = [v for v in (_meminfo_available(), _cgroup_room()) if v is not None]
    return min(known) if known else None


def size_text(n: int) -> str:
    """``3.1 GB``: decimal units, as ``free -h`` users and disk vendors read them."""
    value = float(n)
    for unit in ("bytes", "kB", "MB", "GB", "TB", "PB"):
        if value < 1000 or unit == "PB":
            return f"{n} bytes" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1000
    raise AssertionError("unreachable")


def beyond_memory(what: str, needed: int) -> str | None:
    """``None`` when ``needed`` bytes fit in the memory available; else a line saying what ``what`` needs."""
    available = available_memory()
    if available is None or needed <= available:
        return None
    return f"{what}: {size_text(needed)} of memory needed to load, {size_text(available)} available"
