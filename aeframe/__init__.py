"""aeframe: benchmark autoencoder training techniques under one budget, one evaluation, one table.

Plugin authors need only what is exported here: the ``hookimpl`` marker and the base classes that
their hooks register.
"""
from importlib import import_module
from importlib.metadata import PackageNotFoundError, version

import pluggy

try:
    __version__ = version("aeframe")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"

hookimpl = pluggy.HookimplMarker("aeframe")

# The base classes are imported on first use (PEP 562): they bring torch, and `import aeframe`
# (e.g. for the report, which needs no torch) should not.
_EXPORTS = {
    "CellContext": "aeframe.technique",
    "DatasetPlugin": "aeframe.dataset",
    "DatasetUnavailable": "aeframe.dataset",
    "ImageData": "aeframe.dataset",
    "Metric": "aeframe.metric",
    "Param": "aeframe.params",
    "Phase": "aeframe.schedule",
    "Schedule": "aeframe.schedule",
    "Split": "aeframe.dataset",
    "Technique": "aeframe.technique",
    "TechniqueUnavailable": "aeframe.technique",
}

__all__ = sorted([*_EXPORTS, "__version__", "hookimpl"])


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'aeframe' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value  # looked up once
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
