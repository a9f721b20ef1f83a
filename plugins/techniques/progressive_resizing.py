"""Progressive Resizing (seed-protocol.md section 2.4): train small first, then at full size.

The study built the full Baseline from the start and changed no parameters between its runs: the
first one-cycle run trained on 16x16 images with the last upsampling block at scale 1 (so the model
output 16x16), the second on 32x32 with that block back at x2, weights and optimizer kept. Here the
same happens to any model whose output keeps its side whatever the input's and whose upsampling
modules have an integer ``scale`` attribute (the built-in decoders' do); a model whose output follows
its input (a fully convolutional one, such as the VAEs') is fed the small images as it is. Which of
the two a model is, is found by running it once on a blank image when a phase starts, and checked
at planning on the meta device (``check_model``). ``sizes`` gives the image side of each phase of
the schedule, so the phases keep their share of the budget (1/3 and 2/3 of it for the study's 5 + 10
epochs). The study's second-run rate for this technique is declared data (1.74e-4 on the MNIST
family, 1e-3 elsewhere).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from aeframe import CellContext, Param, Technique, hookimpl
from aeframe_builtins.techniques.study_rates import declared_rates

if TYPE_CHECKING:
    from torch import nn

    from aeframe import Schedule

NAME = "progressive-resizing"
STUDY_SIZES = (16, 32)


def rescalable(model: nn.Module) -> list[nn.Module]:
    """The model's upsampling modules: those with an integer ``scale`` attribute, in forward order."""
    return [m for m in model.modules() if isinstance(getattr(m, "scale", None), int)]


def _set_scales(model: nn.Module, factor: int) -> None:
    """Shrink the output by ``factor`` (a power of two) by setting the last blocks' scale to 1; factor 1
    puts every block back at its own scale."""
    blocks = rescalable(model)
    if not hasattr(model, "_full_scales"):
        model._full_scales = [b.scale for b in blocks]
    halvings = factor.bit_length() - 1
    if halvings > len(blocks):
        raise ValueError(
            f"the model's output keeps its side whatever the input's; shrinking it {factor}x takes {halvings} "
            f"upsampling block(s) with a settable integer `scale` attribute, and the model has {len(blocks)}"
        )
    for i, (block, full) in enumerate(zip(blocks, model._full_scales)):
        block.scale = 1 if i >= len(blocks) - halvings else full


def output_side(model: nn.Module, channels: int, size: int) -> int:
    """The side of the model's output for ``size`` x ``size`` images: one blank image, without gradients and
    in evaluation mode, so that the probe leaves BatchNorm's statistics and the training state alone."""
    import torch

    from aeframe import ModelOutput

    module = getattr(model, "_orig_mod", model)  # through a compiled model the probe would compile again
    first = next(module.parameters(), None)
    device, dtype = (first.device, first.dtype) if first is not None else (torch.device("cpu"), torch.float32)
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            out = module(torch.zeros(1, channels, size, size, device=device, dtype=dtype))
    finally:
        module.train(was_training)
    image = out.image if isinstance(out, ModelOutput) else out
    return int(image.shape[-1])


def fit_output(model: nn.Module, channels: int, size: int) -> None:
    """Make the model's output ``size`` x ``size`` when it is fed images of that size. A model whose output
    follows its input (a fully convolutional one: the VAEs) is left as it is; one whose output has a fixed
    side (the study's, whose latent is a vector) gets its last upsampling blocks set to scale 1, one per
    halving, as the study did. Raises ``ValueError`` when the output still is not that size, so that the
    phase, not the loss, says why."""
    _set_scales(model, 1)
    out = output_side(model, channels, size)
    if out == size:
        return
    factor = out // size
    if out % size or factor & (factor - 1):
        raise ValueError(f"fed {size}x{size} images, the model's output is {out}x{out}, which no number of "
                         f"halvings makes {size}x{size}")
    _set_scales(model, factor)
    shrunk = output_side(model, channels, size)
    if shrunk != size:
        raise ValueError(f"fed {size}x{size} images, the model's output is {shrunk}x{shrunk} with its last "
                         f"{factor.bit_length() - 1} upsampling block(s) at scale 1: their `scale` attribute "
                         "does not set their upsampling")


