"""Training a cell in another process or on another machine: what travels, and what the worker rebuilds.

Plugin objects do not travel: a technique is code, and the worker must run its own installed copy
of the same version. What travels is a :class:`CellOrder` (the cell's key and configuration, plain
data), the dataset as numpy arrays (:func:`shippable`; zero-copy where the transport allows) and
what the metrics prepared once for the dataset. The worker rebuilds the cell from its own plugin
registry and refuses, naming the plugin and the node, when a plugin is missing or is another
version than the driver's: its cells would carry keys that do not describe what they trained.

Used by the ``ray`` executor; a third-party executor (Dask, a batch scheduler) uses the same calls.
"""
from __future__ import annotations

import socket
import traceback
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aeframe.cells.budget import Budget
from aeframe.planning.composition import Composition, Member
from aeframe.errors import AeframeError, describe
from aeframe.contract.params import resolve_params
from aeframe.planning.plan import Cell, DatasetChoice
from aeframe.cells.record import FAILED, CellRecord, DeviceRef
from aeframe.contract.technique import CellContext

if TYPE_CHECKING:
    import numpy as np
    import torch

    from aeframe.contract.dataset import ImageData
    from aeframe.data.loading import Workspace
    from aeframe.contract.metric import Metric
    from aeframe.registry.plugins import Registry


class PluginMismatch(AeframeError):
    """The worker's plugins cannot rebuild the cell the driver planned."""


@dataclass(frozen=True)
class CellOrder:
    """One cell as plain data: its key and configuration, and the metrics the driver evaluates with."""

    key: str
    config: Any  # aeframe.cells.record.CellConfig
    metrics: tuple[str, ...]

    @property
    def title(self) -> str:
        return f"{self.config.label} on {self.config.dataset.name} (seed {self.config.seed})"


def order_of(cell: Cell, metrics: list[Metric]) -> CellOrder:
    """The order that lets a worker rebuild ``cell`` (final key: after :func:`aeframe.planning.plan.with_fingerprint`)."""
    return CellOrder(cell.key, cell.config, tuple(m.name for m in metrics))


def node_name() -> str:
    """This machine as failure messages name it: host name and address."""
    host = socket.gethostname()
    try:
        address = socket.gethostbyname(host)
    except OSError:
        return host
    return host if address.startswith("127.") else f"{host} ({address})"


def shippable(data: ImageData) -> dict[str, Any]:
    """``data`` as numpy arrays and a list, which every transport (pickle 5, Ray's object store) moves
    without copying the pixels; :func:`unshipped` turns it back."""
    return {
        "train": (data.train.images.numpy(), data.train.labels.numpy()),
        "test": (data.test.images.numpy(), data.test.labels.numpy()),
        "classes": list(data.classes),
        "resample": data.resample,
    }


def unshipped(arrays: dict[str, Any]) -> ImageData:
    """The :class:`ImageData` of :func:`shippable`'s arrays, sharing their memory."""
    import torch

    from aeframe.contract.dataset import ImageData, Split

    def tensor(array: np.ndarray) -> torch.Tensor:
        # Arrays from a shared object store are read-only; cells only read the data, so no copy.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            return torch.from_numpy(array)

    def split(pair: tuple[np.ndarray, np.ndarray]) -> Split:
        return Split(tensor(pair[0]), tensor(pair[1]))

    return ImageData(split(arrays["train"]), split(arrays["test"]), arrays["classes"], arrays["resample"])


def _why_missing(registry: Registry, kind: str, name: str, owner: str | None) -> str:
    """Why the worker's registry lacks ``name``: the load error of the plugin that provides it on the driver
    when it failed here, else that none provides it (and which plugins failed to load here, if any)."""
    owner_name = owner.split("'")[1] if owner and owner.count("'") >= 2 else None
    ours = [w for w in registry.warnings if owner_name and w.startswith(f"plugin {owner_name!r}")]
    if ours:
        return ours[0]
    failed = [w for w in registry.warnings if " failed to load: " in w or " is broken: " in w]
    also = f" (plugins that failed to load here: {'; '.join(failed)})" if failed else ""
    return f"no installed plugin registers the {kind} {name!r}{also}"


def cell_of(order: CellOrder, registry: Registry) -> Cell:
    """The cell ``order`` describes, rebuilt from ``registry``; :class:`PluginMismatch` naming the plugin
    when it cannot be rebuilt exactly."""
    config = order.config
    where = f"on node {node_name()}"
    members = []
    for ref in config.techniques:
        owner = config.plugins.get(ref.name)
        technique = registry.techniques.get(ref.name)
        if technique is None:
            raise PluginMismatch(
                f"technique {ref.name!r} ({owner or 'an unknown plugin'} on the driver) is not available {where}: "
                f"{_why_missing(registry, 'technique', ref.name, owner)}; install the same plugins on every node "
                "(docs/distributed.md)")
        info = registry.plugin_of("technique", ref.name)
        here = info.version if info else None
        if here != ref.version:
            raise PluginMismatch(
                f"technique {ref.name!r} is version {here} {where} but {ref.version} on the driver; "
                "install the same version on every node (docs/distributed.md)")
        members.append(Member(technique, resolve_params(technique.accepted_params(), ref.params, f"technique {ref.name}")))
    dataset = registry.datasets.get(config.dataset.name)
    if dataset is None:
        raise PluginMismatch(f"dataset {config.dataset.name!r} is not available {where}: "
                             f"{_why_missing(registry, 'dataset', config.dataset.name, None)}; install the same "
                             "plugins on every node (docs/distributed.md)")
    missing = [name for name in order.metrics if name not in registry.metrics]
    if missing:
        raise PluginMismatch(f"metric {missing[0]!r} is not available {where}: "
                             f"{_why_missing(registry, 'metric', missing[0], None)}; install the same plugins on "
                             "every node (docs/distributed.md)")
    from aeframe.execution.environment import versions

    ours = versions()
    for package in ("aeframe", "torch"):
        if ours.get(package) != config.versions.get(package):
            raise PluginMismatch(f"{package} is version {ours.get(package)} {where} but {config.versions.get(package)} "
                                 "on the driver; install the same version on every node (docs/distributed.md)")
    choice = DatasetChoice(dataset, resolve_params(dataset.params, config.dataset.params, f"dataset {dataset.name}"))
    composition = Composition(members, lookup=registry.techniques.get, lr=config.lr)
    budget = Budget(epochs=config.budget.epochs, seconds=config.budget.seconds)
    return Cell(composition, choice, config.seed, budget, config, order.key)


