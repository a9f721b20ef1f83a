"""Training throughput of aeframe cells (run: pytest benchmarks/ --benchmark-only).

Each benchmark trains one real cell on the generated shapes dataset for one epoch and records the
training images per second (device-synchronised training time, evaluation excluded) in the JSON
that pytest-benchmark saves.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from aeframe.budget import Budget
from aeframe.cell import run_cell
from aeframe.environment import device_info, resolve_device, versions
from aeframe.loading import default_cache_dir, default_data_dir, load_for_training, make_workspace
from aeframe.plan import plan_cells, resolve_dataset, resolve_technique
from aeframe.plugins import build_registry

DATASET = "shapes[train=4096,test=256]"


@pytest.fixture(scope="module")
def setup():
    registry = build_registry(autoload=False)
    device = resolve_device("auto")
    dataset = resolve_dataset(DATASET, registry)
    data = load_for_training(dataset, Path("."), device, lambda _: None)
    workspace = make_workspace(registry, default_data_dir(), default_cache_dir(), lambda _: None)
    return registry, device, dataset, data, workspace


@pytest.mark.parametrize("technique", sorted(build_registry(autoload=False).techniques))
def test_one_epoch(benchmark, setup, technique):
    registry, device, dataset, data, workspace = setup
    comp = resolve_technique(technique, registry)
    cell = plan_cells([comp], [dataset], 1, Budget(epochs=1), device_info(device), versions(), registry)[0]
    metrics = list(registry.metrics.values())
    records = []

    def one_cell():
        records.append(run_cell(cell, data, metrics, device, workspace))

    benchmark.pedantic(one_cell, rounds=3, iterations=1, warmup_rounds=1)
    rates = [r.stats["images_per_second"] for r in records]
    assert all(r.status == "done" for r in records)
    benchmark.extra_info["images_per_second"] = max(rates)
    benchmark.extra_info["device"] = device_info(device)["name"]
    benchmark.extra_info["torch"] = torch.__version__
    print(f"\n{technique}: {max(rates):,.0f} training images/s on {device_info(device)['name']}")
