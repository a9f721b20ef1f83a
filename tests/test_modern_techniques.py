"""The built-in techniques the study did not try: ``l1-loss``, ``denoising``, ``masked``, ``vae`` and
``vq-vae``. Each does what docs/techniques.md says, in numbers; trains a real cell through ``aeframe
bench``; refuses bad parameters in one line, naming itself; and passes ``aeframe validate``."""
from __future__ import annotations

import math

import pytest
import torch

from aeframe import ModelOutput
from aeframe.store.sqlite_store import Store

from conftest import TINY_SHAPES
from techniques import build

MODERN = ("l1-loss", "denoising", "masked", "vae", "vq-vae")


def _images(n: int = 8, side: int = 32) -> torch.Tensor:
    """Random images in [0.1, 0.9]: no pixel is 0, so a zeroed one is one the technique set."""
    return torch.rand(n, 3, side, side, generator=torch.Generator().manual_seed(0)) * 0.8 + 0.1


# -- l1-loss ----------------------------------------------------------------------------------------


def test_l1_loss_is_the_mean_absolute_error_and_keeps_the_baselines_model(registry):
    built, baseline = build("l1-loss", registry), build("baseline", registry)
    output, target = _images(), _images().flip(0)
    assert float(built.loss(output, target)) == pytest.approx(float((output - target).abs().mean()), rel=1e-6)
    assert type(built.model) is type(baseline.model)
    assert [p.max_lr for p in built.schedule.phases] == [p.max_lr for p in baseline.schedule.phases]


# -- denoising --------------------------------------------------------------------------------------


def test_denoising_adds_noise_of_the_asked_deviation_to_training_inputs_only(registry):
    model = build("denoising[noise=0.05]", registry).model
    seen = []
    model.model.register_forward_pre_hook(lambda _, args: seen.append(args[0]))
    x = torch.full((16, 3, 32, 32), 0.5)  # 10 deviations from either end: the clamp changes nothing
    model.train()(x)
    model.eval()(x)
    noisy, clean = seen
    assert float((noisy - x).std()) == pytest.approx(0.05, rel=0.02) and abs(float((noisy - x).mean())) < 1e-3
    assert torch.equal(clean, x)  # evaluation sees the clean image


def test_denoising_clamps_into_the_images_range_and_zero_noise_changes_nothing(registry):
    from aeframe_builtins.techniques.corrupt_inputs import GaussianNoise

    x = _images()
    noisy = GaussianNoise(torch.nn.Identity(), 1.0).train()(x)
    assert noisy.min() == 0 and noisy.max() == 1
    assert torch.equal(GaussianNoise(torch.nn.Identity(), 0.0).train()(x), x)


# -- masked -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("ratio, patch", [(0.5, 4), (0.3, 8), (0.75, 2)])
def test_masked_zeroes_the_asked_share_of_whole_patches_of_each_training_image(registry, ratio, patch):
    model = build(f"masked[ratio={ratio},patch={patch}]", registry).model
    seen = []
    model.model.register_forward_pre_hook(lambda _, args: seen.append(args[0]))
    x = _images()
    model.train()(x)
    model.eval()(x)
    masked, whole = seen
    assert torch.equal(whole, x)  # evaluation sees whole images
    grid = 32 // patch
    # Per patch and image: how many of its values are 0 (all or none), and the others untouched.
    zeros = (masked == 0).view(8, 3, grid, patch, grid, patch).sum((1, 3, 5))
    assert set(zeros.unique().tolist()) == {0, 3 * patch * patch}
    assert torch.equal(masked[masked != 0], x[masked != 0])
    hidden = (zeros > 0).flatten(1).sum(1)
    assert hidden.tolist() == [int(ratio * grid * grid)] * 8  # the share, exactly, in every image
    assert len({tuple(m.flatten().tolist()) for m in zeros > 0}) == 8  # drawn for each image


