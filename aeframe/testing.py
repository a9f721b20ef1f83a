"""aeframe's contract checks and tiny fixtures for a plugin's own tests.

In a plugin's ``conftest.py`` (or a test module)::

    pytest_plugins = ["aeframe.testing"]

gives the fixtures ``aeframe_registry`` (the built-ins and every installed plugin), ``tiny_shapes``
(a small generated dataset in memory) and ``quick_budget`` (one epoch). The ``assert_valid_*``
functions run the checks of ``aeframe validate`` and raise :class:`AssertionError` listing every
failed one; they return all checks (skips included) for closer looks.
"""
from __future__ import annotations

import os
import tempfile
from functools import lru_cache
from importlib.metadata import entry_points
from pathlib import Path

from aeframe.cells.budget import Budget
from aeframe.contract.dataset import ImageData
from aeframe.data.loading import CACHE_ENV
from aeframe.planning.plan import resolve_dataset
from aeframe.registry.plugins import BUILTIN_DIST, GROUP, Registry, build_registry
from aeframe.validate.checks import FAIL, TINY, Check, Setting, checks_for

__all__ = [
    "QUICK_BUDGET", "TINY", "assert_valid_dataset", "assert_valid_metric", "assert_valid_technique",
    "plugin_registry", "quick_budget", "tiny_shapes",
]

QUICK_BUDGET = Budget(epochs=1)


def quick_budget() -> Budget:
    """One epoch: enough for a real cell to train, evaluate and be stored, in seconds on tiny data."""
    return QUICK_BUDGET


def plugin_registry(*distributions: str) -> Registry:
    """The built-ins plus the plugins of the named distributions (every installed one when none is
    named), whatever ``AEFRAME_DISABLE_PLUGIN_AUTOLOAD`` says.

    A named distribution that has no ``aeframe`` entry point, or whose plugin failed to load, is an
    :class:`AssertionError` with the loader's message: the first thing a plugin's tests should see.
    """
    eps = [ep for ep in entry_points(group=GROUP)
           if not distributions or _dist_name(ep) in {BUILTIN_DIST, *distributions}]
    found = {_dist_name(ep) for ep in eps}
    absent = [d for d in distributions if d not in found]
    if absent:
        raise AssertionError(f"no [{GROUP}] entry point from {', '.join(absent)}; is it installed (pip install -e .)?")
    registry = build_registry(eps, autoload=True)
    broken = [p for p in registry.plugins if p.error and (not distributions or p.dist in distributions)]
    if broken:
        raise AssertionError("; ".join(f"plugin {p.name!r} ({p.dist}): {p.error}" for p in broken))
    return registry


def _dist_name(ep) -> str | None:
    dist = getattr(ep, "dist", None)
    return dist.metadata["Name"] if dist is not None else None


def tiny_shapes(train: int = 256, test: int = 64, seed: int = 0) -> ImageData:
    """Generated shapes in memory (3x32x32, 10 classes): the defaults make one tiny epoch in seconds."""
    choice = resolve_dataset(f"shapes[train={train},test={test},seed={seed}]", plugin_registry(BUILTIN_DIST))
    return choice.plugin.load(Path("."), choice.params)


@lru_cache(maxsize=None)
def _scratch() -> Path:
    """One directory per process for what checks derive (a metric's reference classifier is trained once)."""
    return Path(tempfile.mkdtemp(prefix="aeframe-checks-"))


def _checked(kind: str, text: str, registry: Registry | None, data_dir: Path | None) -> list[Check]:
    registry = registry or plugin_registry()
    scratch = _scratch()
    # $AEFRAME_CACHE where a test run sets one (what the checks derive is keyed by its data), else this
    # process's scratch directory, so that a plugin's tests never write to the user's cache.
    cache = Path(os.environ[CACHE_ENV]) if os.environ.get(CACHE_ENV) else scratch / "cache"
    setting = Setting(registry, data_dir or scratch / "data", cache)
    checks = list(checks_for([(kind, text)], setting))
    failed = [c.line for c in checks if c.status == FAIL]
    if failed:
        raise AssertionError(f"{len(failed)} of {len(checks)} checks failed:\n" + "\n".join(failed))
    return checks


def assert_valid_technique(text: str, registry: Registry | None = None, data_dir: Path | None = None) -> list[Check]:
    """Run ``aeframe validate``'s technique checks on ``text`` (as ``-t`` takes it)."""
    return _checked("technique", text, registry, data_dir)


def assert_valid_dataset(name: str, registry: Registry | None = None, data_dir: Path | None = None) -> list[Check]:
    """Run the dataset checks on ``name`` (as ``-d`` takes it); loading checks skip when files are absent."""
    return _checked("dataset", name, registry, data_dir)


def assert_valid_metric(name: str, registry: Registry | None = None) -> list[Check]:
    """Run the metric checks on ``name``."""
    return _checked("metric", name, registry, None)


try:
    import pytest
except ImportError:  # the checks work without pytest; only the fixtures need it
    pytest = None

if pytest is not None:

    @pytest.fixture(scope="session", name="aeframe_registry")
    def _aeframe_registry() -> Registry:
        """The built-ins and every installed plugin."""
        return plugin_registry()

    @pytest.fixture(scope="session", name="tiny_shapes")
    def _tiny_shapes() -> ImageData:
        """256 training and 64 test images of generated shapes."""
        return tiny_shapes()

    @pytest.fixture(name="quick_budget")
    def _quick_budget() -> Budget:
        """One epoch."""
        return QUICK_BUDGET
