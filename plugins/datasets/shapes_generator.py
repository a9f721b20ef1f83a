"""Drawing the Shapes dataset: one coloured geometric shape per image, over a varied background.

Each image is one coloured geometric shape, of random size, position, slight rotation and colour,
drawn antialiased over a background that is a solid colour, a linear gradient, grey noise or faint
stripes. Everything is drawn from a seeded ``torch.Generator``, so the same parameters give the
same tensors bit for bit (on a given platform and torch version). Imported only when the dataset
is loaded: it needs torch, which registering the dataset must not import.
"""
from __future__ import annotations

import hashlib
import math
from typing import Callable

import torch

from aeframe import Split
from aeframe_builtins.datasets.constants import SHAPES_SIZE as SIZE

# Images are drawn this many at a time: bounds memory, and fixing it keeps the draws reproducible.
CHUNK = 4096
MAX_TILT = math.radians(10)  # small enough that square/diamond and plus/x-cross stay apart

# Pixel centres, shared by every image.
_COORDS = torch.arange(SIZE, dtype=torch.float32) + 0.5


def _box(x: torch.Tensor, y: torch.Tensor, half_w: torch.Tensor, half_h: torch.Tensor) -> torch.Tensor:
    # Chebyshev-style distance: exact on the edges, which is all the antialiasing looks at.
    return torch.maximum(x.abs() - half_w, y.abs() - half_h)


def _circle(x, y, r):
    return torch.hypot(x, y) - 0.85 * r


def _ring(x, y, r):
    return (torch.hypot(x, y) - 0.7 * r).abs() - 0.2 * r


def _square(x, y, r):
    return _box(x, y, 0.7 * r, 0.7 * r)


def _frame(x, y, r):
    return (torch.maximum(x.abs(), y.abs()) - 0.6 * r).abs() - 0.17 * r


def _diamond(x, y, r):
    return (x.abs() + y.abs() - r) / math.sqrt(2)


def _triangle(x, y, r):
    # Equilateral, apex up (image y grows downwards), circumradius r, centred on its centroid.
    return torch.maximum(y, 0.866 * x.abs() - 0.5 * y) - 0.5 * r


def _plus(x, y, r):
    return torch.minimum(_box(x, y, r, 0.28 * r), _box(x, y, 0.28 * r, r))


def _x_cross(x, y, r):
    return _plus((x - y) / math.sqrt(2), (x + y) / math.sqrt(2), r)


def _bar(x, y, r):
    return _box(x, y, r, 0.3 * r)


def _semicircle(x, y, r):
    # The lower half of a disc whose centre sits 0.3r above the image point, flat side up.
    y = y + 0.3 * r
    return torch.maximum(torch.hypot(x, y) - 0.9 * r, -y)


# Signed distance (in pixels, negative inside) of each shape, for coordinates relative to its centre.
SHAPES: dict[str, Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "circle": _circle,
    "ring": _ring,
    "square": _square,
    "frame": _frame,
    "diamond": _diamond,
    "triangle": _triangle,
    "plus": _plus,
    "x-cross": _x_cross,
    "bar": _bar,
    "semicircle": _semicircle,
}
CLASSES = tuple(SHAPES)