def test_masked_with_ratio_0_changes_nothing_and_a_smaller_phase_keeps_its_shape():
    from aeframe_builtins.techniques.corrupt_inputs import PatchMask

    x = _images()
    assert torch.equal(PatchMask(torch.nn.Identity(), 0.0, 4).train()(x), x)
    # Progressive resizing's first phase may be smaller than the patch grid fits: cut at the edge.
    small = _images(side=18)
    masked = PatchMask(torch.nn.Identity(), 0.5, 4).train()(small)
    assert masked.shape == small.shape and 0 < float((masked == 0).float().mean()) < 0.7


@pytest.mark.parametrize("patch, message", [
    (5, "patch=5 does not divide the 32x32 images into whole patches"),
    (64, "patch=64 is bigger than the 32x32 images"),
])
def test_masked_refuses_a_patch_that_does_not_fit_the_images(registry, patch, message):
    technique = registry.techniques["masked"]
    with pytest.raises(ValueError, match=message):
        technique.check_shape({"ratio": 0.5, "patch": patch}, (3, 32, 32))
    technique.check_shape({"ratio": 0.5, "patch": 7}, (1, 28, 28))


# -- vae and vq-vae ---------------------------------------------------------------------------------


def test_the_vae_returns_its_kl_term_weighted_by_beta_while_training_only(registry):
    x = _images()
    # Built from the same seed: the same weights, but for beta.
    one, four = build("vae[latent=4]", registry).model.train(), build("vae[beta=4,latent=4]", registry).model.train()
    assert four.encoder[-1].out_channels == 8  # a mean and a log-variance per latent channel
    torch.manual_seed(1)
    out = one(x)
    assert isinstance(out, ModelOutput) and out.image.shape == x.shape and set(out.terms) == {"kl"}
    assert out.terms["kl"].item() > 0 and 0 <= out.image.min().item() and out.image.max().item() <= 1
    torch.manual_seed(1)
    assert four(x).terms["kl"].item() == pytest.approx(4 * out.terms["kl"].item(), rel=1e-5)
    evaluated = one.eval()(x)
    assert evaluated.terms == {} and torch.equal(evaluated.image, one(x).image)  # the mean, not a sample


def test_the_vq_vae_decodes_codewords_and_returns_its_two_terms_while_training_only(registry):
    model = build("vq-vae[codes=16,commitment=0.5]", registry).model
    assert model.quantise.codebook.weight.shape == (16, 8)
    x = _images()
    out = model.train()(x)
    assert isinstance(out, ModelOutput) and out.image.shape == x.shape
    assert set(out.terms) == {"codebook", "commitment"} and out.terms["codebook"].item() > 0
    # The same squared distance, one side held fixed in each: only the weight differs.
    assert out.terms["commitment"].item() == pytest.approx(0.5 * out.terms["codebook"].item(), rel=1e-5)
    z = model.encoder(x)
    quantised, _ = model.quantise(z)
    codewords = model.quantise.codebook.weight
    vectors = quantised.detach().permute(0, 2, 3, 1).reshape(-1, 8)
    assert (vectors[:, None] - codewords[None]).abs().amax(2).min(1).values.max() < 1e-6  # each one a codeword
    assert model.eval()(x).terms == {}


def test_the_vq_vaes_gradient_passes_straight_through_the_quantiser(registry):
    quantise = build("vq-vae", registry).model.quantise
    z = torch.randn(2, 8, 2, 2, requires_grad=True)
    quantised, _ = quantise(z)
    quantised.sum().backward()
    assert torch.equal(z.grad, torch.ones_like(z))


@pytest.mark.parametrize("name", ["vae", "vq-vae"])
def test_the_vaes_refuse_sides_that_are_not_multiples_of_4(registry, name):
    technique = registry.techniques[name]
    params = {p.name: p.default for p in technique.params}
    with pytest.raises(ValueError, match="30x30 images' sides are not multiples of 4"):
        technique.check_shape(params, (3, 30, 30))
    technique.check_shape(params, (1, 28, 28))


