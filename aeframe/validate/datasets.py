"""Contract checks on a dataset as ``-d`` takes it: parameters, ``shape()``, and what ``load()`` returns.

Nothing is downloaded: a dataset whose files are not here has its loading checks skipped with the
reason its own ``missing()`` gives.
"""
from __future__ import annotations

from typing import Iterator

import torch

from aeframe.contract.dataset import ImageData
from aeframe.data.loading import availability
from aeframe.errors import describe
from aeframe.planning.plan import resolve_dataset
from aeframe.validate.params import param_problems
from aeframe.validate.report import SKIP, Check, verdict
from aeframe.validate.setting import Setting

LOAD_CHECKS = ("load() matches shape()", "images are uint8 (N, C, H, W)", "labels are class indices",
               "train and test splits are non-empty")
# One line stands for every loading check when they cannot run: the reason is long (files, directory, fix).
LOADING = "loading checks (shape, uint8 images, labels, non-empty splits)"


def dataset_checks(text: str, setting: Setting) -> Iterator[Check]:
    choice = resolve_dataset(text, setting.registry)
    plugin = choice.plugin
    yield verdict("dataset", text, "parameters have help and valid defaults", param_problems(plugin.params))
    try:
        shape = tuple(plugin.shape(choice.params))
        bad = len(shape) != 3 or not all(isinstance(s, int) and s > 0 for s in shape)
        problems = [f"shape() returned {shape!r}; return (C, H, W), three positive ints"] if bad else []
    except Exception as exc:  # the plugin's own error is the finding
        shape, problems = None, [f"shape() raised {describe(exc)}"]
    yield verdict("dataset", text, "shape() gives (C, H, W) without loading", problems)
    why = availability(choice, setting.data_dir)
    if why is not None:
        yield Check("dataset", text, LOADING, SKIP, f"not available here: {why}")
        return
    try:
        data = plugin.load(setting.data_dir, choice.params)
        if not isinstance(data, ImageData):
            raise TypeError(f"load() returned a {type(data).__name__}, not an aeframe.ImageData")
    except Exception as exc:  # the plugin's own error is the finding
        yield verdict("dataset", text, LOADING, [f"load() raised {describe(exc)}"])
        return
    splits = {"train": data.train, "test": data.test}
    yield verdict("dataset", text, LOAD_CHECKS[0] + (f" ({'x'.join(map(str, shape))})" if shape else ""),
                  [f"{name} images are {tuple(s.images.shape[1:])}, shape() says {shape}"
                   for name, s in splits.items() if tuple(s.images.shape[1:]) != shape])
    yield verdict("dataset", text, LOAD_CHECKS[1],
                  [f"{name} images are {s.images.dtype} {tuple(s.images.shape)}" for name, s in splits.items()
                   if s.images.dtype != torch.uint8 or s.images.dim() != 4])
    yield verdict("dataset", text, f"labels are class indices (0-{len(data.classes) - 1})", _label_problems(data))
    sizes = ", ".join(f"{len(s):,} {name}" for name, s in splits.items())
    yield verdict("dataset", text, f"train and test splits are non-empty ({sizes})",
                  [f"the {name} split is empty" for name, s in splits.items() if len(s) == 0])


def _label_problems(data: ImageData) -> list[str]:
    if not data.classes:
        return ["the dataset names no classes"]
    problems = []
    for name, split in (("train", data.train), ("test", data.test)):
        labels = split.labels
        if len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= len(data.classes)):
            problems.append(f"{name} labels span {int(labels.min())}..{int(labels.max())} for "
                            f"{len(data.classes)} classes")
    return problems
