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
    "Technique": "aeframe.technique",
    "CellContext": "aeframe.technique",
    "Preparation": "aeframe.technique",
    "PeakRate": "aeframe.technique",
    "TechniqueUnavailable": "aeframe.technique",
    "ModelOutput": "aeframe.output",
    "Schedule": "aeframe.schedule",
    "Phase": "aeframe.schedule",
    "Param": "aeframe.params",
    # The dataset contract.
    "DatasetPlugin": "aeframe.dataset",
    "DatasetUnavailable": "aeframe.dataset",
    "ImageData": "aeframe.dataset",
    "Split": "aeframe.dataset",
    "ProgressFn": "aeframe.dataset",
    # The metric contract.
    "Metric": "aeframe.metric",
    "MeanMetric": "aeframe.metric",
    "RunningMean": "aeframe.metric",
    # The study's training protocol, as reusable pieces.
    "study_schedule": "aeframe.protocol",
    "adamw": "aeframe.protocol",
    "one_cycle_lr": "aeframe.protocol",
    "one_cycle_beta1": "aeframe.protocol",
    "dihedral_lighting": "aeframe.protocol",
    "ImageNetNormalize": "aeframe.protocol",
    "STUDY_BATCH_SIZE": "aeframe.protocol",
    "STUDY_EPOCHS": "aeframe.protocol",
    "STUDY_FIRST_LR": "aeframe.protocol",
    # The executor contract, and training a cell in another process or on another machine.
    "Executor": "aeframe.executor",
    "ExecutorSession": "aeframe.executor",
    "ExecutorSettings": "aeframe.executor",
    "Work": "aeframe.executor",
    "CellOrder": "aeframe.remote",
    "order_of": "aeframe.remote",
    "failed_order": "aeframe.remote",
    "prepare_metrics": "aeframe.remote",
    "run_order": "aeframe.remote",
    "warm_up": "aeframe.remote",
    "shippable": "aeframe.remote",
    "unshipped": "aeframe.remote",
    "UsageProblem": "aeframe.errors",
    "RunProgress": "aeframe.progress",
    "train_cells": "aeframe.in_process",
    "resolve_device": "aeframe.environment",
    # Images in memory.
    "to_unit": "aeframe.data",
    "resize_uint8": "aeframe.resample",
    "dataset_view": "aeframe.resample",
    "RESAMPLE_PARAM": "aeframe.resample",
    "epoch_order": "aeframe.data",
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
