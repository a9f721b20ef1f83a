"""The study's protocol pieces and the Baseline, against the numbers in seed-protocol.md."""
import math

import pytest
import torch
from torch import nn

from aeframe.contract import protocol
from aeframe.contract.schedule import Phase, Schedule
from aeframe.training.train import _Phases
from aeframe_builtins.techniques.layers import baseline_autoencoder as BaselineAE


def test_baseline_has_the_studys_parameter_count_and_shapes():
    model = BaselineAE((3, 32, 32))
    assert sum(p.numel() for p in model.parameters()) == 3_080_629
    assert sum(p.numel() for p in model.encoder.parameters()) == 1_540_060
    assert sum(p.numel() for p in model.decoder.parameters()) == 1_540_569
    assert model.encoder[-1].out_features == 1000
    out = model(torch.rand(4, 3, 32, 32) * 3 - 1)
    assert out.shape == (4, 3, 32, 32) and out.min() >= 0 and out.max() <= 1


def test_baseline_native_mnist_view():
    out = BaselineAE((1, 28, 28))(torch.rand(2, 1, 28, 28))
    assert out.shape == (2, 1, 28, 28)


def test_baseline_refuses_shapes_it_cannot_mirror():
    with pytest.raises(ValueError, match="side divisible by 4"):
        BaselineAE((3, 30, 30))


def test_one_cycle_matches_fastai_v1_endpoints():
    lr = 1e-3
    assert protocol.one_cycle_lr(0.0, lr) == pytest.approx(lr / 25)
    assert protocol.one_cycle_lr(0.3, lr) == pytest.approx(lr)
    assert protocol.one_cycle_lr(1.0, lr) == pytest.approx(lr / 25 / 1e4)
    # Half-way through warm-up the cosine is half-way between its ends.
    assert protocol.one_cycle_lr(0.15, lr) == pytest.approx((lr / 25 + lr) / 2)
    assert protocol.one_cycle_beta1(0.0) == pytest.approx(0.95)
    assert protocol.one_cycle_beta1(0.3) == pytest.approx(0.85)
    assert protocol.one_cycle_beta1(1.0) == pytest.approx(0.95)


def test_adamw_settings_decay_every_parameter():
    model = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
    opt = protocol.adamw([{"params": list(model.parameters()), "lr": 1e-3}])
    group = opt.param_groups[0]
    assert isinstance(opt, torch.optim.AdamW)
    assert group["betas"] == (0.9, 0.99) and group["eps"] == 1e-8 and group["weight_decay"] == 1e-2
    assert len(group["params"]) == 4  # BatchNorm weight and bias decay too, as fastai's bn_wd=True


def test_study_schedule_is_five_then_ten_of_fifteen():
    schedule = protocol.study_schedule(second_lr=1e-3)
    assert [p.fraction for p in schedule.phases] == pytest.approx([1 / 3, 2 / 3])
    assert [p.lrs() for p in schedule.phases] == [[3e-3], [1e-3]]
    assert schedule.batch_size == 128 and not schedule.phases[1].fresh_optimizer
    # 15 epochs of 468 steps: run 2 starts at step 5 * 468 exactly.
    assert schedule.locate(5 * 468 / (15 * 468) - 1e-9)[0] == 0
    assert schedule.locate(5 * 468 / (15 * 468)) == (1, 0.0)
    assert schedule.locate(1.0) == (1, 1.0)


def test_schedule_fractions_must_cover_the_budget():
    with pytest.raises(ValueError, match="sum to 1"):
        Schedule(phases=[Phase(0.5, 1e-3)], make_optimizer=protocol.adamw, lr_at=protocol.one_cycle_lr)


def test_optimizer_state_is_kept_between_phases_unless_fresh():
    model = nn.Linear(3, 3)
    keep = protocol.study_schedule()
    state = _Phases(keep, model)
    state.enter(0)
    first = state.optimizer
    state.enter(1)
    assert state.optimizer is first
    state.schedule = protocol.study_schedule(fresh_optimizer=True)
    state.enter(1)
    assert state.optimizer is not first


def test_per_group_learning_rates_follow_their_own_cycle():
    model = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2))
    schedule = protocol.study_schedule(
        second_lr=(1e-6, 1e-2), fresh_optimizer=True, param_groups=lambda m: [list(m[0].parameters()), list(m[1].parameters())]
    )
    state = _Phases(schedule, model)
    state.enter(1)
    state.set_rates(0.3)
    assert [g["lr"] for g in state.optimizer.param_groups] == pytest.approx([1e-6, 1e-2])
    assert state.optimizer.param_groups[0]["betas"] == pytest.approx((0.85, 0.99))


def _bright_spot() -> torch.Tensor:
    x = torch.full((400, 3, 8, 8), 0.2)
    x[:, :, 0, 1] = 0.9
    return x


def test_augmentation_draws_all_eight_dihedral_views_and_is_seeded():
    x = _bright_spot()
    out = protocol.dihedral_lighting(x, torch.Generator().manual_seed(0))
    positions = {divmod(int(img[0].argmax()), 8) for img in out}
    assert positions == {(0, 1), (1, 0), (0, 6), (6, 0), (7, 1), (1, 7), (7, 6), (6, 7)}
    again = protocol.dihedral_lighting(x, torch.Generator().manual_seed(0))
    assert torch.equal(out, again)


def test_lighting_is_the_logit_space_brightness_and_contrast():
    x = _bright_spot()
    out = protocol.dihedral_lighting(x, torch.Generator().manual_seed(1))
    background = out[:, 0].amin(dim=(1, 2))  # the 0.2 pixels after lighting
    untouched = torch.isclose(background, torch.tensor(0.2), atol=1e-6)
    # Neither transform applied has probability 0.25 * 0.25; some images must stay as they were.
    assert 0 < untouched.sum() < 60
    logit = torch.log(background / (1 - background))
    base = math.log(0.2 / 0.8)
    # brightness adds logit(U(0.4, 0.6)) in [-0.405, 0.405]; contrast scales by [0.8, 1.25].
    lo, hi = (base - 0.406) * 1.25, (base + 0.406) * 0.8
    assert logit.min() >= lo - 1e-4 and logit.max() <= hi + 1e-4


def test_imagenet_normalisation_of_the_input():
    norm = protocol.ImageNetNormalize(3)
    x = torch.tensor(protocol.IMAGENET_MEAN).view(1, 3, 1, 1).expand(1, 3, 2, 2)
    assert torch.allclose(norm(x), torch.zeros(1, 3, 2, 2), atol=1e-6)
    assert protocol.ImageNetNormalize(1)(torch.full((1, 1, 2, 2), 0.449)).abs().max() < 1e-3
