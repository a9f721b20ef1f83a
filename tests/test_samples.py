"""Sample reconstructions: the same test images for every cell, kept in the store for the pictures."""
from __future__ import annotations

import sqlite3

import torch
from torch import nn

from aeframe.data.splits import DeviceSplit
from aeframe.contract.dataset import Split
from aeframe.cells.record import CellConfig, CellRecord, DatasetRef
from aeframe.cells.samples import Samples, sample_indices
from aeframe.training.evaluate import capture_samples
from aeframe.store.sqlite_store import Store
from aeframe.cells.budget import Budget
from techniques import train_cell


def test_sample_indices_take_one_image_per_class_in_class_order_then_go_round_again():
    labels = torch.tensor([2, 0, 0, 1, 2, 1, 0])
    assert sample_indices(labels, 5) == [1, 3, 0, 2, 5]
    assert sample_indices(labels, 100) == [1, 3, 0, 2, 5, 4, 6]
    assert sample_indices(torch.tensor([], dtype=torch.long), 4) == []


def _split(n=12, side=8) -> DeviceSplit:
    images = torch.arange(n * 3 * side * side, dtype=torch.int64).remainder(256).to(torch.uint8).view(n, 3, side, side)
    return DeviceSplit(Split(images, torch.arange(n) % 4), torch.device("cpu"))


class _Halve(nn.Module):
    def forward(self, x):
        return x / 2


def test_capture_reconstructs_the_sample_images_as_uint8_in_eval_mode():
    split = _split()
    model = _Halve().train()
    samples = capture_samples(model, split)
    assert samples.indices == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]
    assert torch.equal(samples.originals, split.images[:10])
    expected = (split.images[:10].float() / 2).round().to(torch.uint8)
    # x/255/2*255 rounds like x/2 up to float error at the .5 boundaries
    assert (samples.reconstructions.int() - expected.int()).abs().max() <= 1
    assert model.training
    small = capture_samples(nn.Identity(), split, size=4)
    assert small.originals.shape == (10, 3, 4, 4) and torch.equal(small.originals, small.reconstructions)


def _record(key: str, samples: Samples | None) -> CellRecord:
    config = CellConfig(label="Baseline", dataset=DatasetRef("shapes"), seed=0)
    return CellRecord(key=key, config=config, status="done", samples=samples)


def test_the_store_keeps_samples_apart_and_a_rerun_replaces_them(tmp_path):
    path = tmp_path / "r.sqlite"
    first = capture_samples(_Halve(), _split())
    with Store(path) as store:
        store.save(_record("a", first))
        store.save(_record("b", None))
        found = store.samples(["a", "b", "missing"])
        assert list(found) == ["a"]
        assert found["a"].indices == first.indices
        assert torch.equal(found["a"].originals, first.originals)
        assert torch.equal(found["a"].reconstructions, first.reconstructions)
        # records() stays light: the pictures are read only on request
        assert store.records()[0].samples is None
        store.save(_record("a", None))
        assert store.samples(["a"]) == {}
    with Store(path, write=False) as store:
        assert store.samples(["a", "b"]) == {}


def test_a_store_from_before_the_samples_table_reads_and_gets_the_table_when_written(tmp_path):
    path = tmp_path / "old.sqlite"
    with Store(path) as store:
        store.save(_record("a", None))
    conn = sqlite3.connect(path)
    conn.execute("DROP TABLE samples")
    conn.commit()
    conn.close()
    with Store(path, write=False) as store:
        assert store.samples(["a"]) == {} and len(store.records()) == 1
    with Store(path) as store:
        store.save(_record("b", capture_samples(nn.Identity(), _split())))
        assert list(store.samples(["a", "b"])) == ["b"]


def test_a_trained_cell_carries_its_reconstructions_of_the_same_test_images(registry, workspace):
    record = train_cell("baseline", registry, workspace, budget=Budget(epochs=1))
    assert record.status == "done"
    samples = record.samples
    assert samples.originals.shape == (10, 3, 32, 32) == samples.reconstructions.shape
    # one image per class of shapes' ten
    data = workspace.load_dataset("shapes[train=256,test=64]")
    assert sorted(data.test.labels[samples.indices].tolist()) == list(range(10))
    assert torch.equal(samples.originals, data.test.images[samples.indices])
    assert not torch.equal(samples.reconstructions, samples.originals)
