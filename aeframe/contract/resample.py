"""How images are resized: aeframe's half-pixel bilinear resize, or the affine-grid path of fastai v1
that the study's notebooks went through.

A dataset plugin offers the choice as its ``resample`` parameter (:data:`RESAMPLE_PARAM`), makes its
own views with :func:`dataset_view`, and hands the choice on in ``ImageData.resample`` so that the
runner makes every other size (progressive resizing's 16 px) the same way. docs/protocol.md measures
how far apart the two are.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from aeframe.contract.params import Param

if TYPE_CHECKING:
    import torch

HALF_PIXEL = "half-pixel"
FASTAI_V1 = "fastai-v1"
METHODS = (HALF_PIXEL, FASTAI_V1)

RESAMPLE_PARAM = Param(
    "resample",
    str,
    HALF_PIXEL,
    "half-pixel: bilinear with pixel centres mapped to pixel centres; fastai-v1: the study's affine grid "
    "(linspace(-1, 1, W) through grid_sample), which stretches by W/(W-1) and also passes every "
    "training image through the grid at its own size",
    choices=METHODS,
)

_CHUNK = 4096  # images resized at once: bounds the float copy's memory


def resize_uint8(images: torch.Tensor, size: int, method: str = HALF_PIXEL) -> torch.Tensor:
    """uint8 (N, C, H, W) images resized to ``size`` x ``size`` by ``method``, rounded back to uint8.

    ``half-pixel`` is torch's bilinear ``interpolate`` (``align_corners=False``, no antialiasing); at the
    images' own size it returns them unchanged. ``fastai-v1`` samples them on fastai v1's grid: output
    coordinates ``linspace(-1, 1, size)`` through ``grid_sample`` (bilinear, reflection padding, torch's
    default ``align_corners=False``), which is not the identity even at the images' own size.

    Args:
        images: uint8 images, (N, C, H, W), on any device.
        size: The side of the square output, in pixels.
        method: ``"half-pixel"`` (the default) or ``"fastai-v1"``.

    Returns:
        uint8 images (N, C, size, size) on the same device; ``images`` itself where ``half-pixel`` keeps
            their size.

    Raises:
        ValueError: For a ``method`` other than those two.
    """
    import torch

    if method not in METHODS:
        raise ValueError(f"unknown resample method {method!r}; choose one of {', '.join(METHODS)}")
    if method == HALF_PIXEL and images.shape[-1] == size and images.shape[-2] == size:
        return images
    resize = _half_pixel if method == HALF_PIXEL else _affine_grid
    out = torch.empty((images.shape[0], images.shape[1], size, size), dtype=torch.uint8, device=images.device)
    for start in range(0, images.shape[0], _CHUNK):
        resized = resize(images[start : start + _CHUNK].float(), size)
        out[start : start + _CHUNK] = resized.round_().clamp_(0, 255).to(torch.uint8)
    return out


def dataset_view(images: torch.Tensor, size: int, method: str, training: bool) -> torch.Tensor:
    """A split's images at ``size`` as the chosen pipeline showed them to the model.

    fastai v1 resampled an image whenever its size changed, and a training image also at its own size,
    because the study's dihedral transform was an affine matrix applied through the same grid. The
    grid is symmetric, so flipping after sampling equals sampling the flipped image: the exact flips of
    aeframe's augmentation on the sampled image give fastai's result, and the sampling can be done once.

    Args:
        images: The split's uint8 images, (N, C, H, W).
        size: The side of the square view, in pixels.
        method: The dataset's resampling method, ``"half-pixel"`` or ``"fastai-v1"``.
        training: True for the training split (which ``fastai-v1`` resamples even at its own size).

    Returns:
        uint8 images (N, C, size, size): ``images`` itself where nothing is resampled, else
            :func:`resize_uint8`'s.
    """
    if images.shape[-1] == size and not (method == FASTAI_V1 and training):
        return images
    return resize_uint8(images, size, method)


def _half_pixel(images: torch.Tensor, size: int) -> torch.Tensor:
    from torch.nn import functional as F

    return F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False, antialias=False)


def _affine_grid(images: torch.Tensor, size: int) -> torch.Tensor:
    import torch
    from torch.nn import functional as F

    # fastai v1 first area-averaged an image it shrank by more than half, so that bilinear sampling
    # skips no pixels; the study's sizes (28 -> 32, 32 -> 16) never do.
    factor = min(images.shape[-2:]) / size / 2
    if factor > 1:
        images = F.interpolate(images, scale_factor=1 / factor, mode="area")
    points = torch.linspace(-1, 1, size, device=images.device) if size > 1 else torch.tensor([-1.0], device=images.device)
    ys, xs = torch.meshgrid(points, points, indexing="ij")
    grid = torch.stack((xs, ys), dim=-1).expand(images.shape[0], size, size, 2)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
