"""Training a cell spec in another process or on another machine: what a worker does with what travels.

What travels is the :class:`aeframe.cells.spec.CellSpec` (plain data), the dataset as numpy arrays
(``ImageData.to_arrays()``; zero-copy where the transport allows) and what the metrics prepared once
for the dataset. The worker rebuilds the cell from its own installed plugins, exactly as a cell in
the driver's process is rebuilt (:func:`aeframe.training.cell.run_cell`), and refuses, naming the
plugin and the node, when a plugin, aeframe or torch is another version than the driver's: its
cell would carry a key that does not describe what it trained.

Used by the ``ray`` executor; a third-party executor (Dask, a batch scheduler) uses the same calls,
exported by :mod:`aeframe.executors`.
"""
from __future__ import annotations

import traceback
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from aeframe.cells.record import CellRecord, DeviceRef, now
from aeframe.cells.spec import CellSpec
from aeframe.console import say
from aeframe.contract.dataset import ImageData
from aeframe.contract.metric import Metric
from aeframe.data.loading import Workspace, make_workspace
from aeframe.data.splits import on_device
from aeframe.errors import describe
from aeframe.execution.environment import device_info, versions
from aeframe.planning.rebuild import node_name
from aeframe.registry.plugins import Registry, get_registry
from aeframe.training.cell import cell_context, run_cell
from aeframe.training.metric_set import MetricSet

Prepared = dict[str, "tuple[Metric, Any] | None"]


def warm_up() -> None:
    """Do in this process what its first cell would otherwise pay for: load the installed plugins and
    read the versions every cell is checked against (importing torch and the plugins' modules).

    For an executor's worker processes, while the driver prepares: then the first cells of a run start
    together instead of one after another."""
    get_registry()
    versions()


def _workspace(spec: CellSpec, data: ImageData, data_dir: Path, cache_dir: Path, registry: Registry) -> Workspace:
    """This machine's directories, with the shipped data standing for the cell's dataset (never read from disk)."""
    return make_workspace(registry, data_dir, cache_dir, say, {spec.dataset: data})


def _metrics(spec: CellSpec, registry: Registry) -> MetricSet:
    return MetricSet(registry.metrics[name] for name in spec.metrics if name in registry.metrics)


def prepare_metrics(spec: CellSpec, data: ImageData, device: torch.device, data_dir: Path, cache_dir: Path,
                    registry: Registry | None = None) -> Prepared:
    """``spec``'s metrics prepared once for its dataset (a reference classifier trained or loaded), to be
    handed to :func:`train_cell` for each of the dataset's cells, in this process or shipped elsewhere.

    A metric whose ``prepare`` raised is None: each cell then prepares it again and fails, naming it.

    Args:
        spec: Any cell of the dataset: its dataset and the names of its metrics are used.
        data: The dataset's loaded images (the spec's dataset, never read from disk here).
        device: The device the cells will train on; metrics prepare on it.
        data_dir: Where this machine keeps datasets (for a metric that loads another).
        cache_dir: Where this machine keeps what plugins derive (a reference classifier, say).
        registry: The plugins installed here (None, the default) or another registry.

    Returns:
        Metric name -> (the prepared copy of the metric, what its ``prepare`` returned); None for a metric
            whose ``prepare`` raised.
    """
    registry = registry if registry is not None else get_registry()
    workspace = _workspace(spec, data, data_dir, cache_dir, registry)
    context = cell_context(spec, data.shape, len(data.classes), device, workspace)
    return _metrics(spec, registry).prepare(context)


def _version_mismatch(spec: CellSpec) -> str | None:
    ours, theirs = versions(), spec.config.versions
    for package in ("aeframe", "torch"):
        if ours.get(package) != theirs.get(package):
            return (f"{package} is version {ours.get(package)} on node {node_name()} but {theirs.get(package)} on the "
                    "driver; install the same version on every node (docs/distributed.md)")
    return None


def train_cell(spec: CellSpec, data: ImageData, device: torch.device, data_dir: Path, cache_dir: Path,
               prepared: Prepared | None = None, registry: Registry | None = None) -> CellRecord:
    """Rebuild ``spec``'s cell from the plugins installed here (or ``registry``), train and evaluate it on
    ``device``, and return its record; never raises but for Ctrl-C.

    The record names the device it trained on.

    Args:
        spec: The cell to train, keyed by the driver.
        data: The spec's dataset (``ImageData.from_arrays``).
        device: The device to train and evaluate on.
        data_dir: Where this machine keeps datasets.
        cache_dir: Where this machine keeps caches (what plugins derive).
        prepared: What :func:`prepare_metrics` made for the dataset; None: the metrics prepare here, once
            per call.
        registry: The plugins installed here (None, the default) or another registry.

    Returns:
        The cell's record: done, diverged, skipped or failed, saying why. A plugin, aeframe or torch of
            another version than the driver's fails the cell, naming the package and the node.
    """
    started = now()
    registry = registry if registry is not None else get_registry()
    try:
        mismatch = _version_mismatch(spec)
    except Exception as exc:  # reading the versions failed: nothing proves they agree
        mismatch = f"cannot check the versions on node {node_name()}: {describe(exc)}\n{traceback.format_exc()}"
    if mismatch:
        return spec.failed(mismatch, started)
    here = device_info(device)
    spec = _on(spec, DeviceRef.from_json(here))
    workspace = _workspace(spec, data, data_dir, cache_dir, registry)
    metrics = _metrics(spec, registry)
    on_this = on_device(data, device)
    if prepared:
        metrics.adopt(cell_context(spec, data.shape, len(data.classes), device, workspace), prepared)
    return run_cell(spec, on_this, metrics, device, workspace, registry)


def _on(spec: CellSpec, device: DeviceRef) -> CellSpec:
    return replace(spec, config=replace(spec.config, device=device))
