"""Shapes: a generated, labelled 32x32 RGB dataset that needs no files and no network.

The images are drawn by :mod:`aeframe_builtins.shapes_generator` when the dataset is loaded.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from aeframe import DatasetPlugin, ImageData, Param, hookimpl

SIZE = 32


class Shapes(DatasetPlugin):
    """Generated coloured geometric shapes in 10 classes, for tests and quick demos."""

    name = "shapes"
    title = "Shapes"
    description = "Generated 32x32 colour shapes in 10 classes on varied backgrounds (no download)"
    params = (
        Param("train", int, 20000, "number of training images"),
        Param("test", int, 2000, "number of test images"),
        Param("seed", int, 0, "which instance of the dataset to generate (train and test are disjoint draws)"),
    )

    def shape(self, params: dict[str, Any]) -> tuple[int, int, int]:
        return (3, SIZE, SIZE)

    def missing(self, data_dir: Path, params: dict[str, Any]) -> str | None:
        return None

    def check_params(self, params: dict[str, Any]) -> None:
        for key in ("train", "test"):
            if params[key] < 0:
                raise ValueError(f"{key}={params[key]} is negative; give a number of images, 0 or more")

    def load(self, data_dir: Path, params: dict[str, Any]) -> ImageData:
        from aeframe_builtins.shapes_generator import CLASSES, generate

        return ImageData(
            train=generate(params["train"], params["seed"], "train"),
            test=generate(params["test"], params["seed"], "test"),
            classes=list(CLASSES),
        )


def __getattr__(name: str) -> Any:
    # The generator's public names stay importable from here, as before they moved out (they need
    # torch); importing them is what loads the generator, not importing this module.
    if name in ("generate", "CLASSES"):
        from aeframe_builtins import shapes_generator

        return getattr(shapes_generator, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@hookimpl
def register_datasets(register: Callable[..., None]) -> None:
    """Register ``shapes``."""
    register(Shapes())
