"""Contract checks on a technique (or a ``+`` combination) as ``-t`` takes it.

In order: parameters; the model builds for every image shape a registered dataset yields; its output
has the input's shape and sane values; one backward of the loss reaches every trainable parameter;
the schedule covers epoch and time budgets; a short real training lowers the loss; and a second
run with the same seed repeats the first exactly. A technique that cannot run here
(``TechniqueUnavailable``) is skipped with its reason.
"""
from __future__ import annotations

import math
from typing import Iterator

import torch
from torch import nn

from aeframe.contract.output import reconstruction, training_loss
from aeframe.contract.technique import TechniqueUnavailable
from aeframe.data.splits import to_unit
from aeframe.errors import CompositionError, describe
from aeframe.planning.composition import BuiltCell, Composition
from aeframe.planning.plan import resolve_technique
from aeframe.training.cell import seed_everything
from aeframe.validate.params import param_problems
from aeframe.validate.report import FAIL, SKIP, Check, listed, verdict
from aeframe.validate.schedule import schedule_problems
from aeframe.validate.setting import Setting
from aeframe.validate.shapes import dataset_shapes, shape_text
from aeframe.validate.training import short_run

# Outputs are meant to lie in [0, 1]. An untrained model without a final clamp may stray a little,
# but a value beyond this band for inputs in [0, 1] means the model works in other units (0-255,
# normalised, logits).
OUTPUT_LOW, OUTPUT_HIGH = -1.0, 2.0
GRAD_BATCH = 8
# The loss must fall by at least this share in the short run, so that rounding cannot pass for learning.
MIN_DROP = 0.01


def technique_checks(text: str, setting: Setting) -> Iterator[Check]:
    composition = resolve_technique(text, setting.registry)
    yield _params_check(text, composition)
    shapes = dataset_shapes(setting)
    try:
        composition.check_schedule(setting.tiny_context())
        for dataset_text, shape in shapes:
            composition.check_model(setting.context(shape, dataset_text))
    except CompositionError as exc:
        # One finding, not the same one again under every check that builds the cell.
        yield Check("technique", text, "its techniques combine", FAIL, str(exc))
        return
    built: dict[str, BuiltCell] = {}
    failures = []
    for dataset_text, shape in shapes:
        try:
            built[dataset_text] = _build(composition, setting, dataset_text, shape)
        except TechniqueUnavailable as exc:
            yield Check("technique", text, "cannot run here", SKIP, str(exc))
            return
        except Exception as exc:  # any plugin error here is exactly what the check reports
            failures.append(f"{shape_text(dataset_text, shape)}: {describe(exc)}")
    texts = [shape_text(d, s) for d, s in shapes]
    listing = " and ".join(texts) if len(texts) < 3 else f"{', '.join(texts[:-1])} and {texts[-1]}"
    yield verdict("technique", text, f"model builds for {listing}", failures)
    outputs = {d: _output_problems(built[d].model, d, s) for d, s in shapes if d in built}
    yield verdict("technique", text, "output has the input's shape and is finite, within "
                  f"[{OUTPUT_LOW:g}, {OUTPUT_HIGH:g}] for inputs in [0, 1]", [p for ps in outputs.values() for p in ps])
    tiny = shapes[0][0]
    if tiny not in built or outputs[tiny]:
        why = "does not build" if tiny not in built else "gives wrong outputs"
        for what in ("gradients reach every trainable parameter", "schedule covers epoch and time budgets",
                     "a short training lowers the loss", "same seed gives the same numbers"):
            yield Check("technique", text, what, FAIL, f"not run: the model {why} for {tiny}")
        return
    yield verdict("technique", text, "gradients reach every trainable parameter", _gradient_problems(composition, setting))
    yield verdict("technique", text, "schedule covers epoch and time budgets", schedule_problems(built[tiny].schedule))
    yield from _training_checks(text, composition, setting)


def _params_check(text: str, composition: Composition) -> Check:
    problems = []
    for member in composition.members:
        technique = member.technique
        own = param_problems(technique.accepted_params(), technique.check_params)
        problems.extend(f"{technique.name}: {p}" if len(composition.members) > 1 else p for p in own)
    return verdict("technique", text, "parameters have help and valid defaults", problems)