def failed_order(order: CellOrder, reason: str, started_at: str | None = None) -> CellRecord:
    """The record of a cell that never got to train, saying why."""
    from aeframe.training.cell import now

    return CellRecord(key=order.key, config=replace(order.config, plugins={}), status=FAILED, error=reason,
                      started_at=started_at or now(), finished_at=now())


def _workspace(cell: Cell, data: ImageData, data_dir: Path, cache_dir: Path, registry: Registry) -> Workspace:
    """This machine's directories, with the shipped data standing for the cell's dataset (never read from disk)."""
    from aeframe.data.loading import make_workspace

    return make_workspace(registry, data_dir, cache_dir, _say, {cell.dataset.label: data})


def _metric_context(cell: Cell, data: ImageData, device: torch.device, workspace: Workspace) -> CellContext:
    """The context the first cell of a dataset prepares the metrics with, as :func:`run_cell` builds it."""
    from aeframe.training.cell import cell_context

    return cell_context(cell, tuple(data.train.images.shape[1:]), len(data.classes), device, workspace)


def _say(message: str) -> None:
    from aeframe.console import say

    say(message)


def _installed(registry: Registry | None) -> Registry:
    from aeframe.registry.plugins import get_registry

    return registry if registry is not None else get_registry()


def warm_up() -> None:
    """Do in this process what its first cell would otherwise pay for: load the installed plugins and
    read the versions every cell is checked against (importing torch and the plugins' modules).

    For an executor's worker processes, while the driver prepares: then the first cells of a run start
    together instead of one after another."""
    from aeframe.execution.environment import versions

    _installed(None)
    versions()


def prepare_metrics(order: CellOrder, data: ImageData, device: torch.device, data_dir: Path, cache_dir: Path,
                    registry: Registry | None = None) -> dict[str, tuple[Metric, Any] | None]:
    """The order's metrics prepared once for its dataset (a reference classifier trained or loaded), to be
    handed to :func:`run_order` for each of the dataset's cells, in this process or shipped elsewhere.

    ``registry``: the plugins installed here (the default) or another registry. An empty result
    when the cell cannot be rebuilt here (each cell then fails, saying why).
    """
    from aeframe.training.metric_set import MetricSet

    registry = _installed(registry)
    try:
        cell = cell_of(order, registry)
    except Exception:  # each cell then fails with the reason, naming the plugin and the node
        return {}
    context = _metric_context(cell, data, device, _workspace(cell, data, data_dir, cache_dir, registry))
    return MetricSet(registry.metrics[name] for name in order.metrics).prepare_all(context)


def run_order(order: CellOrder, data: ImageData, prepared: dict[str, tuple[Metric, Any] | None] | None,
              device: torch.device, data_dir: Path, cache_dir: Path, registry: Registry | None = None) -> CellRecord:
    """Rebuild ``order``'s cell from the plugins installed here (or ``registry``), train and evaluate it on
    ``device``, and return its record; never raises but for Ctrl-C.

    ``data`` is the order's dataset (:func:`unshipped`); ``prepared`` is what :func:`prepare_metrics`
    made for it (None: the metrics prepare here, once per call). ``data_dir`` and ``cache_dir`` are
    where this machine keeps datasets and caches. The record names the device it trained on.
    """
    registry = _installed(registry)
    from aeframe.training.cell import now, run_cell
    from aeframe.data.splits import on_device
    from aeframe.execution.environment import device_info
    from aeframe.training.metric_set import MetricSet

    started = now()
    try:
        cell = cell_of(order, registry)
    except PluginMismatch as exc:
        return failed_order(order, str(exc), started)
    except Exception as exc:  # e.g. a parameter a newer plugin version no longer accepts
        return failed_order(order, f"cannot rebuild the cell on node {node_name()}: {describe(exc)}\n"
                                   f"{traceback.format_exc()}", started)
    here = device_info(device)
    cell = replace(cell, config=replace(cell.config, device=DeviceRef(here["type"], here["name"])))
    workspace = _workspace(cell, data, data_dir, cache_dir, registry)
    metrics = MetricSet(registry.metrics[name] for name in order.metrics)
    if prepared:
        metrics.adopt(_metric_context(cell, data, device, workspace), prepared)
    return run_cell(cell, on_device(data, device), metrics, device, workspace)