# -- through the command line -----------------------------------------------------------------------


@pytest.mark.parametrize("technique, terms", [
    ("l1-loss", {"reconstruction"}), ("denoising[noise=0.2]", {"reconstruction"}),
    ("masked[ratio=0.25,patch=8]", {"reconstruction"}), ("vae[beta=0.5]", {"reconstruction", "kl"}),
    ("vq-vae[codes=16]", {"reconstruction", "codebook", "commitment"}),
])
def test_bench_trains_a_cell(cli, tmp_path, technique, terms):
    # fp32 given: the precision probe would measure again on a machine busy with other tests.
    result = cli("bench", "-t", technique, "-d", TINY_SHAPES, "--epochs", "1", "--no-channels-last",
                 "--precision", "fp32", "--store", "r.sqlite", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    with Store(tmp_path / "r.sqlite", write=False) as store:
        (record,) = store.records()
    assert record.status == "done", record.error
    assert record.metrics and all(math.isfinite(v) for v in record.metrics.values())
    assert 0 < record.metrics["mse"] < 1
    assert set(record.curve[-1]["terms"]) == terms


@pytest.mark.parametrize("technique, message", [
    ("denoising[noise=-0.1]", "technique denoising: noise=-0.1: give a standard deviation of 0 or more"),
    ("denoising[noise=nan]", "technique denoising: noise=nan: give a standard deviation of 0 or more"),
    ("masked[ratio=1]", "technique masked: ratio=1 is outside [0, 1)"),
    ("masked[patch=0]", "technique masked: patch=0: a patch is at least 1 pixel"),
    ("masked[patch=5]", "technique masked on dataset shapes[train=256,test=64] (3x32x32): patch=5 does not divide"),
    ("vae[beta=-1]", "technique vae: beta=-1: give a weight of 0 or more"),
    ("vae[latent=0]", "technique vae: latent=0: the latent needs at least 1 channel"),
    ("vq-vae[codes=0]", "technique vq-vae: codes=0: give 1 or more"),
    ("vq-vae[commitment=inf]", "technique vq-vae: commitment=inf: give a weight of 0 or more"),
    ("l1-loss[scale=2]", "technique l1-loss: unknown parameter 'scale'; it accepts: no parameters"),
])
def test_bad_parameters_are_refused_in_one_line_naming_the_technique(cli, tmp_path, technique, message):
    result = cli("bench", "-t", technique, "-d", TINY_SHAPES, "--precision", "fp32", "--store", "r.sqlite",
                 cwd=tmp_path)
    assert result.returncode == 2
    # Above it, only click's usage hint.
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("Error: ")]
    assert message in line and line == result.stderr.strip().splitlines()[-1]
    assert "Traceback" not in result.stderr and not (tmp_path / "r.sqlite").exists()


@pytest.mark.parametrize("technique", ["l1-loss", "denoising[noise=0.3]", "masked[ratio=0.75,patch=8]",
                                       "vae[beta=2,latent=4]", "vq-vae[codes=8,dim=4]"])
def test_validate_passes(cli, tmp_path, technique):
    result = cli("validate", technique, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = [line for line in result.stdout.splitlines() if line.startswith(("PASS ", "FAIL ", "SKIP "))]
    assert len(lines) == 7 and all(line.startswith("PASS ") for line in lines), lines


def test_each_is_registered_as_a_built_in_with_its_title_and_declares_cuda_graphs(registry):
    titles = {name: registry.techniques[name].title for name in MODERN}
    assert titles == {"l1-loss": "L1 Loss", "denoising": "Denoising", "masked": "Masked Patches", "vae": "VAE",
                      "vq-vae": "VQ-VAE"}
    assert all(registry.plugin_of("technique", name).builtin for name in MODERN)
    assert all(registry.techniques[name].cuda_graphs for name in MODERN)
    assert all(registry.techniques[name].base == "baseline" for name in MODERN)