def _build(composition: Composition, setting: Setting, dataset_text: str, shape) -> BuiltCell:
    seed_everything(0)
    if dataset_text == setting.tiny:
        return composition.build(setting.tiny_context())
    return composition.build(setting.context(shape, dataset_text))


def _output_problems(model: nn.Module, dataset_text: str, shape) -> list[str]:
    where = shape_text(dataset_text, shape)
    x = torch.rand((2, *shape), generator=torch.Generator().manual_seed(0))
    model.eval()
    try:
        with torch.no_grad():
            out = reconstruction(model(x))
    except Exception as exc:  # a model that cannot take its dataset's images, or returns something else
        return [f"{where}: the forward pass raised {describe(exc)}"]
    finally:
        model.train()
    if not isinstance(out, torch.Tensor) or out.shape != x.shape:
        got = tuple(out.shape)[1:] if isinstance(out, torch.Tensor) else type(out).__name__
        return [f"{where}: output has shape {got} for input {tuple(shape)}"]
    out = out.float()
    if not torch.isfinite(out).all():
        return [f"{where}: output has {int((~torch.isfinite(out)).sum())} non-finite values"]
    low, high = float(out.min()), float(out.max())
    if low < OUTPUT_LOW or high > OUTPUT_HIGH:
        return [f"{where}: output spans [{low:.3g}, {high:.3g}]; return images in [0, 1] units"]
    return []


def _gradient_problems(composition: Composition, setting: Setting) -> list[str]:
    seed_everything(0)
    built = composition.build(setting.tiny_context())
    model, loss_fn = built.model, built.loss
    model.train()
    x = to_unit(setting.tiny_data().train.images[:GRAD_BATCH])
    try:
        loss, _ = training_loss(loss_fn, model(x), x)
    except Exception as exc:  # a loss that cannot take the model's output is the finding
        return [f"the loss raised {describe(exc)}"]
    if not isinstance(loss, torch.Tensor) or loss.dim() != 0:
        got = tuple(loss.shape) if isinstance(loss, torch.Tensor) else type(loss).__name__
        return [f"the loss returned {got}, not a scalar tensor"]
    if not loss.requires_grad:
        return ["the loss does not depend on the model's parameters (no graph to backpropagate)"]
    loss.backward()
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    missing = [n for n, p in trainable if p.grad is None or not p.grad.any()]
    broken = [n for n, p in trainable if p.grad is not None and not torch.isfinite(p.grad).all()]
    problems = [f"{name}'s wrap_loss never calls the loss it wraps (a technique that replaces the loss provides it "
                "with build_loss)" for name in built.unused_losses()]
    if missing:
        problems.append(f"{len(missing)} of {len(trainable)} parameters got no gradient ({listed(missing)})")
    if broken:
        problems.append(f"{len(broken)} parameters got non-finite gradients ({listed(broken)})")
    return problems


def _training_checks(text: str, composition: Composition, setting: Setting) -> Iterator[Check]:
    try:
        first = short_run(composition, setting)
    except Exception as exc:  # training that crashes fails both checks with the same reason
        reason = f"training raised {describe(exc)}"
        yield Check("technique", text, "a short training lowers the loss", FAIL, reason)
        yield Check("technique", text, "same seed gives the same numbers", FAIL, f"not run: {reason}")
        return
    what = f"a short training lowers the loss ({first.steps} steps of {first.batch} on {setting.tiny})"
    drop = 1 - first.after / first.before if first.before > 0 else 0.0
    if not (math.isfinite(first.before) and math.isfinite(first.after)):
        problems = [f"the loss is not finite (before {first.before:.4g}, after {first.after:.4g})"]
    elif drop < MIN_DROP:
        problems = [f"the loss on a fixed batch went from {first.before:.4g} to {first.after:.4g}; "
                    f"it must fall by at least {MIN_DROP:.0%} (check the learning rates and that the optimizer "
                    "gets the model's parameters)"]
    else:
        problems = []
        what += f": {first.before:.4g} -> {first.after:.4g}"
    yield verdict("technique", text, what, problems)
    second = short_run(composition, setting)
    yield verdict("technique", text, "same seed gives the same numbers", first.differences(second))
