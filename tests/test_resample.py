"""The resample choice: fastai v1's affine-grid path next to aeframe's half-pixel resize, from the
resize itself through the datasets, the runner's resized views and a bench run."""
from __future__ import annotations

import json
import sqlite3
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from aeframe import RESAMPLE_PARAM, ImageData, dataset_view, resize_uint8
from aeframe.data.splits import on_device
from aeframe.errors import SpecError
from aeframe.planning.plan import resolve_dataset
from aeframe_builtins.datasets.cifar10 import CIFAR10
from aeframe_builtins.datasets.mnist_family import FashionMNIST
from aeframe_builtins.datasets.shapes import Shapes
from dataset_files import fake_mnist, write_cifar, write_mnist

FASTAI = "fastai-v1"


def _columns(values: list[int], side: int) -> torch.Tensor:
    """One grey image whose every row is ``values`` (a horizontal ramp), uint8 (1, 1, side, side)."""
    return torch.tensor(values, dtype=torch.uint8).repeat(side, 1)[None, None]


def test_fastai_grid_at_the_same_size_stretches_by_w_over_w_minus_1():
    # fastai v1 sampled output column j at linspace(-1, 1, 4)[j], i.e. input x = -0.5, 0.83, 2.17, 3.5
    # (pixel units, half-pixel convention): the edge columns keep their values, the inner ones blend.
    image = _columns([0, 60, 120, 180], 4)

    out = resize_uint8(image, 4, FASTAI)

    assert out[0, 0, 0].tolist() == [0, 50, 130, 180]
    assert torch.equal(resize_uint8(image, 4), image)  # half-pixel at its own size: untouched


def test_fastai_grid_is_torchs_corner_aligned_grid_sampled_half_pixel():
    # An independent construction of the same grid: affine_grid with align_corners=True yields
    # linspace(-1, 1, W); fastai passed it to grid_sample under torch's default align_corners=False.
    images = torch.randint(0, 256, (6, 3, 28, 28), dtype=torch.uint8)
    for size in (32, 16, 28):
        theta = torch.tensor([[1.0, 0, 0], [0, 1.0, 0]]).expand(6, 2, 3)
        grid = F.affine_grid(theta, [6, 3, size, size], align_corners=True)
        expected = F.grid_sample(images.float(), grid, mode="bilinear", padding_mode="reflection", align_corners=False)
        assert torch.equal(resize_uint8(images, size, FASTAI), expected.round().clamp(0, 255).to(torch.uint8))


def test_fastai_grid_area_averages_before_shrinking_by_more_than_half():
    # fastai v1's guard against skipped pixels: 64 -> 16 averages 2x2 blocks first (64 -> 32), then samples.
    images = torch.randint(0, 256, (2, 1, 64, 64), dtype=torch.uint8)
    halved = F.avg_pool2d(images.float(), 2)
    expected = resize_uint8(halved.round().to(torch.uint8), 16, FASTAI)
    assert (resize_uint8(images, 16, FASTAI).int() - expected.int()).abs().max() <= 1  # one rounding apart


def test_an_unknown_method_is_refused_by_name():
    with pytest.raises(ValueError, match="unknown resample method 'nearest'; choose one of half-pixel, fastai-v1"):
        resize_uint8(torch.zeros(1, 1, 4, 4, dtype=torch.uint8), 8, "nearest")


def test_dataset_view_passes_training_images_through_the_grid_and_leaves_test_images_at_their_size():
    images = torch.randint(0, 256, (3, 3, 32, 32), dtype=torch.uint8)
    assert torch.equal(dataset_view(images, 32, FASTAI, training=True), resize_uint8(images, 32, FASTAI))
    assert not torch.equal(dataset_view(images, 32, FASTAI, training=True), images)
    assert dataset_view(images, 32, FASTAI, training=False) is images
    assert dataset_view(images, 32, "half-pixel", training=True) is images
    assert torch.equal(dataset_view(images, 16, FASTAI, training=False), resize_uint8(images, 16, FASTAI))


