"""Reading CIFAR-10's python pickled batches into tensors, safely.

The batches are pickles, and unpickling runs whatever a file names; so they are read with an
unpickler that only builds the plain containers and numpy arrays that the real files hold.
Imported only when the dataset is loaded: it needs numpy and torch, which registering the dataset
must not import.
"""
from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch

from aeframe import DatasetUnavailable
from aeframe_builtins.datasets.constants import CIFAR10_ARCHIVE, CIFAR10_HOME

STANDARD_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def _latin1_encode(text: str, encoding: str = "latin1") -> bytes:
    # Python 3 pickles bytes at protocol 2 as _codecs.encode(text, "latin1"); only that use is let in.
    if encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError(f"refusing _codecs.encode with encoding {encoding!r}")
    return text.encode("latin1")


def _allowed_globals() -> dict[tuple[str, str], Any]:
    """What array pickles name: numpy callables under numpy 1's and 2's module paths, and bytes."""
    try:
        from numpy._core import multiarray, numeric
    except ImportError:  # numpy 1.x
        from numpy.core import multiarray, numeric  # type: ignore[no-redef]
    allowed: dict[tuple[str, str], Any] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): _latin1_encode,
    }
    # The official files (numpy 1, Python 2) say numpy.core; numpy 2 writes numpy._core.
    for module in ("numpy.core", "numpy._core"):
        allowed[(f"{module}.multiarray", "_reconstruct")] = multiarray._reconstruct
        allowed[(f"{module}.multiarray", "scalar")] = multiarray.scalar
        # Protocol 5 pickles of arrays go through _frombuffer instead of _reconstruct.
        allowed[(f"{module}.numeric", "_frombuffer")] = numeric._frombuffer
    return allowed


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that builds only builtin containers, strings, numbers and numpy arrays.

    Any other global a pickle names (``os.system``, ``builtins.eval``...) raises
    :class:`pickle.UnpicklingError` instead of being imported, so a crafted file cannot run code.
    """

    _allowed = _allowed_globals()

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}: not a part of a CIFAR batch") from None


def restricted_load(data: bytes) -> Any:
    """Unpickle ``data`` with :class:`RestrictedUnpickler` (Python 2 strings decoded as latin-1)."""
    return RestrictedUnpickler(io.BytesIO(data), encoding="latin1").load()


def _str_keys(obj: Any) -> dict[str, Any]:
    # Files unpickled with encoding="bytes" (or rewritten by Python 3 from such) have bytes keys.
    if not isinstance(obj, dict):
        raise TypeError(f"expected a dict, found {type(obj).__name__}")
    return {(k.decode("latin1") if isinstance(k, bytes) else k): v for k, v in obj.items()}


def _fix_hint(folder: Path) -> str:
    return f"delete {folder} and unpack {CIFAR10_ARCHIVE} from {CIFAR10_HOME} there again (or run where the network is reachable)"


def read_batch(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (N, 3, 32, 32) uint8 and labels (N,) int64 of one CIFAR-10 batch file.

    Raises :class:`DatasetUnavailable` naming ``path`` if it is unreadable, truncated, not a CIFAR
    batch, or names anything the restricted unpickler refuses.
    """
    hint = _fix_hint(path.parent)
    try:
        batch = _str_keys(restricted_load(path.read_bytes()))
        data = np.asarray(batch["data"])
        labels = np.asarray(batch["labels"], dtype=np.int64)
    except Exception as exc:  # a damaged pickle fails in many ways, all meaning the same to the user
        raise DatasetUnavailable(f"{path} is not a readable CIFAR-10 batch ({type(exc).__name__}: {exc}); {hint}") from exc
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise DatasetUnavailable(f"{path} holds {data.dtype} data of shape {data.shape}, expected uint8 (N, 3072); {hint}")
    if labels.shape != (data.shape[0],):
        raise DatasetUnavailable(f"{path} has {labels.size} labels for {data.shape[0]} images; {hint}")
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise DatasetUnavailable(f"{path} holds labels outside 0-9; {hint}")
    # Rows are the red plane, then green, then blue, each row-major: exactly CHW.
    images = np.ascontiguousarray(data).reshape(-1, 3, 32, 32)
    if not images.flags.writeable:  # arrays made by _frombuffer share the file's read-only bytes
        images = images.copy()
    return torch.from_numpy(images), torch.from_numpy(labels)


def read_batches(paths: list[Path]) -> tuple[torch.Tensor, torch.Tensor]:
    """The images and labels of the batch files at ``paths``, concatenated in that order."""
    batches = [read_batch(path) for path in paths]
    return torch.cat([images for images, _ in batches]), torch.cat([labels for _, labels in batches])


def read_class_names(path: Path) -> list[str]:
    """The ``label_names`` of ``batches.meta``, or the standard ten names if it lacks them."""
    try:
        meta = _str_keys(restricted_load(path.read_bytes()))
    except Exception as exc:
        raise DatasetUnavailable(f"{path} is not a readable CIFAR-10 batches.meta ({exc}); {_fix_hint(path.parent)}") from exc
    names = meta.get("label_names")
    if not isinstance(names, list) or len(names) != 10:
        return list(STANDARD_CLASSES)
    return [n.decode("latin1") if isinstance(n, bytes) else str(n) for n in names]
