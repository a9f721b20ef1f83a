"""aeframe: benchmark autoencoder training techniques under one budget, one evaluation, one table.

Everything a plugin needs is exported here, and nothing else in ``aeframe`` is part of the plugin API
(``aeframe.testing`` aside, for a plugin's own tests). docs/plugins.md documents every name.

Importing ``aeframe`` is cheap: each name is loaded on first use, so a command that lists plugins or
renders a report never imports torch for names it does not touch.
"""
from __future__ import annotations

import importlib
from typing import Any

import pluggy

#: Marks a plugin's hook implementations (``@hookimpl def register_techniques(register): ...``).
hookimpl = pluggy.HookimplMarker("aeframe")

# Public name -> the module that defines it.
_EXPORTS = {
    # The technique contract.
    "Technique": "aeframe.contract.technique",
    "CellContext": "aeframe.contract.technique",
    "Preparation": "aeframe.contract.technique",
    "PeakRate": "aeframe.contract.technique",
    "TechniqueUnavailable": "aeframe.contract.technique",
    "ModelOutput": "aeframe.contract.output",
    "Schedule": "aeframe.contract.schedule",
    "Phase": "aeframe.contract.schedule",
    "Param": "aeframe.contract.params",
    # The dataset contract.
    "DatasetPlugin": "aeframe.contract.dataset",
    "DatasetUnavailable": "aeframe.contract.dataset",
    "ImageData": "aeframe.contract.dataset",
    "Split": "aeframe.contract.dataset",
    "ProgressFn": "aeframe.contract.dataset",
    # The metric contract.
    "Metric": "aeframe.contract.metric",
    "MeanMetric": "aeframe.contract.metric",
    "RunningMean": "aeframe.contract.metric",
    # The study's training protocol, as reusable pieces.
    "study_schedule": "aeframe.contract.protocol",
    "adamw": "aeframe.contract.protocol",
    "one_cycle_lr": "aeframe.contract.protocol",
    "one_cycle_beta1": "aeframe.contract.protocol",
    "dihedral_lighting": "aeframe.contract.protocol",
    "ImageNetNormalize": "aeframe.contract.protocol",
    "STUDY_BATCH_SIZE": "aeframe.contract.protocol",
    "STUDY_EPOCHS": "aeframe.contract.protocol",
    "STUDY_FIRST_LR": "aeframe.contract.protocol",
    # The executor contract, and training a cell in another process or on another machine.
    "Executor": "aeframe.contract.executor",
    "ExecutorSession": "aeframe.contract.executor",
    "ExecutorSettings": "aeframe.contract.executor",
    "Work": "aeframe.contract.executor",
    "CellOrder": "aeframe.execution.remote",
    "order_of": "aeframe.execution.remote",
    "failed_order": "aeframe.execution.remote",
    "prepare_metrics": "aeframe.execution.remote",
    "run_order": "aeframe.execution.remote",
    "warm_up": "aeframe.execution.remote",
    "shippable": "aeframe.execution.remote",
    "unshipped": "aeframe.execution.remote",
    "UsageProblem": "aeframe.errors",
    "RunProgress": "aeframe.execution.progress",
    "train_cells": "aeframe.execution.local",
    "resolve_device": "aeframe.execution.environment",
    # Images in memory.
    "to_unit": "aeframe.data.splits",
    "resize_uint8": "aeframe.contract.resample",
    "dataset_view": "aeframe.contract.resample",
    "RESAMPLE_PARAM": "aeframe.contract.resample",
    "epoch_order": "aeframe.data.splits",
}

__all__ = sorted([*_EXPORTS, "__version__", "hookimpl"])


def __getattr__(name: str) -> Any:
    if name == "__version__":
        value: Any = _version()
    elif name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
    else:
        raise AttributeError(f"module 'aeframe' has no attribute {name!r}; the plugin API is what aeframe.__all__ lists")
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("aeframe")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "0+unknown"