def test_fashion_mnist_fastai_v1_resizes_both_splits_on_the_grid(tmp_path):
    arrays = fake_mnist(np.random.default_rng(5))
    write_mnist(tmp_path / "FashionMNIST" / "raw", arrays, gz=True)
    plugin = FashionMNIST()
    plugin.system_dirs = ()

    grid = plugin.load(tmp_path, {"view": "study", "resample": FASTAI})
    plain = plugin.load(tmp_path, {"view": "study", "resample": "half-pixel"})

    for split, name in (("train", "train-images-idx3-ubyte"), ("test", "t10k-images-idx3-ubyte")):
        native = torch.from_numpy(arrays[name])[:, None]
        images = getattr(grid, split).images
        assert images.shape[1:] == (3, 32, 32)
        # One pass through the grid from the 28 px original, for training images too: fastai's
        # dihedral transform rode on the same grid as the resize.
        assert torch.equal(images[:, :1], resize_uint8(native, 32, FASTAI))
        assert torch.equal(getattr(plain, split).images[:, :1], resize_uint8(native, 32))
    assert grid.resample == FASTAI and plain.resample == "half-pixel"
    assert grid.fingerprint() != plain.fingerprint()
    # Loaded as aeframe 0.1 called it (no resample): the default, and the same data.
    assert plugin.load(tmp_path, {"view": "study"}).fingerprint() == plain.fingerprint()


def test_cifar10_fastai_v1_stretches_training_images_only(tmp_path):
    write_cifar(tmp_path / "cifar-10-batches-py", np.random.default_rng(6), style="bytes")
    plain = CIFAR10().load(tmp_path, {})
    grid = CIFAR10().load(tmp_path, {"resample": FASTAI})

    assert torch.equal(grid.train.images, resize_uint8(plain.train.images, 32, FASTAI))
    assert not torch.equal(grid.train.images, plain.train.images)
    assert torch.equal(grid.test.images, plain.test.images)
    assert grid.resample == FASTAI


def test_the_runners_resized_views_follow_the_datasets_choice(registry):
    choice = resolve_dataset("shapes[train=64,test=16,resample=fastai-v1]", registry)
    data = choice.plugin.load(Path("."), choice.params)  # generated: reads no files
    cells = on_device(data, torch.device("cpu"))

    assert torch.equal(cells.train.view(16), resize_uint8(data.train.images, 16, FASTAI))
    assert torch.equal(cells.test.view(16), resize_uint8(data.test.images, 16, FASTAI))
    plain = Shapes().load(Path("."), {"train": 64, "test": 16, "seed": 0})
    assert torch.equal(on_device(plain, torch.device("cpu")).test.view(16), resize_uint8(plain.test.images, 16))


def test_the_choice_travels_with_data_shipped_to_a_worker():
    data = Shapes().load(Path("."), {"train": 8, "test": 4, "seed": 0, "resample": FASTAI})
    back = ImageData.from_arrays(data.to_arrays())
    assert back.resample == FASTAI
    assert back.fingerprint() == data.fingerprint()


def test_the_default_is_recorded_as_before_and_the_choice_as_a_parameter(registry):
    default = resolve_dataset("fashion-mnist", registry)
    chosen = resolve_dataset("fashion-mnist[resample=fastai-v1]", registry)

    assert default.describe().params == {"view": "study"}  # what aeframe 0.1 recorded: same cell keys
    assert chosen.describe().params == {"view": "study", "resample": FASTAI}
    assert chosen.label == "fashion-mnist[resample=fastai-v1]"
    assert RESAMPLE_PARAM in type(default.plugin).params


def test_a_bad_method_names_the_dataset_and_the_choices(registry):
    with pytest.raises(SpecError, match="dataset shapes: resample=fastai is not allowed; choose one of half-pixel, fastai-v1"):
        resolve_dataset("shapes[resample=fastai]", registry)


def test_bench_trains_progressive_resizing_on_the_grid_and_says_so(tmp_path, cli, registry):
    store = tmp_path / "r.sqlite"
    spec = "shapes[train=256,test=64,resample=fastai-v1]"
    # Without Classifier Accuracy: its reference classifier of the resampled images is not what this shows.
    pixels = replace(registry, metrics={k: m for k, m in registry.metrics.items() if k != "classifier_accuracy"})
    ran = cli("bench", "-t", "progressive-resizing", "-d", spec, "-d", "shapes[train=256,test=64]",
              "--epochs", "1", "--store", str(store), cwd=tmp_path, registry=pixels)

    assert ran.returncode == 0, ran.stderr
    assert "resample=fastai-v1" in ran.stdout
    with sqlite3.connect(store) as db:
        rows = [json.loads(r[0]) for r in db.execute("SELECT config FROM cells")]
    params = sorted(json.dumps(r["dataset"]["params"], sort_keys=True) for r in rows)
    assert params == [json.dumps(p, sort_keys=True) for p in (
        {"resample": FASTAI, "seed": "0", "test": "64", "train": "256"}, {"seed": "0", "test": "64", "train": "256"})]