def _resizing(previous: Callable[[nn.Module], None] | None, channels: int, size: int,
              side: int) -> Callable[[nn.Module], None]:
    def on_start(model: nn.Module) -> None:
        if previous is not None:
            previous(model)
        try:
            if size == side:
                _set_scales(model, 1)
            else:
                fit_output(model, channels, size)
        except ValueError as exc:
            raise ValueError(f"{NAME}: {exc}") from None

    return on_start


class ProgressiveResizing(Technique):
    name = NAME
    cuda_graphs = True
    title = "Progressive Resizing"
    in_study = True
    description = "trains the first phase on downsized images with the last upsampling skipped, then at full size"
    base = "baseline"
    params = (
        Param(
            "sizes",
            "ints",
            STUDY_SIZES,
            "image side for each phase of the schedule, the last being the dataset's side "
            "(the default 16,32 means half size, then full size, for any dataset)",
        ),
    )
    learning_rates = declared_rates(NAME)

    def check_params(self, params: dict[str, Any]) -> None:
        sizes = params["sizes"]
        if any(s <= 0 for s in sizes) or list(sizes) != sorted(sizes):
            raise ValueError(f"sizes={','.join(map(str, sizes))} must be positive and increasing")

    def check_shape(self, params: dict[str, Any], shape: tuple[int, int, int]) -> None:
        """The sizes must end at the images' side and halve it a whole number of times, or the cell fails."""
        self._sizes(params["sizes"], shape[-1])

    def check_model(self, model: nn.Module, ctx: CellContext) -> None:
        """Each phase's images must come out at their own size: either the model's output follows its
        input, or it has enough upsampling blocks with a settable ``scale`` to shrink it."""
        channels, side = ctx.shape[0], ctx.shape[-1]
        for size in self._sizes(ctx.params["sizes"], side):
            if size == side:
                continue
            try:
                fit_output(model, channels, size)
            except NotImplementedError:
                raise  # an operation without a meta kernel: not the model's fault, and the cell will tell
            except RuntimeError as exc:
                first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                raise ValueError(f"the model cannot take the {size}x{size} images of a phase ({first})") from None

    def _sizes(self, sizes: tuple[int, ...], side: int) -> tuple[int, ...]:
        if sizes == STUDY_SIZES:
            return (side // 2, side)
        shown = ",".join(map(str, sizes))
        if sizes[-1] != side:
            raise ValueError(f"the last of sizes={shown} must be the images' side, {side}")
        for size in sizes:
            factor = side // size
            if size * factor != side or factor & (factor - 1):
                raise ValueError(f"size {size} of sizes={shown} is not the side {side} halved a whole number of times")
        return sizes

    def wrap_schedule(self, schedule: Schedule, ctx: CellContext) -> Schedule:
        """Give each phase its image size, and shrink the model's output to it when the phase starts."""
        side = ctx.shape[-1]
        try:
            sizes = self._sizes(ctx.params["sizes"], side)
        except ValueError as exc:
            raise ValueError(f"{NAME}: {exc}") from None
        if len(sizes) > len(schedule.phases):
            raise ValueError(f"{NAME}: {len(sizes)} sizes for a schedule of {len(schedule.phases)} phases")
        for i, phase in enumerate(schedule.phases):
            size = sizes[min(i, len(sizes) - 1)]
            factor = side // size
            if size * factor != side or factor & (factor - 1):
                raise ValueError(f"{NAME}: size {size} is not the side {side} halved a whole number of times")
            phase.image_size = None if size == side else size
            phase.on_start = _resizing(phase.on_start, ctx.shape[0], size, side)
        return schedule


@hookimpl
def register_techniques(register: Callable[..., None]) -> None:
    """Register ``progressive-resizing``."""
    register(ProgressiveResizing())
