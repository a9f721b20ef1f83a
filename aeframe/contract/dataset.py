"""The dataset contract: what a dataset plugin registers and what it hands to the runner."""
from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

from aeframe.contract.params import Param
from aeframe.contract.resample import HALF_PIXEL

if TYPE_CHECKING:
    import torch


class DatasetUnavailable(Exception):
    """The dataset cannot be had here; the message says which files to put where (or what to run)."""


@dataclass
class Split:
    """One split held in memory: ``images`` uint8 (N, C, H, W), ``labels`` int64 (N,)."""

    images: torch.Tensor
    labels: torch.Tensor

    def __post_init__(self) -> None:
        import torch  # here, not at the top: registering a dataset plugin must not import torch

        if self.images.dtype != torch.uint8 or self.images.dim() != 4:
            raise ValueError(f"images must be uint8 (N, C, H, W), got {self.images.dtype} {tuple(self.images.shape)}")
        if self.labels.shape != (self.images.shape[0],):
            raise ValueError("labels must be one int per image")
        self.labels = self.labels.long()

    def __len__(self) -> int:
        return self.images.shape[0]


@dataclass
class ImageData:
    """A loaded dataset: both splits in memory, and the class names (index = label).

    ``resample`` is how the runner makes other sizes of these images (progressive resizing's 16 px):
    ``"half-pixel"`` or ``"fastai-v1"`` (:mod:`aeframe.contract.resample`), the dataset's ``resample`` parameter
    where it offers one."""

    train: Split
    test: Split
    classes: Sequence[str]
    resample: str = HALF_PIXEL
    _fingerprint: str | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.train.images.shape[1:])  # type: ignore[return-value]

    def to_arrays(self) -> dict[str, Any]:
        """This data as numpy arrays and a list, which every transport (pickle 5, Ray's object store)
        moves without copying the pixels; :meth:`from_arrays` turns it back.

        Returns:
            A dict with ``"train"`` and ``"test"``, each a pair of numpy arrays (uint8 images (N, C, H, W),
                int64 labels (N,)) sharing the tensors' memory, ``"classes"``, the class names as a list, and
                ``"resample"``, the resampling method.
        """
        return {
            "train": (self.train.images.numpy(), self.train.labels.numpy()),
            "test": (self.test.images.numpy(), self.test.labels.numpy()),
            "classes": list(self.classes),
            "resample": self.resample,
        }

    @classmethod
    def from_arrays(cls, arrays: dict[str, Any]) -> ImageData:
        """The data of :meth:`to_arrays`'s arrays, sharing their memory.

        Args:
            arrays: What :meth:`to_arrays` returned, possibly after a transport (its arrays may be read-only:
                cells only read the data).

        Returns:
            The data, its tensors made on the arrays without copying them.
        """
        import warnings

        import torch

        def tensor(array: Any) -> torch.Tensor:
            # Arrays from a shared object store are read-only; cells only read the data, so no copy.
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                return torch.from_numpy(array)

        def split(pair: tuple[Any, Any]) -> Split:
            return Split(tensor(pair[0]), tensor(pair[1]))

        return cls(split(arrays["train"]), split(arrays["test"]), arrays["classes"], arrays["resample"])

    def fingerprint(self) -> str:
        """A hash of exactly this data: both splits' uint8 images and labels, and the class names.

        Two loads give the same fingerprint only if every pixel, label and class name agrees, so a
        result or a cache kept under it can never be reused for other data. Computed on the first
        call (a fraction of a second for 60,000 images) and kept; the splits must not be changed
        afterwards.

        Returns:
            The first 16 hexadecimal digits of a SHA-256 over the class names, the resampling method (where
                not the default), and each split's image shape, pixels and labels.
        """
        if self._fingerprint is None:
            digest = hashlib.sha256(b"aeframe-data-1")
            digest.update(json.dumps([str(c) for c in self.classes]).encode())
            # Other resampling makes other resized views of the same pixels. Hashed only when not the
            # default, so that the fingerprints of data loaded before the choice existed still match.
            if self.resample != HALF_PIXEL:
                digest.update(f"resample={self.resample}".encode())
            for split in (self.train, self.test):
                images = split.images.detach().cpu().contiguous()
                # The shape first: the same bytes cut into other images are other data.
                digest.update(json.dumps(list(images.shape)).encode())
                digest.update(memoryview(images.numpy()).cast("B"))
                # Little-endian int64 whatever the platform, so the hash does not depend on it.
                digest.update(split.labels.detach().cpu().numpy().astype("<i8").tobytes())
            self._fingerprint = digest.hexdigest()[:16]
        return self._fingerprint


