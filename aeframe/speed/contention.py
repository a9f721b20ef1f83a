"""How much of the machine a cell got while its training clock ran.

A time-budgeted comparison is only fair when every cell had the machine to itself: with other
processes on the same cores, a cell trains fewer steps in its seconds and its images/s drop,
though nothing about the technique changed. This module measures that, cheaply (it is read only
when the training clock starts and stops, never per step):

- **CPU share**: of the time this process's threads wanted a core during training, the share they
  got one. On Linux it is read from each thread's scheduler statistics
  (``/proc/self/task/*/schedstat``: time on a CPU, time runnable but waiting for one), so a model
  that does not keep all of torch's threads busy is not mistaken for a busy machine. Elsewhere it
  falls back to process CPU time over (wall time × torch's thread count), which reads low for such
  a model as well as under contention.
- **Other GPU processes** (CUDA only, best effort): how many other processes had a compute context
  on the cell's GPU when training started and when it ended, from NVML (``pynvml``) or else
  ``nvidia-smi``; not measured (None) when neither is available.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

_TASKS = Path("/proc/self/task")
SCHEDSTAT = "run queue"  # how cpu_share was measured, as stored in a cell's stats
PROCESS_TIME = "process time"


def _schedstat() -> dict[str, tuple[int, int]] | None:
    """Thread id -> (ns on a CPU, ns runnable but waiting), or None where the kernel does not say."""
    found = {}
    try:
        for task in os.listdir(_TASKS):
            try:
                on_cpu, waiting = (_TASKS / task / "schedstat").read_text().split()[:2]
            except (OSError, ValueError):
                continue  # the thread ended while we looked
            found[task] = (int(on_cpu), int(waiting))
    except OSError:
        return None
    return found or None


class CpuShareMeter:
    """Accumulates, over the intervals between :meth:`start` and :meth:`stop`, the CPU time this
    process's threads got and the time they waited for a core."""

    def __init__(self, threads: int):
        self.threads = max(threads, 1)
        self.method = SCHEDSTAT if _schedstat() is not None else PROCESS_TIME
        self.on_cpu = 0.0
        self.waiting = 0.0  # scheduler statistics only
        self.wall = 0.0
        self._since: tuple[float, float, dict[str, tuple[int, int]] | None] | None = None

    def start(self) -> None:
        stats = _schedstat() if self.method == SCHEDSTAT else None
        self._since = (time.perf_counter(), time.process_time(), stats)

    def stop(self) -> None:
        if self._since is None:
            return
        wall, cpu, before = self._since
        self._since = None
        self.wall += time.perf_counter() - wall
        if self.method == PROCESS_TIME:
            self.on_cpu += time.process_time() - cpu
            return
        after = _schedstat() or {}
        for task, (on_cpu, waiting) in after.items():
            was_on, was_waiting = (before or {}).get(task, (0, 0))  # a thread started since: all of it counts
            self.on_cpu += (on_cpu - was_on) / 1e9
            self.waiting += (waiting - was_waiting) / 1e9

    def share(self) -> float | None:
        """The share of the CPU the training got, in [0, 1]; None before anything was measured."""
        if self.method == SCHEDSTAT:
            asked = self.on_cpu + self.waiting
            return self.on_cpu / asked if asked > 0 else None
        if self.wall <= 0:
            return None
        return min(self.on_cpu / (self.wall * self.threads), 1.0)


def other_gpu_processes(device: torch.device) -> int | None:
    """How many processes other than this one have a compute context on ``device``; None if unknown."""
    import torch

    index = device.index if device.index is not None else torch.cuda.current_device()
    bus_id = _bus_id(torch.cuda.get_device_properties(index))
    pids = _nvml_pids(bus_id)
    if pids is None:
        pids = _nvidia_smi_pids(bus_id)
    if pids is None:
        return None
    others = [pid for pid in pids if pid != os.getpid()]
    # Inside a container NVML reports the host's process ids, where ours has another number:
    # then one of them is this process.
    return len(others) - 1 if len(others) == len(pids) and pids else len(others)


def _bus_id(properties) -> str | None:
    try:
        return f"{properties.pci_domain_id:08x}:{properties.pci_bus_id:02x}:{properties.pci_device_id:02x}.0".lower()
    except AttributeError:  # an older torch
        return None


def _same_bus(a: str, b: str | None) -> bool:
    # NVML and nvidia-smi write the domain with 8 or 4 hex digits, in either case.
    return b is not None and a.lower().split(":", 1)[-1] == b.split(":", 1)[-1]


def _nvml_pids(bus_id: str | None) -> list[int] | None:
    try:
        import pynvml
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
        try:
            for i in range(pynvml.nvmlDeviceGetCount()):
                handle = pynvml.nvmlDeviceGetHandleByIndex(i)
                found = pynvml.nvmlDeviceGetPciInfo(handle).busId
                found = found.decode() if isinstance(found, bytes) else found
                if _same_bus(found, bus_id):
                    return [p.pid for p in pynvml.nvmlDeviceGetComputeRunningProcesses(handle)]
        finally:
            pynvml.nvmlShutdown()
    except Exception:  # best effort: NVML missing or refusing must not fail a cell
        return None
    return None


def _nvidia_smi_pids(bus_id: str | None) -> list[int] | None:
    exe = shutil.which("nvidia-smi")
    if exe is None or bus_id is None:
        return None
    try:
        out = subprocess.run([exe, "--query-compute-apps=gpu_bus_id,pid", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    pids = []
    for line in out.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 2 and _same_bus(parts[0], bus_id) and parts[1].isdigit():
            pids.append(int(parts[1]))
    return pids
