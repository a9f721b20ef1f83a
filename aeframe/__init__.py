"""aeframe: benchmark autoencoder training techniques under one budget, one evaluation, one table.

Plugin authors need only what is exported here: the ``hookimpl`` marker and the base classes that
their hooks register. The classes are imported on first use (PEP 562), so a plugin module that
imports only torch-free ones (``Metric``, ``MeanMetric``, ``Param``) does not import torch.
"""
from importlib import import_module
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import pluggy

try:
    __version__ = version("aeframe")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"

hookimpl = pluggy.HookimplMarker("aeframe")

_HOMES = {
    "CellContext": "aeframe.technique",
    "DatasetPlugin": "aeframe.dataset",
    "DatasetUnavailable": "aeframe.dataset",
    "ImageData": "aeframe.dataset",
    "MeanMetric": "aeframe.metric",
    "Metric": "aeframe.metric",
    "Param": "aeframe.params",
    "Phase": "aeframe.schedule",
    "RunningMean": "aeframe.metric",
    "Schedule": "aeframe.schedule",
    "Split": "aeframe.dataset",
    "Technique": "aeframe.technique",
    "TechniqueUnavailable": "aeframe.technique",
}

__all__ = [*sorted(_HOMES), "__version__", "hookimpl"]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'aeframe' has no attribute {name!r}")
    value = getattr(import_module(home), name)
    globals()[name] = value  # looked up once; later accesses skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_HOMES})
