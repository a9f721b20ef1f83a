"""Shapes: a generated, labelled 32x32 RGB dataset that needs no files and no network.

The images are drawn by :mod:`aeframe_builtins.datasets.shapes_generator` when the dataset is loaded.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from aeframe import RESAMPLE_PARAM, DatasetPlugin, ImageData, Param, Split, dataset_view, hookimpl
from aeframe_builtins.datasets.constants import SHAPES_SIZE
from aeframe_builtins.datasets.memory import beyond_memory

SIZE = SHAPES_SIZE
# Generation keeps the images as uint8 and three int64 values per label while it shuffles them.
BYTES_PER_IMAGE = 3 * SIZE * SIZE + 3 * 8
# torch's random permutations and the workspace's counts stay far inside 32 bits.
MAX_COUNT = 2**31 - 1
SPLIT_NAMES = {"train": "training", "test": "test"}


class Shapes(DatasetPlugin):
    """Generated coloured geometric shapes in 10 classes, for tests and quick demos."""

    name = "shapes"
    title = "Shapes"
    description = "Generated 32x32 colour shapes in 10 classes on varied backgrounds (no download)"
    params = (
        Param("train", int, 20000, "number of training images (1 or more)"),
        Param("test", int, 2000, "number of test images (1 or more)"),
        Param("seed", int, 0, "which instance of the dataset to generate (train and test are disjoint draws)"),
        RESAMPLE_PARAM,
    )

    def shape(self, params: dict[str, Any]) -> tuple[int, int, int]:
        return (3, SIZE, SIZE)

    def split_sizes(self, params: dict[str, Any]) -> tuple[int, int] | None:
        return params["train"], params["test"]

    def missing(self, data_dir: Path, params: dict[str, Any]) -> str | None:
        return None

    def check_params(self, params: dict[str, Any]) -> None:
        for key in ("train", "test"):
            count = params[key]
            if count < 0:
                raise ValueError(f"{key}={count} is negative; give a number of images, 1 or more")
            if count == 0:
                # An empty test split scores every model as perfect (an MSE of 0); an empty training split
                # scores an untrained one.
                raise ValueError(f"{key}=0 leaves the {SPLIT_NAMES[key]} split empty, so nothing could be "
                                 f"{'scored' if key == 'test' else 'trained'}; give 1 or more images")
            if count > MAX_COUNT:
                raise ValueError(f"{key}={count} is above the limit of {MAX_COUNT:,} images per split")
        needed = (params["train"] + params["test"]) * BYTES_PER_IMAGE
        too_large = beyond_memory(f"{params['train']:,} training and {params['test']:,} test images", needed)
        if too_large:
            raise ValueError(f"{too_large}; give smaller train and test counts")

    def load(self, data_dir: Path, params: dict[str, Any]) -> ImageData:
        from aeframe_builtins.datasets.shapes_generator import CLASSES, generate

        # .get: callers that load directly with the parameters of aeframe 0.1 pass no resample.
        method = params.get("resample", RESAMPLE_PARAM.default)

        def split(count: int, which: str) -> Split:
            drawn = generate(count, params["seed"], which)
            return Split(dataset_view(drawn.images, SIZE, method, which == "train"), drawn.labels)

        return ImageData(train=split(params["train"], "train"), test=split(params["test"], "test"),
                         classes=list(CLASSES), resample=method)


def __getattr__(name: str) -> Any:
    # The generator's public names stay importable from here, as before they moved out (they need
    # torch); importing them is what loads the generator, not importing this module.
    if name in ("generate", "CLASSES"):
        from aeframe_builtins.datasets import shapes_generator

        return getattr(shapes_generator, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@hookimpl
def register_datasets(register: Callable[..., None]) -> None:
    """Register ``shapes``."""
    register(Shapes())
