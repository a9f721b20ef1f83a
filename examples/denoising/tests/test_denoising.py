"""The plugin keeps aeframe's contracts, and a real ``aeframe bench`` trains its technique on its dataset."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from aeframe.testing import assert_valid_dataset, assert_valid_technique, plugin_registry


@pytest.fixture(scope="module")
def registry():
    """The built-ins and this package's plugin only, so other installed plugins cannot interfere."""
    return plugin_registry("aeframe-denoising")


def test_the_plugin_registers_its_technique_and_dataset(registry):
    assert registry.origin[("technique", "salt-and-pepper")] == "denoising"
    assert registry.origin[("dataset", "stripes")] == "denoising"


def test_salt_and_pepper_passes_aeframes_technique_checks(registry):
    checks = assert_valid_technique("salt-and-pepper[amount=0.2]", registry)
    assert [c.status for c in checks] == ["PASS"] * 7


def test_stripes_passes_aeframes_dataset_checks(registry):
    checks = assert_valid_dataset("stripes[train=64,test=16]", registry)
    assert all(c.status == "PASS" for c in checks) and len(checks) == 6


def test_noise_reaches_training_inputs_only(tiny_shapes):
    from aeframe_denoising.technique import SaltAndPepper

    model = SaltAndPepper(torch.nn.Identity(), amount=0.2)
    x = tiny_shapes.test.images[:16].float().div(255).clamp(0.01, 0.99)  # no pixel is black or white yet
    torch.manual_seed(0)
    noisy = model(x)
    changed = (noisy != x).any(1)  # per pixel
    assert 0.17 < float(changed.float().mean()) < 0.23  # the share asked for
    # A changed pixel is black or white in every channel, about as often one as the other.
    black, white = (noisy == 0).all(1), (noisy == 1).all(1)
    assert torch.equal(changed, black | white) and 0.8 < float(black.sum() / white.sum()) < 1.25
    assert torch.equal(model.eval()(x), x)  # evaluation sees clean images


def _aeframe(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "AEFRAME_DISABLE_PLUGIN_AUTOLOAD"}
    exe = Path(sys.executable).with_name("aeframe")
    return subprocess.run([str(exe), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_bench_trains_salt_and_pepper_on_stripes(tmp_path, quick_budget):
    result = _aeframe("bench", "-t", "salt-and-pepper[amount=0.2]", "-d", "stripes[train=256,test=64]", "--epochs",
                      str(quick_budget.epochs), "--store", "r.sqlite", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("## Stripes")
    # The row is named after the technique and the parameters that differ from their defaults.
    row = next(line for line in result.stdout.splitlines()
               if line.startswith("| Salt-and-Pepper Denoising [amount=0.2] "))
    assert 0 < float(row.split("|")[3]) < 1  # the MSE column


def test_an_amount_outside_0_to_1_is_refused_before_anything_runs(tmp_path):
    result = _aeframe("bench", "-t", "salt-and-pepper[amount=1]", "-d", "stripes", "--store", "r.sqlite", cwd=tmp_path)
    assert result.returncode == 2
    assert "technique salt-and-pepper: amount=1 is outside [0, 1)" in result.stderr
    assert not (tmp_path / "r.sqlite").exists()
