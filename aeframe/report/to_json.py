"""The report as JSON, for further analysis: the markdown's grouping with every number unrounded."""
from __future__ import annotations

import json
import math
from typing import Any

from aeframe.cells.record import BUSY_BELOW, CPU_SHARE_MEANING
from aeframe.report.columns import SUMMARISED_STATS
from aeframe.report.structure import Comparison, ComparisonTable, DatasetReport, NotDone, Report, Row, Summary

# The JSON writes a row's parameter count as one number apart from the other statistics.
_STATS = tuple(name for name in SUMMARISED_STATS if name != "params")


def as_json(report: Report) -> str:
    """``{"datasets": [...]}``; docs/results.md describes every field."""
    return json.dumps({"datasets": [_dataset(d) for d in report.datasets]}, indent=2, allow_nan=False) + "\n"


def _finite(value: float | None) -> float | None:
    # JSON has no NaN or Infinity; null keeps the output parseable by every reader.
    return value if value is not None and math.isfinite(value) else None


def _plain(value: Any) -> Any:
    """A stored curve point (or anything in it) with its non-finite numbers as null; every key kept, so
    that what a later aeframe adds to a point (``diagnostics``) comes through as stored."""
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    return _finite(value) if isinstance(value, float) else value


def _summary(summary: Summary | None) -> dict[str, Any] | None:
    if summary is None:
        return None
    return {"mean": _finite(summary.mean), "std": _finite(summary.std), "values": [_finite(v) for v in summary.values]}


def _ci95(summary: Summary | None) -> list[float | None] | None:
    if summary is None or summary.ci95 is None:
        return None
    return [_finite(summary.ci95[0]), _finite(summary.ci95[1])]


def _comparison(comparison: Comparison) -> dict[str, Any]:
    return {"test": "paired t-test", "pairs": comparison.pairs, "mean_difference": _finite(comparison.mean_difference),
            "t": _finite(comparison.t), "p": _finite(comparison.p), "p_holm": _finite(comparison.p_holm)}


_ONLY_WHERE_FOUND = ("cpu_share", "outside_budget_seconds")


def _row(row: Row) -> dict[str, Any]:
    params = [int(p) for p in row.params]
    # Cells stored before aeframe measured contention have no cpu_share, and most cells do nothing outside
    # their budget: such rows read as before.
    stats = tuple(name for name in _STATS if name not in _ONLY_WHERE_FOUND or row.stats[name] is not None)
    found = {
        "label": row.label,
        "seeds": row.seeds,
        "keys": row.keys,
        "metrics": {name: _summary(s) for name, s in row.metrics.items()},
        **{name: _summary(row.stats[name]) for name in stats},
        # A technique's size does not depend on the seed; a list flags if it did.
        "params": params[0] if len(params) == 1 else params or None,
        # 95 % Student-t intervals for the means, laid out like the summaries above.
        "ci95": {
            "metrics": {name: _ci95(s) for name, s in row.metrics.items()},
            **{name: _ci95(row.stats[name]) for name in stats},
        },
        "vs_baseline": (
            {name: _comparison(c) for name, c in row.comparisons.items()} if row.comparisons is not None else None
        ),
    }
    if row.stats["cpu_share"] is not None:
        # Seeds trained on a busy machine (cpu_share below contention.busy_below, or another GPU process).
        found["busy"] = [{"seed": b.seed, "cpu_share": b.cpu_share, "gpu_other_processes": b.gpu_other_processes}
                         for b in row.busy]
    if row.stand_in:
        found["stand_in"] = row.stand_in
    if row.not_scored:
        found["not_scored"] = row.not_scored
    # Each seed's cell with its per-epoch curve, in the order of seeds and keys.
    found["cells"] = [{"key": key, "seed": seed, "curve": _plain(curve)}
                      for key, seed, curve in zip(row.keys, row.seeds, row.curves)]
    return found


def _table(table: ComparisonTable) -> dict[str, Any]:
    quality = table.time_to_quality
    found = {
        "condition": table.condition.to_json(),
        "rows": [_row(row) for row in table.rows],
        "note": table.note,
        "outside_budget": [entry.to_json() for entry in table.outside_budget],
        "combinations": [{"label": row.label, "parts": row.parts, "against": row.against, "by": table.combined_by,
                          "vs_better_single": {name: _comparison(c) for name, c in row.comparisons.items()}}
                         for row in table.combinations],
        "reference": table.references,
        "time_to_quality": None if quality is None else {
            "reference_seconds": quality.reference_seconds,
            "fractions": list(quality.fractions),
            "rows": [{"label": row.label, "test_mse": row.test_mse} for row in quality.rows],
        },
        "provenance": table.provenance,
        "protocols": {label: protocol.to_json() for label, protocol in table.protocols.items()},
        "figures": [{"kind": f.kind, "path": f.path, "caption": f.caption} for f in table.figures],
    }
    if any(row.stats["cpu_share"] is not None or row.busy for row in table.rows):
        found["contention"] = {"busy_below": BUSY_BELOW, "measured": CPU_SHARE_MEANING}
    if table.part is not None:
        # Only where a condition's table is split, so that a store of one kind reads as it always did.
        found["part"] = table.part
    return found


def _not_done(entry: NotDone) -> dict[str, Any]:
    return {"key": entry.key, "label": entry.label, "seed": entry.seed, "status": entry.status, "error": entry.error,
            "condition": entry.condition.to_json(), "after_done": entry.after_done, "curve": _plain(entry.curve)}


def _dataset(dataset: DatasetReport) -> dict[str, Any]:
    return {"name": dataset.name, "title": dataset.title, "tables": [_table(t) for t in dataset.tables],
            "not_done": [_not_done(e) for e in dataset.not_done]}
