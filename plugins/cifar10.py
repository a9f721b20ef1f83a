"""CIFAR-10, read from the official python pickled batches in ``<data_dir>/cifar-10-batches-py/``.

The batches are pickles, and unpickling runs whatever a file names; so they are read with an
unpickler that only builds the plain containers and numpy arrays that the real files hold.
"""
from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch

from aeframe import hookimpl
from aeframe.dataset import DatasetPlugin, DatasetUnavailable, ImageData, ProgressFn, Split
from aeframe_builtins.torchvision_download import fetch

FOLDER = "cifar-10-batches-py"
ARCHIVE = "cifar-10-python.tar.gz"
TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_FILE = "test_batch"
META_FILE = "batches.meta"
FILE_NAMES = (*TRAIN_FILES, TEST_FILE, META_FILE)
HOME = "https://www.cs.toronto.edu/~kriz/cifar.html"
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
    return f"delete {folder} and unpack {ARCHIVE} from {HOME} there again (or run where the network is reachable)"


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


class CIFAR10(DatasetPlugin):
    """CIFAR-10: 50,000 training and 10,000 test colour photos, 32x32, in 10 classes."""

    name = "cifar10"
    title = "CIFAR-10"
    description = "32x32 colour photos in 10 classes (50k train, 10k test)"
    params = ()

    def folder(self, data_dir: Path) -> Path:
        """The directory holding the batch files under ``data_dir``."""
        return Path(data_dir) / FOLDER

    def shape(self, params: dict[str, Any]) -> tuple[int, int, int]:
        return (3, 32, 32)

    def missing(self, data_dir: Path, params: dict[str, Any]) -> str | None:
        folder = self.folder(data_dir)
        return None if all((folder / n).is_file() for n in FILE_NAMES) else self._not_found(data_dir)

    def _not_found(self, data_dir: Path) -> str:
        folder = self.folder(data_dir)
        absent = [n for n in FILE_NAMES if not (folder / n).is_file()]
        # Naming the absent few helps after a partial copy; when all are absent, "needs" says it.
        lacks = f" (lacks {', '.join(absent)})" if 0 < len(absent) < len(FILE_NAMES) else ""
        return (
            f"cifar10 is not in {folder}/: needs {', '.join(FILE_NAMES)}{lacks}; "
            f"download {ARCHIVE} from {HOME} and unpack it in {Path(data_dir)}, "
            f"or run where the network is reachable, or pass --data-dir"
        )

    def can_download(self) -> bool:
        return True

    def download(self, data_dir: Path, progress: ProgressFn) -> None:
        progress(self.name, 0, None)
        fetch("CIFAR10", data_dir, self._not_found(data_dir), train=False)
        if self.missing(data_dir, {}) is not None:
            raise DatasetUnavailable(self._not_found(data_dir))
        size = sum((self.folder(data_dir) / n).stat().st_size for n in FILE_NAMES)
        progress(self.name, size, size)

    def load(self, data_dir: Path, params: dict[str, Any]) -> ImageData:
        folder = self.folder(data_dir)
        if self.missing(data_dir, params) is not None:
            raise DatasetUnavailable(self._not_found(data_dir))
        train = [read_batch(folder / n) for n in TRAIN_FILES]
        test_images, test_labels = read_batch(folder / TEST_FILE)
        return ImageData(
            train=Split(torch.cat([i for i, _ in train]), torch.cat([lab for _, lab in train])),
            test=Split(test_images, test_labels),
            classes=read_class_names(folder / META_FILE),
        )


@hookimpl
def register_datasets(register) -> None:
    """Register ``cifar10``."""
    register(CIFAR10())
