"""Progressive Resizing (seed-protocol.md section 2.4): train small first, then at full size.

The study built the full Baseline from the start and changed no parameters between its runs: the
first one-cycle run trained on 16x16 images with the last upsampling block at scale 1 (so the model
output 16x16), the second on 32x32 with that block back at x2, weights and optimizer kept. Here the
same happens to any model whose upsampling modules have an integer ``scale`` attribute (the
built-in decoders' do): ``sizes`` gives the image side of each phase of the schedule, so the phases
keep their share of the budget (1/3 and 2/3 of it for the study's 5 + 10 epochs). The study's
second-run rate for this technique is declared data (1.74e-4 on the MNIST family, 1e-3 elsewhere).
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
    """Shrink the output by ``factor`` (a power of two) by setting the last blocks' scale to 1."""
    blocks = rescalable(model)
    if not hasattr(model, "_full_scales"):
        model._full_scales = [b.scale for b in blocks]
    halvings = factor.bit_length() - 1
    if halvings > len(blocks):
        raise ValueError(
            f"{NAME} needs {halvings} upsampling blocks with a settable scale to shrink the output "
            f"{factor}x, but the model has {len(blocks)}"
        )
    for i, (block, full) in enumerate(zip(blocks, model._full_scales)):
        block.scale = 1 if i >= len(blocks) - halvings else full


def _resizing(previous: Callable[[nn.Module], None] | None, factor: int) -> Callable[[nn.Module], None]:
    def on_start(model: nn.Module) -> None:
        if previous is not None:
            previous(model)
        _set_scales(model, factor)

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
            phase.on_start = _resizing(phase.on_start, factor)
        return schedule


@hookimpl
def register_techniques(register: Callable[..., None]) -> None:
    """Register ``progressive-resizing``."""
    register(ProgressiveResizing())