# Progress callback for downloads: (what, bytes_done, bytes_total or None).
ProgressFn = Callable[[str, int, "int | None"], None]


class DatasetPlugin(ABC):
    """Base class for datasets. Subclass it, set the class attributes, implement the methods.

    ``name`` is what users type after ``-d``; ``title`` heads the report's section; ``params``
    declares the ``-d name[key=value]`` parameters (typed, with defaults and help).
    """

    name: str = ""
    title: str = ""
    description: str = ""
    params: Sequence[Param] = ()

    @abstractmethod
    def shape(self, params: dict[str, Any]) -> tuple[int, int, int]:
        """The (C, H, W) of the images this dataset yields with these parameters, without loading.

        Args:
            params: The dataset's typed parameter values by name (as :attr:`params` declares them, defaults
                filled in).

        Returns:
            The images' channels, height and width in pixels, as a tuple.
        """

    def split_sizes(self, params: dict[str, Any]) -> tuple[int, int] | None:
        """How many images each split will hold with these parameters, without loading; optional.

        Planning uses it to refuse, before anything trains, a training split smaller than one batch;
        where it is unknown, that is found once the dataset is loaded (its cells then fail, naming it).

        Args:
            params: The dataset's typed parameter values by name, defaults filled in.

        Returns:
            The numbers of training and test images; None (the default) when they are known only once
                the dataset is loaded.
        """
        return None

    @abstractmethod
    def missing(self, data_dir: Path, params: dict[str, Any]) -> str | None:
        """``None`` if the files are at hand; else why not, naming the exact files, directory and fix.

        Must be cheap (no decoding) and must not touch the network.

        Args:
            data_dir: The data directory (``--data-dir``) the files are looked for in.
            params: The dataset's typed parameter values by name, defaults filled in.

        Returns:
            None when the files are at hand, else one message saying which files are missing, where they go
                and how to get them.
        """

    def check_params(self, params: dict[str, Any]) -> None:
        """Raise ``ValueError`` for parameter values that cannot work (e.g. a negative count); the user
        sees the message, naming the dataset, before anything runs.

        Args:
            params: The dataset's typed parameter values by name: the given ones parsed, the others at their
                defaults.

        Raises:
            ValueError: When the values cannot work; its message is shown, naming the dataset.
        """

    def can_download(self) -> bool:
        """Whether :meth:`download` may be tried when files are missing.

        Returns:
            True when the dataset can fetch its files itself; False (the default) when the user must put
                them in place.
        """
        return False

    def download(self, data_dir: Path, progress: ProgressFn) -> None:
        """Fetch the missing files into ``data_dir``; raise :class:`DatasetUnavailable` on failure.

        Args:
            data_dir: The data directory to put the files in (made before the call).
            progress: Called as ``progress(what, bytes_done, bytes_total)`` as the download goes on;
                ``bytes_total`` is None where the size is not known.

        Raises:
            DatasetUnavailable: When the files cannot be fetched, saying what to do instead (the default,
                for a dataset that cannot be downloaded).
        """
        raise DatasetUnavailable(f"{self.name} cannot be downloaded")

    @abstractmethod
    def load(self, data_dir: Path, params: dict[str, Any]) -> ImageData:
        """Read the files (already checked by :meth:`missing`) into memory.

        Args:
            data_dir: The data directory the files are in.
            params: The dataset's typed parameter values by name, defaults filled in.

        Returns:
            Both splits in memory, the class names and the resampling method.
        """
