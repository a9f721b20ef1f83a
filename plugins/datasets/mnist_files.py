"""Reading the MNIST family's IDX files into tensors, and the study's 32x32 RGB view of the images.

Imported only when a dataset of the family is loaded: it needs numpy and torch, which registering
the datasets must not import.
"""
from __future__ import annotations

import gzip
import math
import zlib
from pathlib import Path

import numpy as np
import torch

from aeframe import RESAMPLE_PARAM, DatasetUnavailable, dataset_view
from aeframe_builtins.datasets.memory import beyond_memory

IMAGES_MAGIC = 2051  # 0x00000803: unsigned bytes, 3 dimensions
LABELS_MAGIC = 2049  # 0x00000801: unsigned bytes, 1 dimension


def read_idx(path: Path, magic: int, refetch_hint: str = "") -> np.ndarray:
    """The array stored in an IDX file of unsigned bytes (gzipped if the name ends in ``.gz``).

    Raises :class:`DatasetUnavailable` naming ``path`` when the file is unreadable, truncated or
    not the expected kind (``magic`` 2051 for images, 2049 for labels); ``refetch_hint`` is
    appended to that message to say how to fetch the file again.
    """
    hint = f"; {refetch_hint}" if refetch_hint else ""
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    try:
        with (gzip.open(path, "rb") if path.suffix == ".gz" else path.open("rb")) as f:
            head = f.read(header)
            if len(head) < header:
                raise DatasetUnavailable(f"{path} is truncated ({len(head)} bytes, no complete IDX header){hint}")
            found = int.from_bytes(head[:4], "big")
            if found != magic:
                raise DatasetUnavailable(
                    f"{path} is not an IDX file of the expected kind (magic {found}, expected {magic}){hint}"
                )
            dims = tuple(int.from_bytes(head[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
            # Python's integers: a product of 32-bit dimensions must not wrap around as int64 would.
            declared = math.prod(dims)
            if path.suffix != ".gz" and path.stat().st_size != header + declared:
                raise DatasetUnavailable(_corrupt(path, path.stat().st_size, dims, header + declared, hint))
            # Before reading: a header may announce far more than this machine holds (and a .gz file's
            # real size is known only by inflating it).
            too_large = beyond_memory(f"{path} (its header says {'x'.join(map(str, dims))})", declared)
            if too_large:
                raise DatasetUnavailable(f"{too_large}{hint}")
            body = f.read(declared + 1)  # one byte more than announced tells a longer file
    except (OSError, EOFError, zlib.error) as exc:
        raise DatasetUnavailable(f"cannot read {path} ({exc}){hint}") from exc
    if len(body) != declared:
        raise DatasetUnavailable(_corrupt(path, header + len(body), dims, header + declared, hint))
    return np.frombuffer(body, dtype=np.uint8).reshape(dims)


def _corrupt(path: Path, size: int, dims: tuple[int, ...], expected: int, hint: str) -> str:
    more = "+" if size > expected else ""
    return f"{path} is truncated or corrupt ({size}{more} bytes, its header {dims} needs {expected}){hint}"


def read_split(images_path: Path, labels_path: Path, classes: int, hint: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (N, 1, 28, 28) uint8 and labels (N,) int64 from an IDX pair holding ``classes`` classes.

    Raises :class:`DatasetUnavailable` naming the file that does not fit, followed by ``hint``.
    """
    images = read_idx(images_path, IMAGES_MAGIC, hint)
    labels = read_idx(labels_path, LABELS_MAGIC, hint)
    if images.shape[1:] != (28, 28):
        raise DatasetUnavailable(f"{images_path} holds {images.shape[1:]} images, expected 28x28; {hint}")
    if labels.shape[0] != images.shape[0]:
        raise DatasetUnavailable(
            f"{labels_path} has {labels.shape[0]} labels but {images_path} has {images.shape[0]} images; {hint}"
        )
    if labels.size and int(labels.max()) >= classes:
        raise DatasetUnavailable(f"{labels_path} holds labels above {classes - 1}; {hint}")
    # frombuffer views are read-only; copy so that callers own writable tensors.
    return torch.from_numpy(images.copy()).unsqueeze(1), torch.from_numpy(labels.astype(np.int64))


def to_study_view(images: torch.Tensor, method: str = RESAMPLE_PARAM.default, training: bool = False) -> torch.Tensor:
    """(N, 1, 28, 28) uint8 → (N, 3, 32, 32) uint8: bilinear resize by ``method``, grey replicated to RGB.

    This is the study's convention, so that MNIST-family models share the 32x32 RGB shape of CIFAR-10.
    """
    return dataset_view(images, 32, method, training).repeat(1, 3, 1, 1)
