"""Data identity: the data's fingerprint is part of every cell's key and of every cache derived from data,
so that results and caches made from one dataset's files are never taken for another's."""
from __future__ import annotations

import json
import sqlite3
from dataclasses import replace

import numpy as np
import pytest
import torch

from aeframe import ImageData, Split
from aeframe.cells.spec import cell_key
from aeframe.cells.record import CellConfig, DatasetRef
from aeframe_builtins.metrics import reference_classifier
from aeframe_builtins.datasets.shapes import CLASSES, generate

from dataset_files import fake_mnist, write_mnist


def shapes(train: int = 64, test: int = 16, seed: int = 0) -> ImageData:
    return ImageData(train=generate(train, seed, "train"), test=generate(test, seed, "test"), classes=list(CLASSES))


def test_the_fingerprint_changes_with_any_pixel_label_or_class_name_and_is_computed_once():
    data = shapes()
    fingerprint = data.fingerprint()
    assert fingerprint == shapes().fingerprint() and len(fingerprint) == 16
    pixel = shapes()
    pixel.test.images[3, 1, 7, 7] ^= 1
    label = shapes()
    label.train.labels[0] = (label.train.labels[0] + 1) % 10
    renamed = replace(shapes(), classes=[*CLASSES[:-1], "other"])
    # The same bytes split differently between train and test are other data.
    both = shapes()
    moved = ImageData(Split(torch.cat([both.train.images, both.test.images[:1]]),
                            torch.cat([both.train.labels, both.test.labels[:1]])),
                      Split(both.test.images[1:], both.test.labels[1:]), list(CLASSES))
    others = [pixel, label, renamed, moved, shapes(seed=1), shapes(train=65)]
    assert len({fingerprint, *(d.fingerprint() for d in others)}) == 1 + len(others)
    # Kept after the first call: changing the tensors afterwards is not noticed (the docs say so).
    data.train.images.zero_()
    assert data.fingerprint() == fingerprint


def test_the_fingerprint_is_kept_in_the_config_and_decides_the_key():
    config = CellConfig(label="Baseline", dataset=DatasetRef("shapes", "Shapes", {"train": "64"}, "0123456789abcdef"),
                        versions={"aeframe": "0.2.0", "torch": "2.4.1"})
    stored = json.loads(json.dumps(config.to_json()))
    assert stored["dataset"] == {"name": "shapes", "title": "Shapes", "params": {"train": "64"},
                                 "fingerprint": "0123456789abcdef"}
    assert CellConfig.from_json(stored) == config
    # Records stored before fingerprints existed read with none, and write none back.
    old = {**stored, "dataset": {"name": "shapes", "title": "Shapes", "params": {"train": "64"}}}
    assert CellConfig.from_json(old).dataset.fingerprint is None
    assert CellConfig.from_json(old).to_json()["dataset"] == old["dataset"]
    other = replace(config, dataset=replace(config.dataset, fingerprint="fedcba9876543210"))
    assert len({cell_key(config), cell_key(other), cell_key(CellConfig.from_json(old))}) == 3


def test_a_planned_cell_is_keyed_once_its_datas_fingerprint_is_known(registry):
    from aeframe.cells.budget import Budget
    from aeframe.planning.plan import plan_cells, resolve_dataset, resolve_technique

    [cell] = plan_cells([resolve_technique("baseline", registry)], [resolve_dataset("shapes", registry)], 1,
                        Budget(epochs=1), {"type": "cpu", "name": "a CPU"}, {"aeframe": "0", "torch": "0"}, registry)
    assert cell.key is None  # planning makes no key: without the data's fingerprint it would be the wrong one
    final = cell.keyed("0123456789abcdef")
    assert final.config.dataset.fingerprint == "0123456789abcdef" and cell.config.dataset.fingerprint is None
    assert final.key == cell_key(final.config) != cell_key(cell.config)


def test_the_reference_classifier_cache_is_per_data_not_per_name(tmp_path):
    spec = "shapes[train=64,test=16]"
    same = reference_classifier.cache_paths(tmp_path, spec, shapes())
    assert same == reference_classifier.cache_paths(tmp_path, spec, shapes())
    assert reference_classifier.cache_paths(tmp_path, spec, shapes(seed=1)) != same


@pytest.fixture
def two_data_dirs(tmp_path):
    """Two data directories holding MNIST files of the same sizes and format but other images."""
    dirs = []
    for seed in (1, 2):
        root = tmp_path / f"data{seed}"
        write_mnist(root / "MNIST" / "raw", fake_mnist(np.random.default_rng(seed), 128, 32))
        dirs.append(root)
    return dirs


def test_a_store_made_from_one_data_dir_is_not_done_for_another(tmp_path, cli, two_data_dirs):
    cache = tmp_path / "cache"
    first, second = two_data_dirs

    def bench(data_dir):
        # A cache of its own, to count the classifiers in it; precision and layout fixed, so nothing else is measured.
        result = cli("bench", "-t", "baseline", "-d", "mnist", "--epochs", "1", "--data-dir", str(data_dir),
                     "--precision", "fp32", "--no-channels-last", "--store", "r.sqlite", cwd=tmp_path,
                     env={"AEFRAME_CACHE": str(cache)})
        assert result.returncode == 0, result.stderr
        return result

    bench(first)
    other = bench(second)
    assert "already done" not in other.stderr and "[1/1] Baseline on mnist (seed 0)" in other.stderr
    again = bench(first)
    assert "1 of 1 cells already done" in again.stderr and "[1/1]" not in again.stderr
    with sqlite3.connect(tmp_path / "r.sqlite") as db:
        rows = db.execute("select status, json_extract(config, '$.dataset.fingerprint') from cells").fetchall()
    assert [status for status, _ in rows] == ["done", "done"] and len({f for _, f in rows}) == 2
    # Each data directory's images trained a reference classifier of their own.
    assert len(list((cache / "classifier").glob("mnist-*.pt"))) == 2
