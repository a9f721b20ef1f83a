"""A third-party dataset plugin with the faults a dataset plugin can have: a ``load()`` that raises, and
one that hands back a split without images. The tests register it through an entry point, as an
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


class Hollow(_Generated):
    name, title, description = "hollow", "Hollow", "its test split has no images"

    def load(self, data_dir, params):
        import torch

        def split(count):
            return Split(torch.full((count, 3, 32, 32), 128, dtype=torch.uint8), torch.zeros(count, dtype=torch.long))

        return ImageData(train=split(256), test=split(0), classes=["grey"])


@hookimpl
def register_datasets(register):
    register(Broken())
    register(Hollow())
