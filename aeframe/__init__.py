"""aeframe: benchmark autoencoder training techniques under one budget, one evaluation, one table.

Everything a technique, dataset or metric plugin needs is exported here, and nothing else in
``aeframe`` is part of the plugin API but :mod:`aeframe.executors` (what an executor plugin uses to
train cells) and :mod:`aeframe.testing` (for a plugin's own tests). docs/plugins.md documents every
name; docs/architecture.md where each is defined.

Importing ``aeframe`` is cheap: each name is loaded on first use, so a command that lists plugins or
renders a report never imports torch for names it does not touch.
"""
from __future__ import annotations

import importlib
import warnings
from typing import Any, Callable

import pluggy

#: Marks a plugin's hook implementations (``@hookimpl def register_techniques(register): ...``).
hookimpl = pluggy.HookimplMarker("aeframe")

# Public name -> the module that defines it.
_EXPORTS = {
    # The technique contract.
    "Technique": "aeframe.contract.technique",
    "CellContext": "aeframe.contract.technique",
    "PeakRate": "aeframe.contract.technique",
    "RelativeRate": "aeframe.contract.technique",
    "TrainingState": "aeframe.contract.events",
    "LrCurve": "aeframe.contract.schedule",
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
    # The executor contract's base class; what an executor uses is in aeframe.executors.
    "Executor": "aeframe.contract.executor",
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
    # Images in memory, and training a model of a plugin's own (a reference classifier, a pretraining).
    "to_unit": "aeframe.data.splits",
    "epoch_order": "aeframe.data.splits",
    "resize_uint8": "aeframe.contract.resample",
    "dataset_view": "aeframe.contract.resample",
    "RESAMPLE_PARAM": "aeframe.contract.resample",
    "Stepper": "aeframe.speed.step",
    # Files a plugin keeps in the cache: whole or not at all, a full disk named.
    "write_atomically": "aeframe.data.directories",
}

# Names plugins imported from here before 0.2: still importable (with a DeprecationWarning), not listed.
# docs/plugins.md, "Plugins written for aeframe 0.1", says what each became.
_FORMER = {
    "Preparation": "aeframe.contract.technique",
    "ExecutorSession": "aeframe.contract.executor",
    "ExecutorSettings": "aeframe.contract.executor",
    "Work": "aeframe.contract.executor",
    "UsageProblem": "aeframe.errors",
    "RunProgress": "aeframe.execution.progress",
    "resolve_device": "aeframe.execution.environment",
    "prepare_metrics": "aeframe.execution.remote",
    "warm_up": "aeframe.execution.remote",
    "CellOrder": "aeframe.execution.compat",
    "order_of": "aeframe.execution.compat",
    "failed_order": "aeframe.execution.compat",
    "run_order": "aeframe.execution.compat",
    "shippable": "aeframe.execution.compat",
    "unshipped": "aeframe.execution.compat",
    "train_cells": "aeframe.execution.compat",
}

__all__ = sorted([*_EXPORTS, "__version__", "hookimpl"])


def _lazy_exports(namespace: dict[str, Any], exports: dict[str, str], former: dict[str, str],
                 name: str) -> Callable[[str], Any]:
    """A module ``__getattr__`` that loads each of ``exports`` (name -> defining module) on first use, and
    each of ``former`` with a DeprecationWarning naming where it went (docs/plugins.md)."""

    def get(attr: str) -> Any:
        if attr in exports:
            value = getattr(importlib.import_module(exports[attr]), attr)
            namespace[attr] = value  # later lookups skip this function
            return value
        if attr in former:
            warnings.warn(f"{name}.{attr} is no longer part of the plugin API; docs/plugins.md, 'Plugins written "
                          "for aeframe 0.1', says what replaces it", DeprecationWarning, stacklevel=2)
            return getattr(importlib.import_module(former[attr]), attr)
        raise AttributeError(f"module {name!r} has no attribute {attr!r}; the plugin API is what {name}.__all__ lists")

    return get


_get = _lazy_exports(globals(), _EXPORTS, _FORMER, "aeframe")


def __getattr__(name: str) -> Any:
    if name == "__version__":
        globals()[name] = value = _version()
        return value
    return _get(name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("aeframe")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "0+unknown"
