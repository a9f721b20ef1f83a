"""``aeframe validate``: contract checks on techniques, datasets and metrics, one verdict per check.

Each check says what it verified and, when it fails, why: the line a plugin author reads to find
the bug. The checks know the contracts (``aeframe.Technique``, ``aeframe.DatasetPlugin``,
``aeframe.Metric``), never a particular plugin. Third parties run the same checks from their own
tests through :mod:`aeframe.testing`.
"""
from __future__ import annotations

import difflib
from typing import Callable, Iterator

from aeframe.errors import SpecError
from aeframe.planning.plan import resolve_dataset, resolve_technique
from aeframe.planning.syntax import parse_combination, parse_component
from aeframe.validate.report import FAIL, PASS, SKIP, Check
from aeframe.validate.setting import TINY, Setting

__all__ = ["FAIL", "PASS", "SKIP", "TINY", "Check", "Setting", "checks_for", "resolve_names"]

Target = tuple[str, str]  # (kind, text): what one NAME given to `aeframe validate` stands for


def resolve_names(names: list[str], setting: Setting) -> list[Target]:
    """What each name is (technique text, dataset or metric), or every registered one without names.

    A name that is none of them is a :class:`SpecError` naming the close matches of every kind.
    """
    registry = setting.registry
    if not names:
        return ([("technique", n) for n in sorted(registry.techniques)]
                + [("dataset", n) for n in sorted(registry.datasets)]
                + [("metric", n) for n in registry.metrics])
    targets: list[Target] = []
    for text in names:
        found = _kinds_of(text, setting)
        if not found:
            everything = [*registry.techniques, *registry.datasets, *registry.metrics]
            head = text.split("[", 1)[0].split("+", 1)[0].strip()
            close = difflib.get_close_matches(head, everything, n=3, cutoff=0.5)
            hint = f"did you mean {', '.join(close)}? " if close else ""
            raise SpecError(f"{text!r} is not a registered technique, dataset or metric; {hint}"
                            "`aeframe list techniques`, `aeframe list datasets` and `aeframe plugins` show them")
        targets.extend((kind, text) for kind in found)
    return targets


def _kinds_of(text: str, setting: Setting) -> list[str]:
    """The kinds ``text`` names; its parameters are checked here, so that a typo stops the run at once."""
    registry = setting.registry
    kinds = []
    # A name two distributions register is resolved too: the resolver refuses it, naming the qualified names.
    head = parse_combination(text)[0].name
    if head in registry.techniques or ("technique", head) in registry.ambiguous:
        resolve_technique(text, registry)
        kinds.append("technique")
    if "+" not in text:
        name = parse_component(text).name
        if name in registry.datasets or ("dataset", name) in registry.ambiguous:
            resolve_dataset(text, registry)
            kinds.append("dataset")
        if name in registry.metrics and "[" not in text:
            kinds.append("metric")
    return kinds


def checks_for(targets: list[Target], setting: Setting) -> Iterator[Check]:
    """Every check of every target, as each finishes (so a long run shows its progress)."""
    from aeframe.validate.datasets import dataset_checks
    from aeframe.validate.metrics import metric_checks
    from aeframe.validate.techniques import technique_checks

    runners: dict[str, Callable[[str, Setting], Iterator[Check]]] = {
        "technique": technique_checks, "dataset": dataset_checks, "metric": metric_checks,
    }
    for kind, text in targets:
        yield from runners[kind](text, setting)