def _hsv_to_rgb(h: torch.Tensor, s: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """(n,) hue, saturation, value in [0, 1] → (n, 3) RGB in [0, 1]."""
    k = (torch.tensor([5.0, 3.0, 1.0]) + h[:, None] * 6) % 6
    return v[:, None] * (1 - s[:, None] * torch.minimum(k, 4 - k).clamp(0, 1))


def _split_seed(seed: int, split: str) -> int:
    # Independent streams per (seed, split): the test set is never a prefix or shift of the train set.
    digest = hashlib.sha256(f"aeframe-shapes/{seed}/{split}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


def _draw(labels: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Images (n, 3, 32, 32) uint8 for these labels, drawn from ``gen``."""
    n = labels.shape[0]

    def rand(*shape: int) -> torch.Tensor:
        return torch.rand((n, *shape), generator=gen)

    # Shape geometry: r is the shape's half-extent in pixels; the centre keeps it inside the frame.
    r = 6.0 + 6.5 * rand()
    cx = r + 1 + (SIZE - 2 - 2 * r) * rand()
    cy = r + 1 + (SIZE - 2 - 2 * r) * rand()
    tilt = (2 * rand() - 1) * MAX_TILT

    # Colours: shape and background sit in opposite value bands, so every shape stands out.
    dark_shape = rand() < 0.5
    fg_v = torch.where(dark_shape, 0.05 + 0.35 * rand(), 0.65 + 0.35 * rand())
    bg_v = torch.where(dark_shape, 0.6 + 0.4 * rand(), 0.05 + 0.4 * rand())
    fg = _hsv_to_rgb(rand(), 0.3 + 0.7 * rand(), fg_v)
    bg_h, bg_s = rand(), 0.8 * rand()
    bg = _hsv_to_rgb(bg_h, bg_s, bg_v)
    bg2 = _hsv_to_rgb((bg_h + 0.3 * (rand() - 0.5)) % 1, bg_s, (bg_v + 0.3 * (rand() - 0.5)).clamp(0, 1))

    # Background: 0 solid, 1 linear gradient, 2 grey noise, 3 faint stripes.
    kind = (4 * rand()).long().clamp(max=3)
    direction = 2 * math.pi * rand()
    period = 3.0 + 6.0 * rand()
    phase = 2 * math.pi * rand()
    noise = 0.16 * (rand(1, SIZE, SIZE) - 0.5)

    ys, xs = _COORDS[:, None], _COORDS[None, :]
    # Position along the gradient/stripe direction, in pixels from the image centre.
    along = (xs - SIZE / 2) * direction.cos()[:, None, None] + (ys - SIZE / 2) * direction.sin()[:, None, None]
    ramp = (along / (SIZE * math.sqrt(0.5)) + 0.5).clamp_(0, 1) * (kind == 1)[:, None, None]
    stripes = 0.05 * torch.sin(2 * math.pi * along / period[:, None, None] + phase[:, None, None])
    # Noise and stripes are grey, so they are (n, 1, 32, 32) fields added to every channel.
    texture = torch.where((kind == 2)[:, None, None, None], noise, 0) + (stripes * (kind == 3)[:, None, None])[:, None]
    # Full-size (n, 3, 32, 32) tensors dominate the cost, so they are made with few fused ops.
    background = torch.addcmul(bg[:, :, None, None] + texture, (bg2 - bg)[:, :, None, None], ramp[:, None])

    # Coverage of each pixel by the shape: a one-pixel ramp across the edge antialiases it.
    coverage = torch.zeros((n, SIZE, SIZE))
    for label, distance in enumerate(SHAPES.values()):
        idx = (labels == label).nonzero().squeeze(1)
        if idx.numel() == 0:
            continue
        dx = xs - cx[idx, None, None]
        dy = ys - cy[idx, None, None]
        cos, sin = tilt[idx, None, None].cos(), tilt[idx, None, None].sin()
        u, v = cos * dx + sin * dy, cos * dy - sin * dx
        coverage[idx] = (0.5 - distance(u, v, r[idx, None, None])).clamp(0, 1)

    image = torch.lerp(background, fg[:, :, None, None].expand_as(background), coverage[:, None])
    return image.mul_(255).round_().clamp_(0, 255).to(torch.uint8)


def generate(count: int, seed: int, split: str) -> Split:
    """``count`` labelled images of the given split ("train" or "test") of dataset instance ``seed``.

    Labels are balanced (class counts differ by at most one) and shuffled.
    """
    gen = torch.Generator().manual_seed(_split_seed(seed, split))
    labels = (torch.arange(count) % len(CLASSES))[torch.randperm(count, generator=gen)]
    images = torch.empty((count, 3, SIZE, SIZE), dtype=torch.uint8)
    for start in range(0, count, CHUNK):
        images[start : start + CHUNK] = _draw(labels[start : start + CHUNK], gen)
    return Split(images, labels)
