"""The plugin keeps aeframe's contracts, its models' loss terms behave, and a real ``aeframe bench`` records them."""
from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from aeframe.testing import assert_valid_technique, plugin_registry


@pytest.fixture(scope="module")
def registry():
    """The built-ins and this package's plugin only, so other installed plugins cannot interfere."""
    return plugin_registry("aeframe-vae")


def test_the_plugin_registers_both_techniques(registry):
    assert registry.origin[("technique", "beta-vae")] == "vae"
    assert registry.origin[("technique", "vq-vae")] == "vae"


@pytest.mark.parametrize("text", ["beta-vae[beta=4]", "vq-vae[codes=16]"])
def test_each_technique_passes_aeframes_technique_checks(registry, text):
    checks = assert_valid_technique(text, registry)
    assert checks and all(c.status == "PASS" for c in checks)


def test_the_vae_adds_its_weighted_kl_term_while_training_only(tiny_shapes):
    from aeframe_vae.models import BetaVAE

    x = tiny_shapes.test.images[:8].float().div(255)
    torch.manual_seed(0)
    one, four = BetaVAE(x.shape[1], beta=1.0), BetaVAE(x.shape[1], beta=4.0)
    four.load_state_dict(one.state_dict())
    torch.manual_seed(1)
    kl_one = one(x).terms["kl"].item()
    torch.manual_seed(1)
    kl_four = four(x).terms["kl"].item()
    assert kl_one > 0 and kl_four == pytest.approx(4 * kl_one, rel=1e-5)
    evaluated = one.eval()(x)
    assert evaluated.terms == {} and evaluated.image.shape == x.shape
    assert torch.equal(evaluated.image, one(x).image)  # the mean, not a sample


def test_the_quantiser_outputs_codewords_and_passes_the_gradient_straight_through():
    from aeframe_vae.models import VectorQuantiser

    torch.manual_seed(0)
    quantiser = VectorQuantiser(codes=4, dim=3, commitment=0.25)
    z = torch.randn(2, 3, 2, 2, requires_grad=True)
    quantised, terms = quantiser(z)
    codewords = quantiser.codebook.weight
    for vector in quantised.detach().permute(0, 2, 3, 1).reshape(-1, 3):
        assert torch.isclose(codewords, vector).all(1).any()  # every output is one of the codewords
    quantised.sum().backward()
    assert torch.equal(z.grad, torch.ones_like(z))  # the identity's gradient
    assert terms["commitment"].item() == pytest.approx(0.25 * terms["codebook"].item(), rel=1e-5)


def _aeframe(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "AEFRAME_DISABLE_PLUGIN_AUTOLOAD"}
    exe = Path(sys.executable).with_name("aeframe")
    return subprocess.run([str(exe), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_bench_trains_both_and_records_each_loss_term(tmp_path, quick_budget):
    result = _aeframe("bench", "-t", "beta-vae", "-t", "vq-vae", "-d", "shapes[train=256,test=64]", "--epochs",
                      str(quick_budget.epochs), "--store", "r.sqlite", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    table = result.stdout.split("\n\n")[1]  # the first table, after its dataset's heading
    rows = [line for line in table.splitlines() if line.startswith(("| Beta-VAE ", "| VQ-VAE "))]
    assert len(rows) == 2 and all(0 < float(row.split("|")[3].strip(" *")) < 1 for row in rows)  # MSE (the best bold)
    # The store's schema is aeframe's documented interface (docs/results.md): one row per cell.
    with sqlite3.connect(tmp_path / "r.sqlite") as db:
        terms = {label: set(json.loads(curve)[-1]["terms"]) for label, curve in db.execute("SELECT label, curve FROM cells")}
    assert terms == {"Beta-VAE": {"reconstruction", "kl"}, "VQ-VAE": {"reconstruction", "codebook", "commitment"}}
