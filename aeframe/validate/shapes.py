"""Every image shape the registered datasets yield, each with one dataset text that gives it."""
from __future__ import annotations

from aeframe.planning.plan import resolve_dataset
from aeframe.validate.setting import Setting


def shape_text(dataset_text: str, shape) -> str:
    return f"{dataset_text} ({'x'.join(str(s) for s in shape)})"


def dataset_shapes(setting: Setting) -> list[tuple[str, tuple[int, int, int]]]:
    """The tiny dataset's shape first, then each other shape a dataset gives at its defaults or with
    one parameter set to another of its choices (``mnist[view=native]``), read from ``shape()``
    without loading anything. A dataset whose ``shape()`` fails is left to its own checks.
    """
    registry = setting.registry
    texts = [setting.tiny]
    for name, plugin in sorted(registry.datasets.items()):
        texts.append(name)
        for p in plugin.params:
            texts.extend(f"{name}[{p.name}={p.format(c)}]" for c in p.choices or () if c != p.default)
    found: dict[tuple[int, int, int], str] = {}
    for text in texts:
        try:
            choice = resolve_dataset(text, registry)
            shape = tuple(int(s) for s in choice.plugin.shape(choice.params))
        except Exception:  # reported by the dataset's checks, not the technique's
            continue
        found.setdefault(shape, text)
    return [(text, shape) for shape, text in found.items()]
