"""What an executor plugin uses: the executor contract and the calls that train cell specs.

An executor subclasses :class:`Executor` (also exported by ``aeframe``), returns an
:class:`ExecutorSession` from ``open``, and in ``run`` trains each :class:`DatasetGroup`'s cell specs:
in this process with ``work.train_here(groups, device)``, or elsewhere by shipping each
:class:`CellSpec` (plain data) and ``group.data.to_arrays()`` to a worker that calls
:func:`prepare_metrics` once per dataset and :func:`train_cell` per cell. docs/plugins.md,
"Executors", has a complete one. Like ``aeframe``, this module loads each name on first use.
"""
from __future__ import annotations

from aeframe import _lazy_exports

_EXPORTS = {
    "Executor": "aeframe.contract.executor",
    "ExecutorSession": "aeframe.contract.executor",
    "ExecutorSettings": "aeframe.contract.executor",
    "Work": "aeframe.contract.executor",
    "DatasetGroup": "aeframe.contract.executor",
    "CellSpec": "aeframe.cells.spec",
    "prepare_metrics": "aeframe.execution.remote",
    "train_cell": "aeframe.execution.remote",
    "warm_up": "aeframe.execution.remote",
    "RunProgress": "aeframe.execution.progress",
    "CellPool": "aeframe.execution.pool",
    "cells_per_device_auto": "aeframe.execution.pool",
    "resolve_device": "aeframe.execution.environment",
    "UsageProblem": "aeframe.errors",
}

__all__ = sorted(_EXPORTS)

__getattr__ = _lazy_exports(globals(), _EXPORTS, {}, "aeframe.executors")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
