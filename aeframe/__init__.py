"""aeframe: benchmark autoencoder training techniques under one budget, one evaluation, one table.

Plugin authors need only what is exported here: the ``hookimpl`` marker and the base classes that
their hooks register.
"""
from importlib.metadata import PackageNotFoundError, version

import pluggy

try:
    __version__ = version("aeframe")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"

hookimpl = pluggy.HookimplMarker("aeframe")

from aeframe.dataset import DatasetPlugin, DatasetUnavailable, ImageData, Split  # noqa: E402
from aeframe.metric import Metric  # noqa: E402
from aeframe.params import Param  # noqa: E402
from aeframe.schedule import Phase, Schedule  # noqa: E402
from aeframe.technique import CellContext, Technique, TechniqueUnavailable  # noqa: E402

__all__ = [
    "CellContext",
    "DatasetPlugin",
    "DatasetUnavailable",
    "ImageData",
    "Metric",
    "Param",
    "Phase",
    "Schedule",
    "Split",
    "Technique",
    "TechniqueUnavailable",
    "__version__",
    "hookimpl",
]
