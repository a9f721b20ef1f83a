"""A third-party dataset plugin with the faults a dataset plugin can have: a ``load()`` that raises, one
that hands back a split without images, and one whose training split (of a size it does not tell before
loading) is smaller than a batch. The tests register it through an entry point, as an
installed plugin is found."""
from __future__ import annotations

from aeframe import DatasetPlugin, ImageData, Split, hookimpl


class _Generated(DatasetPlugin):
    """Images that need no files."""

    def shape(self, params):
        return (3, 32, 32)

    def missing(self, data_dir, params):
        return None


class Broken(_Generated):
    name, title, description = "broken", "Broken", "its load() raises"

    def load(self, data_dir, params):
        raise RuntimeError("the disk is on fire\nand this second line is detail")


def _grey(count):
    import torch

    return Split(torch.full((count, 3, 32, 32), 128, dtype=torch.uint8), torch.zeros(count, dtype=torch.long))


class Hollow(_Generated):
    name, title, description = "hollow", "Hollow", "its test split has no images"

    def load(self, data_dir, params):
        return ImageData(train=_grey(256), test=_grey(0), classes=["grey"])


class Small(_Generated):
    name, title, description = "small", "Small", "10 training images, fewer than one batch"

    def load(self, data_dir, params):
        return ImageData(train=_grey(10), test=_grey(64), classes=["grey"])


@hookimpl
def register_datasets(register):
    register(Broken())
    register(Hollow())
    register(Small())
