"""Masked Patches: the masking of masked autoencoders (He et al., 2022) applied to a convolutional model.

The wrapper is :class:`aeframe_builtins.techniques.corrupt_inputs.PatchMask`: while the model trains, a
share of each input's square patches is set to 0, and the loss compares the output with the whole
image, so the model learns to fill the patches in. Evaluation sees whole images. This is not the
ViT MAE (no encoder that skips the hidden patches, no loss on them alone): only its masking.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from aeframe import CellContext, Param, Technique, hookimpl

if TYPE_CHECKING:
    from torch import nn


class MaskedPatches(Technique):
    """Wraps the model: random square patches of each training input set to 0."""

    name = "masked"
    cuda_graphs = True  # the patches are chosen on the device, from torch's generator
    title = "Masked Patches"
    description = "sets a random share of each training input's square patches to 0; the loss sees the whole image"
    base = "baseline"
    params = (Param("ratio", float, 0.5, "share of each training image's patches set to 0, in [0, 1)"),
              Param("patch", int, 4, "side of a square patch, in pixels; it must divide the images' sides"))

    def check_params(self, params: dict[str, Any]) -> None:
        ratio, patch = params["ratio"], params["patch"]
        if not 0 <= ratio < 1:  # nan fails it too
            raise ValueError(f"ratio={ratio:g} is outside [0, 1); give the share of patches to hide")
        if patch < 1:
            raise ValueError(f"patch={patch}: a patch is at least 1 pixel")

    def check_shape(self, params: dict[str, Any], shape: tuple[int, int, int]) -> None:
        patch, (_, height, width) = params["patch"], shape
        if patch > min(height, width):
            raise ValueError(f"patch={patch} is bigger than the {height}x{width} images")
        if height % patch or width % patch:
            raise ValueError(f"patch={patch} does not divide the {height}x{width} images into whole patches")

    def wrap_model(self, model: nn.Module, ctx: CellContext) -> nn.Module:
        from aeframe_builtins.techniques.corrupt_inputs import PatchMask

        return PatchMask(model, ctx.params["ratio"], ctx.params["patch"])


@hookimpl
def register_techniques(register: Callable[..., None]) -> None:
    """Register ``masked``."""
    register(MaskedPatches())
