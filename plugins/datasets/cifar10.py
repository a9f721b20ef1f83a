"""CIFAR-10, read from the official python pickled batches in ``<data_dir>/cifar-10-batches-py/``.

The batches are read by :mod:`aeframe_builtins.datasets.cifar10_batches` (with an unpickler that refuses
anything but what the real files hold) when the dataset is loaded.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from aeframe import (
    RESAMPLE_PARAM,
    DatasetPlugin,
    DatasetUnavailable,
    ImageData,
    ProgressFn,
    Split,
    dataset_view,
    hookimpl,
)
from aeframe_builtins.datasets.constants import CIFAR10_ARCHIVE, CIFAR10_HOME
from aeframe_builtins.datasets.torchvision_download import fetch

FOLDER = "cifar-10-batches-py"
ARCHIVE = CIFAR10_ARCHIVE
TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_FILE = "test_batch"
META_FILE = "batches.meta"
FILE_NAMES = (*TRAIN_FILES, TEST_FILE, META_FILE)
HOME = CIFAR10_HOME


class CIFAR10(DatasetPlugin):
    """CIFAR-10: 50,000 training and 10,000 test colour photos, 32x32, in 10 classes."""

    name = "cifar10"
    title = "CIFAR-10"
    description = "32x32 colour photos in 10 classes (50k train, 10k test)"
    params = (RESAMPLE_PARAM,)

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
        from aeframe_builtins.datasets.cifar10_batches import read_batches, read_class_names

        # .get: callers that load directly with the parameters of aeframe 0.1 pass no resample.
        method = params.get("resample", RESAMPLE_PARAM.default)

        def split(names: list[str], training: bool) -> Split:
            images, labels = read_batches([folder / n for n in names])
            return Split(dataset_view(images, images.shape[-1], method, training), labels)

        return ImageData(train=split(list(TRAIN_FILES), True), test=split([TEST_FILE], False),
                         classes=read_class_names(folder / META_FILE), resample=method)


@hookimpl
def register_datasets(register: Callable[..., None]) -> None:
    """Register ``cifar10``."""
    register(CIFAR10())
