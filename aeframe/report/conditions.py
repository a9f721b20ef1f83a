"""How a table's conditions read: the heading that tells a dataset's tables apart, and the
conditions line under each (budget, seeds, device, precision, versions, timing policy).
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from aeframe.cells.durations import describe_budget
from aeframe.cells.record import DONE, CellRecord
from aeframe.cells.settings import MEASURED
from aeframe.report.grouping import Condition
from aeframe.report.provenance import distinct

_LR_TEXT = {
    "study": "Learning rates: each technique's own (the study's)",
    "find": "Learning rates: a range test per cell ('valley'), its time in the LR Find column",
}


def _lr_text(lr: str) -> str:
    return _LR_TEXT.get(lr, f"Learning rates: {lr}")


def _budget_text(condition: Condition) -> str:
    return describe_budget(condition.budget.epochs, condition.budget.seconds, per_cell=True)


def _params_text(params: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v if isinstance(v, str) else json.dumps(v)}" for k, v in sorted(params.items())) or "defaults"


def _parts(condition: Condition) -> dict[str, str]:
    return {
        "budget": f"Budget: {_budget_text(condition)}",
        "device_type": f"Device: {condition.device_type or 'unknown'}",
        "dataset_params": f"Dataset parameters: {_params_text(condition.dataset_params)}",
        "lr": _lr_text(condition.lr),
        "precision": f"Precision: {condition.precision}",
        "numerics": f"Numerics: {_params_text(condition.numerics)}",
    }


def difference(conditions: Sequence[Condition], condition: Condition) -> str:
    """Name the parts of ``condition`` that differ among ``conditions`` (a dataset's tables)."""
    everyone = [c.to_json() for c in conditions]
    names = list(dict.fromkeys(k for c in [condition.to_json(), *everyone] for k in c))
    differing = [k for k in names if len({json.dumps(c.get(k), sort_keys=True) for c in everyone}) > 1]
    parts = _parts(condition)
    if "numerics" in differing:  # only the switches that differ: "Numerics: threads=1"
        switches = {k: v for k, v in condition.numerics.items()
                    if len({json.dumps(c.numerics.get(k)) for c in conditions}) > 1}
        parts["numerics"] = f"Numerics: {_params_text(switches)}"
    return " · ".join(parts[k] for k in differing)


def conditions_line(condition: Condition, records: Sequence[CellRecord], versions: dict[str, list[Any]]) -> str:
    """The line under a table: budget, seeds, device, numerics, ``versions`` (package -> versions seen)."""
    parts = [f"Budget: {_budget_text(condition)}"]
    if condition.dataset_params:
        parts.append(f"Dataset parameters: {_params_text(condition.dataset_params)}")
    if condition.lr != "study":
        parts.append(_lr_text(condition.lr))
    seeds = distinct([r.config.seed for r in records])
    try:
        seeds.sort()
    except TypeError:  # mixed seed types: keep the order of appearance
        pass
    if seeds:
        parts.append(f"Seed{'s' if len(seeds) > 1 else ''}: {', '.join(map(str, seeds))}")
    names = distinct([r.config.device.name for r in records])
    device_type = condition.device_type or "unknown"
    parts.append(f"Device: {' / '.join(names)} ({device_type})" if names else f"Device: {device_type}")
    for note in (_shared_gpus_text(records), _packed_text(records)):
        if note:
            parts.append(note)
    parts.append(_numerics_text(condition.precision, records))
    version_texts = [f"{package} {' / '.join(map(str, found))}" for package, found in versions.items()]
    if version_texts:
        parts.append(f"Versions: {', '.join(version_texts)}")
    parts.append(_timing_text(records))
    return " · ".join(parts)


def _shared_gpus_text(records: Sequence[CellRecord]) -> str:
    """Where cells trained on a fraction of a GPU (``--gpus-per-cell 0.5``), say so: a shared device
    makes images/s incomparable with rows that had a whole one."""
    fractions = distinct([p.get("gpus") for r in records if isinstance(p := r.stats.placement, dict)
                          and isinstance(p.get("gpus"), (int, float)) and 0 < p["gpus"] < 1])
    if not fractions:
        return ""
    shares = " / ".join(f"{f:g}" for f in sorted(fractions))
    return f"GPUs shared: {shares} GPU per cell (--gpus-per-cell), so images/s and times are not comparable with whole-GPU rows"


def _packed_text(records: Sequence[CellRecord]) -> str:
    """Where cells trained several at once on the device (``--cells-per-device``), say whose times the
    table shows: those of the cells that had it alone."""
    packed = [r for r in records if r.stats.packed]
    if not packed:
        return ""
    counts = " / ".join(str(n) for n in sorted(distinct([r.stats.packed for r in packed])))
    return (f"Cells packed: {len(packed)} of {len(records)} trained {counts} at a time on the device "
            "(--cells-per-device); times and images/s are from the cells that trained alone")


def _timing_text(records: Sequence[CellRecord]) -> str:
    """The timing policy the rows were trained under. Since the equal-treatment policy
    (:mod:`aeframe.speed.preparation`) every cell's one-time set-up is off its clock and its record
    says how long it took; cells stored before it were timed from their first step."""
    prepared = {r.stats.prepare_seconds is not None for r in records if r.status == DONE}
    policies = []
    if True in prepared:
        policies.append("after the same untimed preparation for every cell")
    if False in prepared or not prepared:
        policies.append("from the first step" + (" (rows stored before the preparation existed)" if True in prepared
                                                 else ""))
    return f"Training time: device-synchronised, {' / '.join(policies)}, evaluation apart"


def _numerics_text(precision: str, records: Sequence[CellRecord]) -> str:
    """Precision (and whether it was measured), the memory layout and compilation where any row used them."""
    text = f"Precision: {precision}"
    if any(r.config.speed.precision_from == MEASURED for r in records):
        text += " (auto: the fastest within tolerance here, docs/speed.md)"
    layout = _layout_text(records)
    if layout:
        text += f", {layout}"
    steps = _steps_text(records)
    if steps:
        text += f", {steps}"
    compiled = distinct(["compiled" if r.config.speed.compile else "not compiled" for r in records])
    if compiled != ["not compiled"]:
        text += f", {' / '.join(compiled)} (compile time apart, in the Compile column)"
    return text


def trained_layout(record: CellRecord) -> str:
    """The memory layout a cell trained in: measured cells say so in their stats, others in their config."""
    found = record.stats.memory_format
    if found in ("channels_last", "contiguous"):
        return found
    return "channels_last" if record.config.speed.channels_last else "contiguous"


def _layout_text(records: Sequence[CellRecord]) -> str:
    """Nothing for the usual layout everywhere; which rows trained in which layout when it was measured."""
    layouts = {r.config.label: trained_layout(r) for r in records if r.status == DONE or r.stats.memory_format is not None}
    if not any(r.config.speed.tuned_layout for r in records):
        formats = distinct([trained_layout(r) for r in records])
        return "" if formats == ["contiguous"] else " / ".join(formats)
    by_layout: dict[str, list[str]] = {}
    for label, layout in layouts.items():
        by_layout.setdefault(layout, []).append(label)
    listed = "; ".join(f"{layout} for {', '.join(labels)}" for layout, labels in sorted(by_layout.items()))
    return f"memory layout measured per technique ({listed})" if listed else "memory layout measured per technique"


def _steps_text(records: Sequence[CellRecord]) -> str:
    """Which rows replayed CUDA graphs and which stepped eagerly (with why): for cells on a GPU, and for
    cells that asked for graphs (--cuda-graphs) where they could not have them; nothing for other CPU
    cells or rows stored before step modes existed."""
    graphable = [r for r in records if r.status == DONE and r.stats.step_mode is not None
                 and (r.config.device.type == "cuda" or r.config.speed.graphs)]
    if not graphable:
        return ""
    by_mode: dict[str, list[str]] = {}
    for record in graphable:
        mode = record.stats.step_mode
        if mode == "eager" and record.stats.step_reason:
            mode = f"eager ({record.stats.step_reason})"
        labels = by_mode.setdefault(mode, [])
        if record.config.label not in labels:
            labels.append(record.config.label)
    return "steps: " + "; ".join(f"{mode} for {', '.join(labels)}" for mode, labels in sorted(by_mode.items()))
