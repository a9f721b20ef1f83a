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
    assert registry.origin[("technique", "denoising")] == "denoising"
    assert registry.origin[("dataset", "stripes")] == "denoising"


def test_denoising_passes_aeframes_technique_checks(registry):
    checks = assert_valid_technique("denoising[noise=0.2]", registry)
    assert [c.status for c in checks] == ["PASS"] * 7


def test_stripes_passes_aeframes_dataset_checks(registry):
    checks = assert_valid_dataset("stripes[train=64,test=16]", registry)
    assert all(c.status == "PASS" for c in checks) and len(checks) == 6


def test_noise_reaches_training_inputs_only(tiny_shapes):
    from aeframe_denoising.technique import NoisyInput

    model = NoisyInput(torch.nn.Identity(), noise=0.5)
    x = tiny_shapes.test.images[:4].float().div(255)
    torch.manual_seed(0)
    noisy = model(x)
    assert 0.1 < float((noisy - x).abs().mean()) < 0.5 and noisy.min() >= 0 and noisy.max() <= 1
    assert torch.equal(model.eval()(x), x)  # evaluation sees clean images


def _aeframe(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "AEFRAME_DISABLE_PLUGIN_AUTOLOAD"}
    exe = Path(sys.executable).with_name("aeframe")
    return subprocess.run([str(exe), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_bench_trains_denoising_on_stripes(tmp_path, quick_budget):
    result = _aeframe("bench", "-t", "denoising[noise=0.3]", "-d", "stripes[train=256,test=64]", "--epochs",
                      str(quick_budget.epochs), "--store", "r.sqlite", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("## Stripes")
    # The row is named after the technique and the parameters that differ from their defaults.
    row = next(line for line in result.stdout.splitlines() if line.startswith("| Denoising [noise=0.3] "))
    assert 0 < float(row.split("|")[3]) < 1  # the MSE column


def test_a_negative_noise_is_refused_before_anything_runs(tmp_path):
    result = _aeframe("bench", "-t", "denoising[noise=-0.1]", "-d", "stripes", "--store", "r.sqlite", cwd=tmp_path)
    assert result.returncode == 2
    assert "technique denoising: noise=-0.1 is negative" in result.stderr
    assert not (tmp_path / "r.sqlite").exists()
