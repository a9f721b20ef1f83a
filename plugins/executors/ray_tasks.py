"""What runs on a Ray worker: the device a task was given, the metrics' one-off preparation, one cell.

Imported by the driver to submit the tasks and by each worker to run them, so it is installed on
every node with aeframe. Workers rebuild each cell spec from their own installed plugins
(``aeframe.executors.train_cell``) and read the dataset from Ray's object store, never from their disk.
"""
from __future__ import annotations

import socket
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

import ray


@dataclass(frozen=True)
class TaskSetting:
    """What every task of a run is told: the device kind, the threads, where the caches are."""

    device_type: str  # "cpu" or "cuda": decided by the driver, part of the cell keys
    cpus: int  # torch threads on CPU cells (and Ray's CPU reservation)
    gpus: float  # Ray's GPU reservation per cell (0: none)
    data_dir: Path
    cache_dir: Path


def task_device(setting: TaskSetting):
    """The torch device of this task, with torch's threads set to the CPUs Ray reserved for it."""
    import torch

    torch.set_num_threads(setting.cpus)
    if setting.device_type == "cuda":
        # Ray sets CUDA_VISIBLE_DEVICES to the GPUs it gave this task: the first visible one is ours.
        return torch.device("cuda", 0)
    return torch.device("cpu")


def placement(setting: TaskSetting) -> dict[str, Any]:
    """Where this task ran, as the cell's stats keep it."""
    gpu_ids = [str(i) for i in ray.get_gpu_ids()]
    device = f"cuda:{gpu_ids[0]}" if setting.device_type == "cuda" and gpu_ids else setting.device_type
    node = f"{socket.gethostname()} ({ray.util.get_node_ip_address()})"
    return {"executor": "ray", "node": node, "device": device, "gpu_ids": gpu_ids,
            "gpus": setting.gpus, "cpus": setting.cpus}


def _moved(obj: Any, device) -> Any:
    """Modules and tensors in what a metric prepared, moved to this task's device (they come back from
    the preparing task on the CPU)."""
    import torch

    if isinstance(obj, (torch.nn.Module, torch.Tensor)):
        return obj.to(device)
    if isinstance(obj, tuple):
        return tuple(_moved(o, device) for o in obj)
    if isinstance(obj, list):
        return [_moved(o, device) for o in obj]
    if isinstance(obj, dict):
        return {k: _moved(v, device) for k, v in obj.items()}
    return obj


@ray.remote
def warm_worker(setting: TaskSetting) -> None:
    """Import torch and load aeframe's plugins in this worker process, as its first cell would.

    One per slot, submitted as the session opens: the workers do it while the driver prepares, and
    the first cells start together (on a 2-core machine the first cell started 1.4 s after the
    other)."""
    from aeframe.executors import warm_up

    task_device(setting)
    warm_up()


@ray.remote
def call_on_cell_device(fn: Callable, setting: TaskSetting) -> Any:
    """``fn(device)`` where a cell would run. An error comes back as a value, so that the driver raises
    it as it is (Ray would wrap it): a setting the device cannot run is then a usage error there too."""
    try:
        return False, fn(task_device(setting))
    except Exception as exc:
        return True, exc


@ray.remote
def prepare_metrics_task(spec, arrays: dict, setting: TaskSetting) -> dict:
    """Every metric prepared once for ``spec``'s dataset (a reference classifier trained or loaded), on the CPU."""
    from aeframe import ImageData
    from aeframe.executors import prepare_metrics

    device = task_device(setting)
    prepared = prepare_metrics(spec, ImageData.from_arrays(arrays), device, setting.data_dir, setting.cache_dir)
    import torch

    cpu = torch.device("cpu")
    return {name: None if made is None else (made[0], _moved(made[1], cpu)) for name, made in prepared.items()}


@ray.remote
def train_cell_task(spec, arrays: dict, prepared: dict, setting: TaskSetting):
    """One cell, trained and evaluated here; its record, with where it ran and how long the task took."""
    from aeframe import ImageData
    from aeframe.executors import train_cell

    started, clock = time.time(), time.perf_counter()
    device = task_device(setting)
    shipped = {name: None if made is None else (made[0], _moved(made[1], device)) for name, made in prepared.items()}
    record = train_cell(spec, ImageData.from_arrays(arrays), device, setting.data_dir, setting.cache_dir, shipped)
    # Wall-clock start and end: whether cells ran side by side, and the task's own time against the driver's.
    where = {**placement(setting), "started": started, "ended": time.time(),
             "task_seconds": round(time.perf_counter() - clock, 3)}
    return replace(record, stats=replace(record.stats, placement=where))
