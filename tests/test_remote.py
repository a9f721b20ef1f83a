"""What travels to a worker and what the worker rebuilds (aeframe.planning.rebuild, aeframe.execution.remote),
without any cluster: cell specs are plain data, the data arrives without copies, and a worker whose plugins
differ refuses, saying where."""
from __future__ import annotations

import pickle
import re
from dataclasses import replace
from pathlib import Path

import pytest
import torch

import aeframe
from aeframe import ImageData
from aeframe.cells.budget import Budget
from aeframe.cells.settings import Speed
from aeframe.execution.remote import train_cell
from aeframe.planning.plan import plan_cells, resolve_dataset, resolve_technique
from aeframe.planning.rebuild import PluginMismatch, runnable
from aeframe.registry.plugins import Registry
from conftest import TINY_SHAPES


def _orders(registry, technique: str = "pixel-shuffle[icnr=true]+progressive-resizing[sizes=8,32]"):
    """A keyed cell spec, the composition it was planned from, and its data."""
    composition = resolve_technique(technique, registry)
    choice = resolve_dataset(TINY_SHAPES, registry)
    data = choice.plugin.load(Path("."), choice.params)
    [spec] = plan_cells([composition], [choice], 1, Budget(epochs=1), {"type": "cpu", "name": "test"},
                        {"aeframe": __import__("aeframe").__version__, "torch": torch.__version__.split("+")[0]},
                        registry, speed=Speed("fp32", False), metrics=tuple(registry.metrics))
    return composition, spec.keyed(data.fingerprint()), data


def test_a_spec_is_plain_data_and_rebuilds_the_same_cell(registry):
    composition, order, _ = _orders(registry)
    travelled = pickle.loads(pickle.dumps(order))  # no plugin object inside: a worker unpickles it without them
    assert b"aeframe_builtins" not in pickle.dumps(order)
    assert travelled == order
    rebuilt = runnable(travelled, registry)
    assert rebuilt.spec.key == order.key and rebuilt.spec.config == order.config
    assert rebuilt.composition.label == composition.label == "Pixel Shuffle [icnr=true] + Progressive Resizing [sizes=8,32]"
    assert rebuilt.dataset.label == order.dataset == TINY_SHAPES and rebuilt.budget == Budget(epochs=1)
    assert travelled.metrics == tuple(registry.metrics)


def test_shipped_data_arrives_whole_and_without_copies(registry):
    _, _, data = _orders(registry)
    arrays = pickle.loads(pickle.dumps(data.to_arrays(), protocol=5))
    back = ImageData.from_arrays(arrays)
    assert back.fingerprint() == data.fingerprint()
    assert back.train.images.data_ptr() == arrays["train"][0].ctypes.data  # the tensor is a view of the array


def _with_version(registry: Registry, plugin: str, version: str) -> Registry:
    plugins = [replace(p, version=version) if p.name == plugin else p for p in registry.plugins]
    return replace(registry, plugins=plugins)


def test_a_worker_with_another_version_of_a_plugin_refuses_naming_both_versions(registry):
    _, order, _ = _orders(registry)
    version = re.escape(aeframe.__version__)
    with pytest.raises(PluginMismatch, match=rf"^technique 'pixel-shuffle' is version 9\.9 on node .+ but {version} on "
                                             r"the driver; install the same version on every node"):
        runnable(order, _with_version(registry, "pixel_shuffle", "9.9"))


def test_a_worker_where_the_plugin_failed_to_load_quotes_its_error(registry):
    _, order, _ = _orders(registry)
    broken = replace(registry, techniques={k: v for k, v in registry.techniques.items() if k != "pixel-shuffle"},
                     warnings=["plugin 'pixel_shuffle' (aeframe 0.1.0) failed to load: ImportError: no libfoo; skipped"])
    with pytest.raises(PluginMismatch) as caught:
        runnable(order, broken)
    assert str(caught.value).startswith(f"technique 'pixel-shuffle' (plugin 'pixel_shuffle' (aeframe {aeframe.__version__}, built in) "
                                        "on the driver) is not available on node ")
    assert ": plugin 'pixel_shuffle' (aeframe 0.1.0) failed to load: ImportError: no libfoo; skipped; install the " \
           "same plugins on every node (docs/distributed.md)" in str(caught.value)


def test_a_worker_with_another_torch_refuses_and_train_cell_makes_that_a_failed_record(registry):
    _, order, data = _orders(registry)
    other = replace(order, config=replace(order.config, versions={**order.config.versions, "torch": "1.0.0"}))
    record = train_cell(other, data, torch.device("cpu"), Path("."), Path("."), None, registry)
    assert record.status == "failed" and record.key == order.key
    assert record.error.startswith(f"torch is version {torch.__version__.split('+')[0]} on node ")
    assert record.error.endswith("but 1.0.0 on the driver; install the same version on every node (docs/distributed.md)")
    assert record.config.plugins == {}  # not the technique's fault

