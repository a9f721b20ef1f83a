"""Models with loss terms of their own (``aeframe.ModelOutput``): the built-in VAE and VQ-VAE, trained
through ``aeframe bench``, alone and with a loss that replaces (the built-in ``l1-loss``) or wraps
(tests/loss_techniques.py) the reconstruction loss."""
from __future__ import annotations


import pytest
import torch
import torch.nn.functional as F

from aeframe import ModelOutput
from aeframe.errors import AeframeError
from aeframe.contract.output import training_loss
from aeframe.store.sqlite_store import Store

from conftest import TINY_SHAPES, registry_with

TINY = "shapes[train=256,test=64]"


@pytest.fixture(scope="module")
def family():
    """The built-ins and tests/loss_techniques.py, found through entry points as installed plugins are."""
    return registry_with("loss_techniques")


def _curves(store_path):
    with Store(store_path, write=False) as store:
        return {r.config.label: (r.status, r.curve, r.metrics) for r in store.records()}


def test_models_with_terms_train_through_bench_and_keep_their_terms_in_every_combination(cli, tmp_path, family):
    result = cli("bench", "-t", "vae", "-t", "vae+l1-loss", "-t", "vq-vae+loss-scale[factor=3]",
                 "-t", "vae[beta=0]", "-d", TINY, "--epochs", "2", "--no-channels-last", "--store", "r.sqlite",
                 cwd=tmp_path, registry=family)
    assert result.returncode == 0, result.stderr
    cells = _curves(tmp_path / "r.sqlite")
    assert {label: status for label, (status, _, _) in cells.items()} == {
        "VAE": "done", "VAE + L1 Loss": "done", "VQ-VAE + Loss Scale [factor=3.0]": "done",
        "VAE [beta=0.0]": "done"}
    for label, (_, curve, metrics) in cells.items():
        assert len(curve) == 2 and 0 < metrics["mse"] < 1
        for point in curve:
            # Every term is recorded, and the loss minimised is their sum.
            assert point["train_loss"] == pytest.approx(sum(point["terms"].values()), rel=1e-5)
    vae = cells["VAE"][1][-1]["terms"]
    assert set(vae) == {"reconstruction", "kl"} and vae["kl"] > 0
    # A replaced reconstruction loss keeps the model's KL term.
    assert set(cells["VAE + L1 Loss"][1][-1]["terms"]) == {"reconstruction", "kl"}
    # A wrapped one too, and the VQ-VAE's two terms are both there.
    vq = cells["VQ-VAE + Loss Scale [factor=3.0]"][1][0]["terms"]
    assert set(vq) == {"reconstruction", "codebook", "commitment"} and vq["codebook"] > 0 < vq["commitment"]
    assert cells["VAE [beta=0.0]"][1][-1]["terms"]["kl"] == 0


def test_the_wrapped_loss_sees_only_the_reconstruction_and_the_terms_are_added_once():
    image, target = torch.full((2, 1, 4, 4), 0.5), torch.zeros((2, 1, 4, 4))
    output = ModelOutput(image, {"kl": torch.tensor(0.25)})
    seen = []

    def l1(out, tgt):
        seen.append(out)
        return F.l1_loss(out, tgt)

    total, parts = training_loss(lambda out, tgt: 3 * l1(out, tgt), output, target)
    assert seen[0] is image
    assert float(total) == pytest.approx(3 * 0.5 + 0.25)
    assert {k: float(v) for k, v in parts.items()} == {"reconstruction": 1.5, "kl": 0.25}
    # A plain tensor is a model without terms.
    total, parts = training_loss(F.mse_loss, image, target)
    assert list(parts) == ["reconstruction"] and float(total) == pytest.approx(0.25)


@pytest.mark.parametrize("terms, message", [
    ({"reconstruction": torch.tensor(1.0)}, "has a term named 'reconstruction'"),
    ({"kl": torch.ones(3)}, r"term 'kl' has shape \(3,\), not a scalar tensor"),
    ({"kl": 0.5}, "term 'kl' is a float, not a scalar tensor"),
])
def test_terms_that_cannot_be_added_are_refused_naming_the_term(terms, message):
    with pytest.raises(AeframeError, match=message):
        training_loss(F.mse_loss, ModelOutput(torch.zeros(1, 1, 2, 2), terms), torch.zeros(1, 1, 2, 2))


def test_a_model_returning_a_tuple_is_told_to_return_a_model_output():
    with pytest.raises(AeframeError, match=r"returned a tuple; return the reconstruction as a tensor, or "
                                           r"aeframe.ModelOutput\(image, terms"):
        training_loss(F.mse_loss, (torch.zeros(1), torch.zeros(1)), torch.zeros(1))


@pytest.mark.parametrize("technique", ["vae", "vq-vae+l1-loss"])
def test_the_family_keeps_aeframes_technique_contract(family, technique):
    from aeframe.testing import assert_valid_technique

    checks = assert_valid_technique(technique, family)
    assert all(c.status == "PASS" for c in checks)


def test_a_cell_evaluates_the_reconstruction_only(family, workspace):
    """Evaluation, samples and metrics see the image; terms returned in eval mode are ignored."""
    from aeframe.cells.budget import Budget
    from techniques import train_cell

    record = train_cell("vae", family, workspace, dataset=TINY_SHAPES, budget=Budget(epochs=1))
    assert record.status == "done", record.error
    assert record.metrics["mse"] == pytest.approx(record.curve[-1]["test_mse"], rel=1e-6)
