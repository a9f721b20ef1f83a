"""Evaluation on the test split: eval mode, no augmentation, every registered metric."""
from __future__ import annotations

import time
from typing import Sequence

import torch
from torch import nn

from aeframe.cells.samples import Samples, sample_indices
from aeframe.contract.metric import Metric
from aeframe.contract.output import reconstruction
from aeframe.contract.technique import CellContext
from aeframe.data.splits import EVAL_BATCH, DeviceSplit, to_unit
from aeframe.speed.step import synchronize


@torch.no_grad()
def evaluate(
    model: nn.Module,
    data: DeviceSplit,
    metrics: Sequence[Metric],
    context: CellContext,
    size: int | None = None,
) -> tuple[dict[str, float], float]:
    """Metric values and the test MSE (the training curve's measure) of ``model`` on ``data``.

    ``metrics`` are this cell's own (from :meth:`aeframe.training.metric_set.MetricSet.for_cell`, never the
    registered ones): they are started here, so two cells evaluated at once must not share them.

    ``size`` evaluates on a resized view (a phase that trains at a smaller size is measured there).
    The model is put back in training mode afterwards.
    """
    was_training = model.training
    model.eval()
    for metric in metrics:
        metric.start(context)
    squared = torch.zeros((), dtype=torch.float64, device=data.device)
    count = 0
    try:
        for images, labels in data.batches(EVAL_BATCH, size):
            recon = reconstruction(model(images)).float()
            squared += (recon - images).square().sum(dtype=torch.float64)
            count += images.numel()
            for metric in metrics:
                metric.update(recon, images, labels)
    finally:
        model.train(was_training)
    return {m.name: m.result() for m in metrics}, float(squared) / max(count, 1)


def timed_evaluate(
    model: nn.Module,
    data: DeviceSplit,
    metrics: Sequence[Metric],
    context: CellContext,
    size: int | None = None,
) -> tuple[dict[str, float], float, float]:
    """:func:`evaluate` plus its device-synchronised duration in seconds."""
    synchronize(context.device)
    start = time.perf_counter()
    values, mse = evaluate(model, data, metrics, context, size)
    synchronize(context.device)
    return values, mse, time.perf_counter() - start


def capture_samples(model: nn.Module, split: DeviceSplit, size: int | None = None) -> Samples:
    """Reconstruct the sample images with ``model`` in eval mode (at ``size``, as it was evaluated)."""
    indices = sample_indices(split.labels)
    originals = split.view(size)[torch.tensor(indices, device=split.device, dtype=torch.long)]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            recon = reconstruction(model(to_unit(originals))).float()
    finally:
        model.train(was_training)
    recon = recon.clamp(0, 1).mul(255).round().to(torch.uint8)
    return Samples(indices, originals.cpu(), recon.cpu())
