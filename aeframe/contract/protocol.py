"""The study's training protocol, as pieces any technique can reuse (seed-protocol.md sections 0 and 4).

fastai v1 defaults that the study relied on, spelled out: AdamW with betas (0.9, 0.99), eps 1e-8 and
decoupled weight decay 1e-2 on every parameter (BatchNorm and biases included); one-cycle learning
rate and beta1 curves per iteration; ImageNet normalisation of the input only; and the dihedral +
lighting augmentation, applied identically to input and target.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

from aeframe.contract.schedule import Phase, Schedule

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

STUDY_BATCH_SIZE = 128
BETAS = (0.9, 0.99)
EPS = 1e-8
WEIGHT_DECAY = 1e-2
# fastai v1 fit_one_cycle: start at max/25, warm up over 30 % of the run, end at max/(25 * 1e4).
DIV = 25.0
FINAL_DIV = 25.0 * 1e4
PCT_START = 0.3
BETA1_HIGH, BETA1_LOW = 0.95, 0.85
# The study's two back-to-back one-cycle runs: 5 epochs at 3e-3, then 10 at a per-technique rate.
STUDY_EPOCHS = (5, 10)
STUDY_FIRST_LR = 3e-3

def _cos(start: float, end: float, t: float) -> float:
    return end + (start - end) / 2 * (1 + math.cos(math.pi * t))


def one_cycle_lr(q: float, max_lr: float) -> float:
    """Learning rate at progress ``q`` in [0, 1] of one one-cycle run peaking at ``max_lr``.

    Args:
        q: Progress through the run (the phase), from 0 at its start to 1 at its end.
        max_lr: The peak learning rate, reached at 30 % of the run.

    Returns:
        The rate: a cosine from ``max_lr / 25`` up to ``max_lr`` over the first 30 % of the run, then a
            cosine down to ``max_lr / (25 * 1e4)`` at its end.
    """
    if q < PCT_START:
        return _cos(max_lr / DIV, max_lr, q / PCT_START)
    return _cos(max_lr, max_lr / FINAL_DIV, (q - PCT_START) / (1 - PCT_START))


def one_cycle_beta1(q: float) -> float:
    """Adam's beta1 at progress ``q``: 0.95 down to 0.85 during warm-up, then back up to 0.95.

    Args:
        q: Progress through the run (the phase), from 0 at its start to 1 at its end; warm-up is its
            first 30 %.

    Returns:
        beta1 at that progress, following a cosine in each part of the run.
    """
    if q < PCT_START:
        return _cos(BETA1_HIGH, BETA1_LOW, q / PCT_START)
    return _cos(BETA1_LOW, BETA1_HIGH, (q - PCT_START) / (1 - PCT_START))


def adamw(groups: list[dict]) -> torch.optim.Optimizer:
    """fastai v1's Adam with "true" (decoupled) weight decay, which is exactly torch's AdamW.

    Args:
        groups: torch parameter-group dicts (``{"params": [...]}``, optionally with a group's own ``lr``).

    Returns:
        ``torch.optim.AdamW`` with betas (0.9, 0.99), eps 1e-8 and weight decay 1e-2 on every group; its
            learning rate (3e-3 to begin with) is set by the schedule at every step.
    """
    return torch.optim.AdamW(groups, lr=STUDY_FIRST_LR, betas=BETAS, eps=EPS, weight_decay=WEIGHT_DECAY)


def _logit(x: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    x = x.clamp(eps, 1 - eps)
    return torch.log(x / (1 - x))


def dihedral_lighting(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """The study's training augmentation of a batch in [0, 1], one random draw per image.

    A random element of the dihedral group (flips and, for square images, a transpose), then with
    probability 0.75 each a brightness shift (add logit(c), c ~ U(0.4, 0.6)) and a contrast scale
    (multiply by s, log-uniform in (0.8, 1.25)) in logit space, as fastai v1's lighting transforms.

    Args:
        x: A batch of images, float in [0, 1], (N, C, H, W).
        gen: The generator every random draw comes from, on the batch's device (the cell's, for
            reproducible runs).

    Returns:
        The augmented batch, float in [0, 1], of the same shape.
    """
    n, device = x.shape[0], x.device

    def draw(shape=(n,)) -> torch.Tensor:
        return torch.rand(shape, generator=gen, device=device)

    def per_image(mask: torch.Tensor) -> torch.Tensor:
        return mask.view(n, 1, 1, 1)

    x = torch.where(per_image(draw() < 0.5), x.flip(3), x)
    x = torch.where(per_image(draw() < 0.5), x.flip(2), x)
    if x.shape[2] == x.shape[3]:
        x = torch.where(per_image(draw() < 0.5), x.transpose(2, 3), x)

    change = 0.4 + 0.2 * draw()
    brightness = torch.where(draw() < 0.75, _logit(change), torch.zeros_like(change))
    log_lo, log_hi = math.log(0.8), math.log(1.25)
    scale = torch.exp(log_lo + (log_hi - log_lo) * draw())
    contrast = torch.where(draw() < 0.75, scale, torch.ones_like(scale))
    return torch.sigmoid((_logit(x) + per_image(brightness)) * per_image(contrast))


class ImageNetNormalize(nn.Module):
    """Maps a [0, 1] batch to ImageNet statistics; single-channel images use the channel means."""

    def __init__(self, channels: int = 3):
        super().__init__()
        mean, std = torch.tensor(IMAGENET_MEAN), torch.tensor(IMAGENET_STD)
        if channels != 3:
            mean, std = mean.mean().repeat(channels), std.mean().repeat(channels)
        self.register_buffer("mean", mean.view(1, channels, 1, 1), persistent=False)
        self.register_buffer("std", std.view(1, channels, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalise a batch with ImageNet's per-channel mean and standard deviation.

        Args:
            x: A batch of images, float in [0, 1], (N, C, H, W) with the number of channels given at
                construction.

        Returns:
            ``(x - mean) / std`` per channel, of the same shape.
        """
        return (x - self.mean) / self.std


def study_schedule(second_lr: float | Sequence[float] = 1e-3, **second_phase) -> Schedule:
    """The study's two one-cycle runs as a schedule: 5/15 of the budget at 3e-3, 10/15 at ``second_lr``.

    Args:
        second_lr: The second run's peak learning rate, or one per parameter group (with ``param_groups``).
        second_phase (Any): Further :class:`Phase` fields for the second run (``fresh_optimizer``,
            ``on_start``, ``param_groups``...).

    Returns:
        The schedule: AdamW, one-cycle learning-rate and beta1 curves, the dihedral + lighting
            augmentation and batches of 128, in two phases "run 1" and "run 2"; "run 2"'s rate is the one
            ``--lr find`` tests.
    """
    first, second = STUDY_EPOCHS
    total = first + second
    return Schedule(
        phases=[
            Phase(fraction=first / total, max_lr=STUDY_FIRST_LR, name="run 1"),
            # The study chose this rate after an lr_find; `--lr find` reruns that test here.
            Phase(fraction=second / total, max_lr=second_lr, name="run 2", find_lr=True, **second_phase),
        ],
        make_optimizer=adamw,
        lr_at=one_cycle_lr,
        beta1_at=one_cycle_beta1,
        augment=dihedral_lighting,
        batch_size=STUDY_BATCH_SIZE,
    )
