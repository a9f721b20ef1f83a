"""MNIST and Fashion-MNIST, read from IDX files laid out as torchvision lays them out.

Files live in ``<data_dir>/MNIST/raw/`` and ``<data_dir>/FashionMNIST/raw/``, plain or gzipped.
Fashion-MNIST is also taken from Debian's ``dataset-fashion-mnist`` package when installed. The
files are read by :mod:`aeframe_builtins.datasets.mnist_files` when a dataset is loaded.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from aeframe import (
    RESAMPLE_PARAM,
    DatasetPlugin,
    DatasetUnavailable,
    ImageData,
    Param,
    ProgressFn,
    Split,
    dataset_view,
    hookimpl,
)
from aeframe_builtins.datasets.torchvision_download import fetch

# (split, images file, labels file), in torchvision's names.
SPLIT_FILES = (
    ("train", "train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    ("test", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
)
FILE_NAMES = tuple(name for _, images, labels in SPLIT_FILES for name in (images, labels))


class _IdxDataset(DatasetPlugin):
    """Shared reading of the four IDX files; subclasses say where they live and what they hold."""

    folder: str = ""  # torchvision's directory name under data_dir
    torchvision_class: str = ""
    classes: tuple[str, ...] = ()
    home: str = ""  # where the files can be had, for messages
    system_dirs: tuple[Path, ...] = ()  # read-only system installs, searched after data_dir
    install_hint: str = ""

    params = (
        Param(
            "view",
            str,
            "study",
            "study: the 28x28 images resized to 32x32 (bilinear), grey copied to 3 channels; native: 1x28x28 as stored",
            choices=("study", "native"),
        ),
        RESAMPLE_PARAM,
    )

    def raw_dir(self, data_dir: Path) -> Path:
        """Where torchvision puts (and we look for) the IDX files under ``data_dir``."""
        return Path(data_dir) / self.folder / "raw"

    def shape(self, params: dict[str, Any]) -> tuple[int, int, int]:
        return (3, 32, 32) if params["view"] == "study" else (1, 28, 28)

    def _find(self, directory: Path) -> dict[str, Path] | None:
        """Each file's path in ``directory`` (plain preferred over .gz), or None if any is absent."""
        found = {}
        for name in FILE_NAMES:
            for candidate in (directory / name, directory / f"{name}.gz"):
                if candidate.is_file():
                    found[name] = candidate
                    break
            else:
                return None
        return found

    def _locate(self, data_dir: Path) -> dict[str, Path] | None:
        for directory in (self.raw_dir(data_dir), *self.system_dirs):
            files = self._find(directory)
            if files is not None:
                return files
        return None

    def missing(self, data_dir: Path, params: dict[str, Any]) -> str | None:
        return None if self._locate(data_dir) is not None else self._not_found(data_dir)

    def _not_found(self, data_dir: Path) -> str:
        where = self.raw_dir(data_dir)
        also = "".join(f" nor in {d}" for d in self.system_dirs)
        install = f", or {self.install_hint}" if self.install_hint else ""
        return (
            f"{self.name} is not in {where}{also}: needs {', '.join(FILE_NAMES)} (optionally .gz); "
            f"download them from {self.home} into {where}, or run where the network is "
            f"reachable{install}, or pass --data-dir"
        )

    def can_download(self) -> bool:
        return True

    def download(self, data_dir: Path, progress: ProgressFn) -> None:
        progress(self.name, 0, None)
        # One instance fetches all four files (train and test).
        fetch(self.torchvision_class, data_dir, self._not_found(data_dir), train=True)
        files = self._locate(data_dir)
        if files is None:
            raise DatasetUnavailable(self._not_found(data_dir))
        size = sum(p.stat().st_size for p in files.values())
        progress(self.name, size, size)

    def load(self, data_dir: Path, params: dict[str, Any]) -> ImageData:
        files = self._locate(data_dir)
        if files is None:
            raise DatasetUnavailable(self._not_found(data_dir))
        from aeframe_builtins.datasets.mnist_files import read_split, to_study_view

        hint = f"delete it and download it again from {self.home} (or run where the network is reachable)"
        # .get: callers that load directly with the parameters of aeframe 0.1 pass no resample.
        method = params.get("resample", RESAMPLE_PARAM.default)
        splits = {}
        for split, images_name, labels_name in SPLIT_FILES:
            images, labels = read_split(files[images_name], files[labels_name], len(self.classes), hint)
            training = split == "train"
            if params["view"] == "study":
                images = to_study_view(images, method, training)
            else:
                images = dataset_view(images, images.shape[-1], method, training)
            splits[split] = Split(images, labels)
        return ImageData(train=splits["train"], test=splits["test"], classes=list(self.classes),
                         resample=method)


class MNIST(_IdxDataset):
    """The MNIST handwritten digits: 60,000 training and 10,000 test images, 10 classes."""

    name = "mnist"
    title = "MNIST"
    description = "Handwritten digits 0-9 (60k train, 10k test), 28x28 grey; 32x32 RGB in the default view"
    folder = "MNIST"
    torchvision_class = "MNIST"
    classes = tuple(str(d) for d in range(10))
    home = "https://ossci-datasets.s3.amazonaws.com/mnist/"


class FashionMNIST(_IdxDataset):
    """Zalando's Fashion-MNIST: MNIST's format and sizes, with photos of clothing instead of digits."""

    name = "fashion-mnist"
    title = "Fashion-MNIST"
    description = "Zalando clothing photos in 10 classes (60k train, 10k test), 28x28 grey; 32x32 RGB in the default view"
    folder = "FashionMNIST"
    torchvision_class = "FashionMNIST"
    classes = (
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    )
    home = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
    # Debian's dataset-fashion-mnist; recompressed, so torchvision's MD5s fail but the IDX is intact.
    system_dirs = (Path("/usr/share/datasets/fashion-mnist"),)
    install_hint = "apt-get install dataset-fashion-mnist"


@hookimpl
def register_datasets(register: Callable[..., None]) -> None:
    """Register ``mnist`` and ``fashion-mnist``."""
    register(MNIST())
    register(FashionMNIST())
