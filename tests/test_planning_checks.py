"""Parameters that can never work are refused at planning (exit 2, one line naming the technique and the
parameter), before a store is opened or a cell is stored as failed; some only on a dataset's image shape."""
from __future__ import annotations

import pytest

from conftest import TINY_SHAPES, installed_registry


@pytest.mark.parametrize("technique, message", [
    ("baseline[latent=-1]", "technique baseline: latent=-1: the bottleneck needs at least 1 unit"),
    ("baseline[latent=0]", "technique baseline: latent=0: the bottleneck needs at least 1 unit"),
    ("pixel-shuffle+baseline[latent=0]", "technique baseline: latent=0"),
    ("progressive-resizing[sizes=16,32,64]", f"technique progressive-resizing on dataset {TINY_SHAPES} (3x32x32): "
                                             "the last of sizes=16,32,64 must be the images' side, 32"),
    ("progressive-resizing[sizes=12,32]", f"technique progressive-resizing on dataset {TINY_SHAPES} (3x32x32): "
                                          "size 12 of sizes=12,32 is not the side 32 halved a whole number of times"),
    ("feature-loss[pixel=nan]", "technique feature-loss: pixel=nan: weights must be finite and 0 or more"),
    ("feature-loss[gram=-1]", "technique feature-loss: gram=-1: weights must be finite and 0 or more"),
    ("feature-loss[layer_weights=1,inf,1]", "technique feature-loss: layer_weights=1,inf,1: weights must be finite"),
    ("feature-loss[layer_weights=0,0,0,pixel=0]", "technique feature-loss: every weight is 0, so the loss would be 0"),
])
def test_parameters_that_can_never_work_are_refused_at_planning(tmp_path, cli, technique, message):
    result = cli("bench", "-t", technique, "-d", TINY_SHAPES, "--epochs", "1", "--store", "r.sqlite", cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert f"Error: {message}" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "r.sqlite").exists()


def test_sizes_that_fit_one_dataset_but_not_another_are_refused_for_that_one(tmp_path, cli):
    """28-px native MNIST and 32-px shapes: sizes=16,32 is the study's default (half, then full) on
    both, while sizes=8,32 halves 32 twice but is not 28's side."""
    result = cli("bench", "-t", "progressive-resizing[sizes=8,32]", "-d", TINY_SHAPES, "-d", "mnist[view=native]",
                 "--store", "r.sqlite", cwd=tmp_path)
    assert result.returncode == 2
    assert ("technique progressive-resizing on dataset mnist[view=native] (1x28x28): the last of sizes=8,32 must be "
            "the images' side, 28") in result.stderr



def test_a_training_split_smaller_than_one_batch_is_refused_at_planning(tmp_path, cli):
    # A cache of its own: a reference classifier trained for the dataset would be seen training.
    result = cli("bench", "-t", "baseline", "-d", "shapes[train=100,test=20]", "--epochs", "1", "--precision", "fp32",
                 "--no-channels-last", "--store", "r.sqlite", cwd=tmp_path, env={"AEFRAME_CACHE": str(tmp_path / "cache")})
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines()[-1] == (
        "Error: dataset shapes[train=100,test=20] has 100 training images, fewer than one batch of 128 (the batch "
        "Baseline trains with), so its cells could not train a step; give train=128 or more (found when planning; "
        "nothing was trained)")
    assert "reference classifier" not in result.stderr
    assert not (tmp_path / "r.sqlite").exists()

OLD_PLUGIN = '''
from aeframe import Technique, hookimpl


class Old(Technique):
    name, title, base = "old", "Old", "baseline"
    description = "written before check_shape existed, and not inheriting it"

    def wrap_loss(self, loss, ctx):
        return loss

    def __getattribute__(self, name):
        if name == "check_shape":
            raise AttributeError(name)
        return super().__getattribute__(name)


class Picky(Technique):
    name, title, base = "picky", "Picky", "baseline"
    description = "refuses images smaller than 64 pixels"

    def check_shape(self, params, shape):
        if shape[-1] < 64:
            raise ValueError(f"needs images of 64 pixels or more, not {shape[-1]}")

    def wrap_loss(self, loss, ctx):
        return loss


@hookimpl
def register_techniques(register):
    register(Old())
    register(Picky())
'''


@pytest.fixture
def shape_plugins(tmp_path, monkeypatch):
    yield from installed_registry(tmp_path, monkeypatch, "aeframe-shapes-test", "shape_techniques", OLD_PLUGIN)


def test_a_third_party_check_shape_is_called_and_plugins_without_one_still_plan(tmp_path, cli, shape_plugins):
    picky = cli("bench", "-t", "picky", "-d", "cifar10", "--store", "r.sqlite", "--data-dir", str(tmp_path / "no"),
                cwd=tmp_path, registry=shape_plugins)
    assert picky.returncode == 2
    assert "Error: technique picky on dataset cifar10 (3x32x32): needs images of 64 pixels or more, not 32" \
        in picky.stderr
    # cifar10 is absent, so the run plans the cell, skips the dataset and trains nothing.
    old = cli("bench", "-t", "old", "-d", "cifar10", "--store", "r.sqlite", "--data-dir", str(tmp_path / "no"),
              cwd=tmp_path, registry=shape_plugins)
    assert old.returncode == 1 and "skipping cifar10" in old.stderr and "Traceback" not in old.stderr
