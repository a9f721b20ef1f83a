"""A short real training of a technique on the tiny dataset, for the loss and determinism checks.

It runs aeframe's own training loop (phases, optimizers, augmentation, image sizes) with the
technique's schedule at a small batch, for one epoch of the tiny dataset, on the CPU.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from aeframe.cells.budget import Budget
from aeframe.contract.output import training_loss
from aeframe.data.splits import on_device, to_unit
from aeframe.planning.composition import Composition
from aeframe.training.cell import seed_everything
from aeframe.training.events import CellEvents
from aeframe.training.train import train
from aeframe.validate.setting import Setting

BATCH = 16  # 256 tiny images make 16 steps of 16
MEASURE = 32  # test images in the fixed batch the loss is measured on


@dataclass
class ShortRun:
    steps: int
    batch: int
    before: float
    after: float
    curve: list[tuple[float, float]]
    state: dict[str, torch.Tensor]

    def differences(self, other: "ShortRun") -> list[str]:
        """Why two runs with the same seed are not the same, or nothing when they are."""
        if (self.before, self.after) != (other.before, other.after):
            return [f"two runs with seed 0 gave losses {self.before:.6g} -> {self.after:.6g} and "
                    f"{other.before:.6g} -> {other.after:.6g}; draw every random number from torch's seeded "
                    "generators"]
        if self.curve != other.curve:
            return [f"two runs with seed 0 gave the curves {self.curve} and {other.curve}"]
        differ = [k for k in self.state if k not in other.state or not torch.equal(self.state[k], other.state[k])]
        if differ:
            return [f"two runs with seed 0 ended with different values of {', '.join(differ[:3])}"]
        return []


def _loss_on(model, loss_fn, images: torch.Tensor) -> float:
    """The training loss on ``images`` as a training step sees it, leaving the model and generators as they were.

    Training mode, not eval: eval would count the drift of batch-norm statistics as learning.
    """
    buffers = {name: b.clone() for name, b in model.named_buffers()}
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(0)  # the same draws before and after, for models that add noise when training
        model.train()
        loss = float(training_loss(loss_fn, model(images), images)[0])
        for name, b in model.named_buffers():
            b.copy_(buffers[name])
    return loss


def short_run(composition: Composition, setting: Setting, seed: int = 0) -> ShortRun:
    """Build with ``seed``, measure the loss on a fixed test batch, train one tiny epoch, measure again."""
    seed_everything(seed)
    context = setting.tiny_context(seed)
    built = composition.build(context)
    schedule = replace(built.schedule, batch_size=min(BATCH, built.schedule.batch_size))
    data = on_device(setting.tiny_data(), context.device)
    fixed = to_unit(data.test.images[:MEASURE])
    before = _loss_on(built.model, built.loss, fixed)
    generator = torch.Generator().manual_seed(seed)
    events = CellEvents(built.actors, built.model, context.device)
    result = train(built.model, built.loss, schedule, data.train, data.test, Budget(epochs=1), context, generator,
                   events=events)
    if result.diverged:
        raise FloatingPointError(result.diverged)
    after = _loss_on(built.model, built.loss, fixed)
    curve = [(point["train_loss"], point["test_mse"]) for point in result.curve]
    state = {k: v.detach().clone() for k, v in built.model.state_dict().items()}
    return ShortRun(result.steps, schedule.batch_size, before, after, curve, state)
