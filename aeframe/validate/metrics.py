"""Contract checks on a metric: its declarations, and that it ranks a perfect reconstruction above a
noisy one the way its ``better`` says, with finite values, on a small batch of the tiny dataset.
"""
from __future__ import annotations

import math
import re
from typing import Iterator

import torch

from aeframe.data.splits import to_unit
from aeframe.errors import describe
from aeframe.training.metric_set import MetricSet
from aeframe.validate.report import Check, verdict
from aeframe.validate.setting import Setting

_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")
NOISE = 0.2  # standard deviation of the noise in the "noisy" reconstruction, in [0, 1] pixel units
BATCH = 64


def metric_checks(name: str, setting: Setting) -> Iterator[Check]:
    metric = setting.registry.metrics[name]
    yield verdict("metric", name, "name, title, better and format are valid", _declaration_problems(metric))
    what = f"a perfect reconstruction scores {'higher' if metric.better == 'higher' else 'lower'} than a noisy one"
    try:
        perfect, noisy = _scores(metric, setting)
    except Exception as exc:  # the metric's own error is the finding
        yield verdict("metric", name, what, [f"raised {describe(exc)}"])
        yield verdict("metric", name, "results are finite", [f"not run: {describe(exc)}"])
        return
    ordered = perfect < noisy if metric.better == "lower" else perfect > noisy
    shown = f"perfect {_formatted(perfect, metric.format)}, noisy (sigma {NOISE:g}) {_formatted(noisy, metric.format)}"
    yield verdict("metric", name, f"{what} ({shown})" if ordered else what,
                  [] if ordered else [f"{shown}; is better={metric.better!r} right?"])
    yield verdict("metric", name, "results are finite",
                  [] if math.isfinite(perfect) and math.isfinite(noisy) else [shown])


def _formatted(value: float, spec: str) -> str:
    try:
        return format(value, spec)
    except (ValueError, TypeError):  # a bad format is reported by the declarations check
        return f"{value:.6g}"


def _declaration_problems(metric) -> list[str]:
    problems = []
    if not isinstance(metric.name, str) or not _NAME.match(metric.name):
        problems.append(f"name {metric.name!r} must be lowercase letters, digits, '-', '_' or '.'")
    if not str(metric.title).strip():
        problems.append("title is empty; it heads the table's column")
    if metric.better not in ("lower", "higher"):
        problems.append(f"better is {metric.better!r}, not 'lower' or 'higher'")
    try:
        format(0.5, metric.format)
    except (ValueError, TypeError) as exc:
        problems.append(f"format {metric.format!r} cannot format a float ({exc})")
    return problems


def _scores(metric, setting: Setting) -> tuple[float, float]:
    """The metric of the tiny test batch against itself, and against a noisy copy (seeded).

    Each score is a cell of its own, as in a run: a fresh copy of the metric, prepared once for both.
    """
    context = setting.loaded_context(setting.metric_data)
    metrics = MetricSet([metric])
    test = setting.load(setting.metric_data).test
    target = to_unit(test.images[:BATCH])
    labels = test.labels[:BATCH]
    noise = torch.randn(target.shape, generator=torch.Generator().manual_seed(0))
    noisy = (target + NOISE * noise).clamp(0, 1)
    values = []
    for recon in (target.clone(), noisy):
        [fresh] = metrics.for_cell(context)
        fresh.start(context)
        fresh.update(recon, target, labels)
        values.append(float(fresh.result()))
    return values[0], values[1]
