"""Cells packed on one device: worker processes that import torch and the plugins once, then train the
cells they are handed one after another, while their neighbours train theirs on the same device.

What travels is what travels to a Ray worker (:mod:`aeframe.execution.remote`): the cell spec, the
dataset as numpy arrays (sent to each worker once per dataset, not per cell) and what the metrics
prepared once for the dataset. Each worker trains through :func:`~aeframe.execution.remote.train_cell`,
so a packed cell is rebuilt and trained exactly as one alone; under an epoch budget its numbers are
the same (its times are not: its neighbours share the device).

How many to pack, for ``--cells-per-device auto``: :func:`cells_per_device_auto`, from what the cells
that trained alone measured.
"""
from __future__ import annotations

import math
import multiprocessing as mp
import os
import queue
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch

from aeframe.cells.record import DONE, CellRecord, now
from aeframe.cells.spec import CellSpec
from aeframe.contract.dataset import ImageData
from aeframe.contract.executor import DatasetGroup
from aeframe.execution.remote import prepare_metrics, train_cell, warm_up

AUTO = "auto"
# --cells-per-device auto: pack until the busiest row's kernels would fill this share of the GPU's time,
# at most MAX_AUTO cells, each with its process's CUDA context and workspaces (CONTEXT_BYTES) beside
# its peak memory, within MEMORY_SHARE of the GPU's memory.
TARGET_BUSY = 0.9
MAX_AUTO = 8
CONTEXT_BYTES = 768 * 2**20
MEMORY_SHARE = 0.8
_STOP = None
_POLL_SECONDS = 0.5  # how often the driver checks that the workers are alive


def _serve(tasks: Any, results: Any, device: str, threads: int, data_dir: Path, cache_dir: Path) -> None:
    """A worker's life: import once, then take ("data", key, arrays) and ("cell", index, spec, key,
    prepared) messages until told to stop."""
    torch.set_num_threads(threads)
    warm_up()
    datasets: dict[str, ImageData] = {}
    while (message := tasks.get()) is not _STOP:
        if message[0] == "data":
            _, key, arrays = message
            datasets = {key: ImageData.from_arrays(arrays)}  # one dataset at a time: groups come in order
            continue
        _, index, spec, key, prepared = message
        results.put((index, train_cell(spec, datasets[key], torch.device(device), data_dir, cache_dir, prepared)))


class CellPool:
    """``workers`` processes training cells on ``device``, each with ``threads`` torch threads.

    A worker that dies (killed, out of memory) fails the cell it held, saying so, and is replaced; the
    other cells go on.
    """

    def __init__(self, workers: int, device: torch.device, threads: int, data_dir: Path, cache_dir: Path):
        self.context = mp.get_context("spawn")  # a fresh interpreter: no CUDA state or locks inherited
        self.device, self.threads, self.data_dir, self.cache_dir = device, threads, data_dir, cache_dir
        self.results = self.context.Queue()
        self.inboxes: list[Any] = []
        self.processes: list[Any] = []
        for _ in range(workers):
            self._start()

    def _start(self, slot: int | None = None) -> int:
        inbox = self.context.Queue()
        process = self.context.Process(target=_serve, args=(inbox, self.results, str(self.device), self.threads,
                                                            self.data_dir, self.cache_dir), daemon=True)
        process.start()
        if slot is None:
            self.inboxes.append(inbox)
            self.processes.append(process)
            return len(self.processes) - 1
        self.inboxes[slot], self.processes[slot] = inbox, process
        return slot

    def train(self, groups: Sequence[DatasetGroup]) -> Iterator[CellRecord]:
        """Every cell of ``groups``, each dataset's cells spread over the workers; records as cells end.

        Args:
            groups: Each dataset's pending cells with their data. A dataset's metrics are prepared once, in
                this process, and its data is sent to every worker once.

        Yields:
            Each cell's record as the cell ends, in any order; a failed record for a cell whose worker died.
        """
        for number, group in enumerate(groups):
            if not group.cells:
                continue
            key = f"{number}:{group.dataset}"
            prepared = prepare_metrics(group.cells[0], group.data, self.device, self.data_dir, self.cache_dir)
            data = ("data", key, group.data.to_arrays())
            for inbox in self.inboxes:
                inbox.put(data)
            idle = list(range(len(self.inboxes)))
            busy: dict[int, tuple[int, CellSpec, str]] = {}  # cell index -> (worker, spec, started)
            pending = list(enumerate(group.cells))
            while pending or busy:
                while pending and idle:
                    index, spec = pending.pop(0)
                    worker = idle.pop(0)
                    busy[index] = (worker, spec, now())
                    self.inboxes[worker].put(("cell", index, spec, key, prepared))
                try:
                    index, record = self.results.get(timeout=_POLL_SECONDS)
                except queue.Empty:
                    for index, (worker, spec, started) in list(busy.items()):
                        code = self.processes[worker].exitcode
                        if code is None:
                            continue
                        del busy[index]
                        self.inboxes[self._start(worker)].put(data)
                        idle.append(worker)
                        yield spec.failed(f"the worker process training it died (exit code {code}); a cell that "
                                          "ran out of memory needs fewer --cells-per-device", started)
                    continue
                idle.append(busy.pop(index)[0])
                yield record

    def close(self) -> None:
        """Stop the workers: those still training (Ctrl-C) are killed."""
        for inbox in self.inboxes:
            inbox.put(_STOP)
        for process in self.processes:
            process.join(timeout=5)
            if process.is_alive():
                process.kill()


def cells_per_device_auto(alone: Sequence[CellRecord], device: torch.device, total_memory: int | None = None,
                          cores: int | None = None) -> tuple[int, str]:
    """How many cells ``--cells-per-device auto`` trains at once on ``device``, and why, from the records
    of the cells that trained alone on it (their ``device_busy_share`` and ``gpu_peak_memory``).

    Packed cells share the GPU's time: as many as fit before the busiest row's kernels would fill
    :data:`TARGET_BUSY` of it, no more than the GPU's memory holds, one CPU core each to launch from,
    and at most :data:`MAX_AUTO`. On a CPU: one (a cell's threads use every core already).

    Args:
        alone: The records of cells that trained alone on the device; only those done count.
        device: The device the cells will train on.
        total_memory: The GPU's memory in bytes; None: asked of ``device``.
        cores: The CPU cores this process may use (one stays with the driver); None: counted here.

    Returns:
        How many cells to train at once (at least 1), and one line saying what limited it.
    """
    if device.type != "cuda":
        return 1, "on a CPU one cell's threads already use every core"
    done = [r for r in alone if r.status == DONE]
    busy = [r.stats.device_busy_share for r in done if r.stats.device_busy_share]
    if not busy:
        return 1, "the cells that trained alone measured no GPU busy share to pack by"
    busiest = max(busy)
    by_time = max(1, math.floor(TARGET_BUSY / busiest))
    peaks = [r.stats.gpu_peak_memory for r in done if r.stats.gpu_peak_memory]
    if total_memory is None:
        total_memory = torch.cuda.get_device_properties(device).total_memory
    by_memory = (max(1, math.floor(MEMORY_SHARE * total_memory / (max(peaks) + CONTEXT_BYTES))) if peaks
                 else MAX_AUTO)
    if cores is None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    by_cores = max(1, cores - 1)  # one core stays with the driver process
    cells = min(by_time, by_memory, by_cores, MAX_AUTO)
    return cells, (f"the busiest row kept the GPU busy {busiest:.0%} of its step time, room for {by_time}; "
                   f"memory for {by_memory}; {cores} CPU cores for {by_cores}; at most {MAX_AUTO}")
