"""Comparison tables from stored cells: markdown for reading, JSON and CSV for further analysis.

Tables are grouped per dataset and condition (budget, device type, numeric precision, dataset
parameters, learning-rate policy; see :mod:`aeframe.grouping`). Seeds of the same technique under
the same condition are folded into one row as ``mean ± std``; with several seeds each row's metrics
are also compared with the Baseline row's by a paired t-test over shared seeds (``†`` marks
p < 0.05; the JSON holds the tests and 95 % intervals, see :mod:`aeframe.stats`).
"""
from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from dataclasses import dataclass
from typing import Any

from tabulate import tabulate

from aeframe.durations import describe_budget, format_duration
from aeframe.errors import first_line
from aeframe.grouping import Section, Table, condition_key, condition_of, dataset_of, group, label_of
from aeframe.metric import Metric
from aeframe.pictures import Figure
from aeframe.provenance import distinct, protocols, provenance
from aeframe.record import CellRecord, full_size_points
from aeframe.stats import confidence_interval, mean_std, paired_t_test

FORMATS = ("markdown", "json", "csv")

_MISSING = "–"
_LR_TEXT = {
    "study": "Learning rates: each technique's own (the study's)",
    "find": "Learning rates: a range test per cell ('valley'), its time in the LR Find column",
}


Figures = Mapping[tuple[str, str], Sequence[Figure]]


def render(
    records: Sequence[CellRecord],
    metrics: Sequence[Metric],
    fmt: str = "markdown",
    figures: Figures | None = None,
    link_base: Path | None = None,
) -> str:
    """Render ``records`` as ``markdown``, ``json`` or ``csv``; ``metrics`` pick and order the columns.

    Records are expected oldest first (as :meth:`aeframe.store.Store.records` returns them): when
    two records describe the same technique, dataset, condition and seed, the later one is used.
    ``figures`` (from :func:`aeframe.pictures.write_figures`) are linked under their tables, by
    paths relative to ``link_base`` (the directory the output is read from; default: the current one).
    """
    links = _Links(figures or {}, link_base or Path("."))
    if fmt == "markdown":
        return _markdown(group(records), metrics, links)
    if fmt == "json":
        return _json(group(records), metrics, links)
    if fmt == "csv":
        return _csv(records, metrics)
    raise ValueError(f"unknown report format {fmt!r}; use one of {', '.join(FORMATS)}")


# -- figures ---------------------------------------------------------------------------------


@dataclass
class _Links:
    figures: Figures
    base: Path

    def of(self, section: Section, table: Table) -> list[tuple[Figure, str]]:
        """The table's figures with their paths as the output's reader should follow them."""
        found = self.figures.get((section.name, condition_key(table.condition)), ())
        return [(f, Path(os.path.relpath(f.path, self.base)).as_posix()) for f in found]


# -- columns -----------------------------------------------------------------------------------


@dataclass
class _Column:
    title: str
    value: Callable[[CellRecord], Any]
    text: Callable[[float], str]
    better: str | None = None  # "lower" / "higher": bold the best row; None: never bold
    collapse_equal: bool = False  # show one value, not "x ± 0", when every seed agrees
    optional: bool = False  # left out of a table where no record has it
    metric: str | None = None  # the metric's name: compared against the Baseline (the † marker)


def _stat(name: str) -> Callable[[CellRecord], Any]:
    return lambda record: record.stats.get(name)


def _metric_value(name: str) -> Callable[[CellRecord], Any]:
    return lambda record: record.metrics.get(name)


def _columns(metrics: Sequence[Metric]) -> list[_Column]:
    columns = [
        _Column(m.title or m.name, _metric_value(m.name), lambda v, f=m.format: format(v, f), m.better,
                metric=m.name)
        for m in metrics
    ]
    return columns + [
        _Column("Training Time", _stat("train_seconds"), format_duration, "lower"),
        # Under a time budget the last epoch is usually partial.
        _Column("Epochs", _stat("epochs"), lambda v: f"{v:.2f}", collapse_equal=True),
        _Column("Images/s", _stat("images_per_second"), lambda v: f"{v:,.0f}", "higher"),
        _Column("Params", _stat("params"), lambda v: f"{round(v):,}", collapse_equal=True),
        # The range test of --lr find is not training: its cost shows apart.
        _Column("LR Find", _stat("lr_find_seconds"), format_duration, optional=True),
        # Neither is torch.compile's first compilation (--compile).
        _Column("Compile", _stat("compile_seconds"), format_duration, optional=True),
    ]


def _numbers(records: Sequence[CellRecord], value: Callable[[CellRecord], Any]) -> list[float]:
    return [float(v) for v in map(value, records) if isinstance(v, (int, float)) and not isinstance(v, bool)]


def _cell(values: Sequence[float], column: _Column) -> str:
    if not values:
        return _MISSING
    mean, std = mean_std(values)
    if std is None or (column.collapse_equal and len(set(values)) == 1):
        return _text(values[0], column)
    return f"{_text(mean, column)} ± {_text(std, column)}"


def _text(value: float, column: _Column) -> str:
    # A diverged-but-finished seed can leave nan/inf; show it plainly rather than crash.
    return column.text(value) if math.isfinite(value) else str(value)


def _best_rows(means: Sequence[float | None], column: _Column) -> set[int]:
    """Rows whose mean is the best; ties at the displayed precision are all best, unless all tie."""
    candidates = [(i, m) for i, m in enumerate(means) if m is not None and not math.isnan(m)]
    if column.better is None or len(candidates) < 2:
        return set()
    pick = max if column.better == "higher" else min
    best = _text(pick(m for _, m in candidates), column)
    rows = {i for i, m in candidates if _text(m, column) == best}
    # Bold on every row would single nothing out.
    return rows if len(rows) < len(candidates) else set()


# -- markdown ----------------------------------------------------------------------------------


def _markdown(sections: list[Section], metrics: Sequence[Metric], links: _Links) -> str:
    if not sections:
        return "No results yet.\n"
    columns = _columns(metrics)
    parts: list[str] = []
    for section in sections:
        parts.append(f"## {section.title}")
        tables = list(section.tables.values())
        for table in tables:
            if len(tables) > 1:
                parts.append(f"### {_difference([t.condition for t in tables], table.condition)}")
            parts.append(_markdown_table(table, columns))
            marker_line = _marker_line(table, columns)
            if marker_line:
                parts.append(marker_line)
            about = _about_lines(table, metrics)
            if about:
                parts.append(about)
            parts.append(_note(table))
            quality = _time_to_quality_table(table)
            if quality:
                parts.append(quality)
            parts.extend(f"![{figure.caption}]({link})" for figure, link in links.of(section, table))
        if section.not_done:
            parts.append(_not_done_list(section.not_done))
    return "\n\n".join(parts) + "\n"


def _markdown_table(table: Table, columns: list[_Column]) -> str:
    labels = list(table.rows)
    records = table.records
    columns = [c for c in columns if not c.optional or _numbers(records, c.value)]
    values = [[_numbers(table.rows[label], c.value) for c in columns] for label in labels]
    body = [
        # A "|" in a label would end its cell early.
        [label.replace("|", "\\|")] + [_cell(v, c) for v, c in zip(row, columns)]
        for label, row in zip(labels, values)
    ]
    for j, column in enumerate(columns):
        means = [mean_std(row[j])[0] if row[j] else None for row in values]
        for i in _best_rows(means, column):
            body[i][j + 1] = f"**{body[i][j + 1]}**"
    comparisons = _comparisons(table, columns)
    for i, label in enumerate(labels):
        for j, column in enumerate(columns):
            if column.metric and _significant(comparisons.get(label, {}).get(column.metric)):
                body[i][j + 1] += _MARKER
    headers = ["Method"] + [c.title for c in columns]
    references = _references(table)
    if references:
        # The metrics' values on the original images: what a perfect reconstruction would score.
        body.insert(0, [REFERENCE_ROW] + [
            _text(references[c.metric]["reference"], c) if c.metric in references else _MISSING for c in columns
        ])
    if any(len(records) > 1 for records in table.rows.values()):
        headers.append("Seeds")
        for row, label in zip(body[len(body) - len(labels):], labels):
            row.append(str(len(table.rows[label])))
        if references:
            body[0].append(_MISSING)
    return tabulate(
        body,
        headers=headers,
        tablefmt="pipe",
        colalign=["left"] + ["right"] * (len(headers) - 1),
        # Keep our formatting: tabulate would otherwise re-parse "0.001200" into "0.0012".
        disable_numparse=True,
    )


def _budget_text(budget: dict[str, Any]) -> str:
    return describe_budget(budget.get("epochs"), budget.get("seconds"), per_cell=True)


def _params_text(params: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v if isinstance(v, str) else json.dumps(v)}" for k, v in sorted(params.items())) or "defaults"


def _condition_parts(condition: dict[str, Any]) -> dict[str, str]:
    return {
        "budget": f"Budget: {_budget_text(condition['budget'])}",
        "device_type": f"Device: {condition['device_type'] or 'unknown'}",
        "dataset_params": f"Dataset parameters: {_params_text(condition['dataset_params'])}",
        "lr": _LR_TEXT[condition["lr"]],
        "precision": f"Precision: {condition['precision']}",
    }


def _difference(conditions: list[dict[str, Any]], condition: dict[str, Any]) -> str:
    """Name the parts of ``condition`` that differ among a dataset's tables."""
    differing = [k for k in condition if len({condition_key(c[k]) for c in conditions}) > 1]
    parts = _condition_parts(condition)
    return " · ".join(parts[k] for k in differing)


def _note(table: Table) -> str:
    """The conditions line under a table: budget, seeds, device, versions."""
    records = table.records
    parts = [f"Budget: {_budget_text(table.condition['budget'])}"]
    if table.condition["dataset_params"]:
        parts.append(f"Dataset parameters: {_params_text(table.condition['dataset_params'])}")
    if table.condition["lr"] != "study":
        parts.append(_LR_TEXT[table.condition["lr"]])
    seeds = distinct([r.config.get("seed") for r in records])
    try:
        seeds.sort()
    except TypeError:  # mixed seed types: keep the order of appearance
        pass
    if seeds:
        parts.append(f"Seed{'s' if len(seeds) > 1 else ''}: {', '.join(map(str, seeds))}")
    names = distinct([(r.config.get("device") or {}).get("name") for r in records])
    device_type = table.condition["device_type"] or "unknown"
    parts.append(f"Device: {' / '.join(names)} ({device_type})" if names else f"Device: {device_type}")
    parts.append(_numerics_text(table.condition["precision"], records))
    version_texts = [f"{package} {' / '.join(map(str, found))}"
                     for package, found in provenance(records)["versions"].items()]
    if version_texts:
        parts.append(f"Versions: {', '.join(version_texts)}")
    # The warm-up policy: nothing is left out of training time but a compilation (its own column).
    parts.append("Training time: device-synchronised, from the first step, evaluation apart")
    return " · ".join(parts)


def _numerics_text(precision: str, records: Sequence[CellRecord]) -> str:
    """Precision, and the memory format and compilation where any row used them (with both, both show)."""
    text = f"Precision: {precision}"
    formats = distinct(["channels_last" if r.config.get("channels_last") else "contiguous" for r in records])
    if formats != ["contiguous"]:
        text += f", {' / '.join(formats)}"
    compiled = distinct(["compiled" if r.config.get("compile") else "not compiled" for r in records])
    if compiled != ["not compiled"]:
        text += f", {' / '.join(compiled)} (compile time apart, in the Compile column)"
    return text


def _not_done_list(records: Sequence[CellRecord]) -> str:
    """One bullet per label, status and reason, naming the seeds it holds for.

    Seeds that failed or were skipped for the same reason share a bullet; the condition is named
    only where it tells apart entries of the same list.
    """
    conditions = [condition_of(r) for r in records]
    several_seeds = len({json.dumps(r.config.get("seed")) for r in records}) > 1
    several_conditions = len({condition_key(c) for c in conditions}) > 1
    bullets: dict[tuple[str, str, str, str], list[Any]] = {}
    for record, condition in zip(records, conditions):
        where = _difference(conditions, condition) if several_conditions else ""
        entry = (label_of(record), where, record.status, first_line(record.error))
        bullets.setdefault(entry, []).append(record.config.get("seed"))
    lines = ["Not in the table:", ""]
    for (label, where, status, reason), seeds in bullets.items():
        qualifiers = []
        seeds = [s for s in seeds if s is not None]
        if several_seeds and seeds:
            qualifiers.append(f"seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, seeds))}")
        if where:
            qualifiers.append(where)
        name = label + (f" ({'; '.join(qualifiers)})" if qualifiers else "")
        lines.append(f"- {name}: {status}" + (f" ({reason})" if reason else ""))
    return "\n".join(lines)


# -- reference values ----------------------------------------------------------------------------

REFERENCE_ROW = "Original Image"


def _references(table: Table) -> dict[str, dict[str, Any]]:
    """Metric name -> the details (``reference``, ``about``, ...) a metric stored for this table's dataset."""
    found: dict[str, dict[str, Any]] = {}
    for records in table.rows.values():
        for record in records:
            for name, details in (record.stats.get("metric_details") or {}).items():
                if name not in found and _finite_number(details.get("reference")):
                    found[name] = details
    return found


def _about_lines(table: Table, metrics: Sequence[Metric]) -> str:
    references = _references(table)
    titles = {m.name: m.title or m.name for m in metrics}
    return "\n".join(
        f"{titles.get(name, name)}: {details['about']}" for name, details in references.items() if details.get("about")
    )


# -- comparison against the Baseline ---------------------------------------------------------

SIGNIFICANCE = 0.05  # a metric cell gets the marker when its paired test gives p below this
_MARKER = "†"


@dataclass
class _Comparison:
    """A row's metric against the Baseline's, over the seeds both rows have (a paired t-test)."""

    pairs: int
    mean_difference: float | None  # mean of (row − Baseline) over the pairs; None without pairs
    t: float | None  # None for fewer than two pairs
    p: float | None

    def to_json(self) -> dict[str, Any]:
        return {"test": "paired t-test", "pairs": self.pairs, "mean_difference": _finite(self.mean_difference),
                "t": _finite(self.t), "p": _finite(self.p)}


def _finite_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _compare(records: Sequence[CellRecord], baseline: Sequence[CellRecord],
             value: Callable[[CellRecord], Any]) -> _Comparison:
    """Pair ``records`` with ``baseline`` by seed number; seeds either side lacks, or whose value
    is missing or not finite on either side, are left out."""
    by_seed = {}
    for record in baseline:
        seed, v = record.config.get("seed"), value(record)
        if seed is not None and _finite_number(v):
            by_seed[json.dumps(seed)] = float(v)
    ours, theirs = [], []
    for record in records:
        seed, v = record.config.get("seed"), value(record)
        if seed is not None and _finite_number(v) and json.dumps(seed) in by_seed:
            ours.append(float(v))
            theirs.append(by_seed.pop(json.dumps(seed)))  # one pair per seed
    if not ours:
        return _Comparison(0, None, None, None)
    difference = mean_std([a - b for a, b in zip(ours, theirs)])[0]
    result = paired_t_test(ours, theirs)
    t, p = result if result is not None else (None, None)
    return _Comparison(len(ours), difference, t, p)


def _referencelabel_of(table: Table) -> str | None:
    """The row the others are compared with: the reference technique's (the study's Baseline), if any.

    Cells record ``config["reference"]`` when they train the technique that declares itself the
    reference, alone and at its default parameters; the report needs no technique's name.
    """
    return next((label for label, records in table.rows.items() if records[0].config.get("reference")), None)


def _comparisons(table: Table, columns: Sequence[_Column]) -> dict[str, dict[str, _Comparison]]:
    """Row label -> metric name -> comparison, for every row but the reference's (none without one)."""
    reference = _referencelabel_of(table)
    if reference is None:
        return {}
    return {
        label: {c.metric: _compare(records, table.rows[reference], c.value) for c in columns if c.metric}
        for label, records in table.rows.items()
        if label != reference
    }


def _significant(comparison: _Comparison | None) -> bool:
    return comparison is not None and comparison.p is not None and comparison.p < SIGNIFICANCE


def _marker_line(table: Table, columns: Sequence[_Column]) -> str:
    """The line that explains the marker, when the table shows one; else empty."""
    pairs = sorted({c.pairs for row in _comparisons(table, columns).values() for c in row.values()
                    if _significant(c)})
    if not pairs:
        return ""
    counts = str(pairs[0]) if len(pairs) == 1 else f"{pairs[0]}–{pairs[-1]}"
    return (f"{_MARKER} differs from the {_referencelabel_of(table)} at p < {SIGNIFICANCE:g}, "
            f"paired t-test over {counts} shared seeds")


# -- time to quality -------------------------------------------------------------------------

# Shares of the reference time (the shortest row's training time) at which rows are compared.
QUALITY_FRACTIONS = (0.25, 0.5, 1.0)


# A cell stops at the first step past its budget, so "by then" allows a little overrun.
_TIME_TOLERANCE = 0.01


def _mse_at(record: CellRecord, seconds: float) -> float | None:
    """The test MSE the cell had reached after ``seconds`` of training: its last full-size curve point by then."""
    reached = [mse for at, mse in full_size_points(record) if at <= seconds * (1 + _TIME_TOLERANCE)]
    return reached[-1] if reached and math.isfinite(reached[-1]) else None


def _time_to_quality(table: Table) -> tuple[float, list[tuple[str, list[float | None]]]] | None:
    """The reference time and, per row, the mean test MSE reached at each of ``QUALITY_FRACTIONS`` of it.

    The reference is the shortest mean training time of the table's rows, so every row is looked at
    within the time it actually trained. None when no row has a curve.
    """
    times = [mean_std(v)[0] for v in (_numbers(rs, _stat("train_seconds")) for rs in table.rows.values()) if v]
    if not times or not any(r.curve for rs in table.rows.values() for r in rs):
        return None
    reference = min(times)
    rows = []
    for label, records in table.rows.items():
        values = []
        for fraction in QUALITY_FRACTIONS:
            reached = [v for v in (_mse_at(r, fraction * reference) for r in records) if v is not None]
            # A mean over only the seeds that had an evaluation by then would flatter the row.
            values.append(mean_std(reached)[0] if len(reached) == len(records) else None)
        rows.append((label, values))
    return reference, rows


def _time_to_quality_table(table: Table) -> str:
    """The markdown comparison at equal training time; empty for a single row (nothing to compare)."""
    found = _time_to_quality(table)
    if found is None or len(found[1]) < 2 or all(v is None for _, values in found[1] for v in values):
        return ""
    reference, rows = found
    headers = ["Method"] + [f"{f:.0%} ({format_duration(f * reference)})" for f in QUALITY_FRACTIONS]
    body = [[label.replace("|", "\\|")] + [_MISSING if v is None else f"{v:.6f}" for v in values] for label, values in rows]
    for j in range(len(QUALITY_FRACTIONS)):
        column = _Column("", lambda r: None, str, "lower")
        for i in _best_rows([values[j] for _, values in rows], column):
            body[i][j + 1] = f"**{body[i][j + 1]}**"
    intro = ("Test MSE reached at equal training time (from each cell's per-epoch curve, full-size "
             "evaluations only; – where none had happened by then):")
    return intro + "\n\n" + tabulate(body, headers=headers, tablefmt="pipe",
                                      colalign=["left"] + ["right"] * len(QUALITY_FRACTIONS), disable_numparse=True)


def _time_to_quality_json(table: Table) -> dict[str, Any] | None:
    found = _time_to_quality(table)
    if found is None:
        return None
    reference, rows = found
    return {
        "reference_seconds": reference,
        "fractions": list(QUALITY_FRACTIONS),
        "rows": [{"label": label, "test_mse": values} for label, values in rows],
    }


# -- json --------------------------------------------------------------------------------------


def _finite(value: float | None) -> float | None:
    # JSON has no NaN or Infinity; null keeps the output parseable by every reader.
    return value if value is not None and math.isfinite(value) else None


def _summary(values: Sequence[float]) -> dict[str, Any] | None:
    if not values:
        return None
    mean, std = mean_std(values)
    return {"mean": _finite(mean), "std": _finite(std), "values": [_finite(v) for v in values]}


def _ci95(values: Sequence[float]) -> list[float | None] | None:
    interval = confidence_interval(values, 0.95)
    return None if interval is None else [_finite(interval[0]), _finite(interval[1])]


_JSON_STATS = ("train_seconds", "eval_seconds", "lr_find_seconds", "compile_seconds", "epochs", "images_per_second")


def _json(sections: list[Section], metrics: Sequence[Metric], links: _Links) -> str:
    datasets = []
    metric_columns = [c for c in _columns(metrics) if c.metric]
    for section in sections:
        tables = []
        for table in section.tables.values():
            rows = []
            comparisons = _comparisons(table, metric_columns)
            for label, records in table.rows.items():
                params = distinct(_numbers(records, _stat("params")))
                rows.append(
                    {
                        "label": label,
                        "seeds": [r.config.get("seed") for r in records],
                        "keys": [r.key for r in records],
                        "metrics": {
                            m.name: _summary(_numbers(records, _metric_value(m.name))) for m in metrics
                        },
                        **{name: _summary(_numbers(records, _stat(name))) for name in _JSON_STATS},
                        # A technique's size does not depend on the seed; a list flags if it did.
                        "params": int(params[0]) if len(params) == 1 else [int(p) for p in params] or None,
                        # 95 % Student-t intervals for the means, laid out like the summaries above.
                        "ci95": {
                            "metrics": {
                                m.name: _ci95(_numbers(records, _metric_value(m.name))) for m in metrics
                            },
                            **{name: _ci95(_numbers(records, _stat(name))) for name in _JSON_STATS},
                        },
                        "vs_baseline": (
                            {name: c.to_json() for name, c in comparisons[label].items()}
                            if label in comparisons else None
                        ),
                    }
                )
            tables.append({"condition": table.condition, "rows": rows, "note": _note(table),
                           "reference": {name: d for name, d in _references(table).items()},
                           "time_to_quality": _time_to_quality_json(table),
                           "provenance": provenance(table.records),
                           "protocols": protocols(table.rows),
                           "figures": [{"kind": f.kind, "path": link, "caption": f.caption}
                                       for f, link in links.of(section, table)]})
        not_done = [
            {
                "key": r.key,
                "label": label_of(r),
                "seed": r.config.get("seed"),
                "status": r.status,
                "error": r.error,
                "condition": condition_of(r),
            }
            for r in section.not_done
        ]
        datasets.append(
            {"name": section.name, "title": section.title, "tables": tables, "not_done": not_done}
        )
    return json.dumps({"datasets": datasets}, indent=2, allow_nan=False) + "\n"


# -- csv ---------------------------------------------------------------------------------------

_STAT_COLUMNS = ("train_seconds", "eval_seconds", "lr_find_seconds", "compile_seconds", "epochs", "steps",
                 "images_per_second", "params")


def _csv(records: Sequence[CellRecord], metrics: Sequence[Metric]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(
        ["key", "label", "dataset", "seed", "status"]
        + [m.name for m in metrics]
        + list(_STAT_COLUMNS)
        + ["budget_epochs", "budget_seconds", "device", "precision", "error"]
    )
    for r in records:
        budget = r.config.get("budget") or {}
        device = r.config.get("device") or {}
        device_text = " ".join(
            filter(None, [device.get("name"), f"({device['type']})" if device.get("type") else None])
        )
        writer.writerow(
            [r.key, label_of(r), dataset_of(r).get("name"), r.config.get("seed"), r.status]
            + [r.metrics.get(m.name) for m in metrics]
            + [r.stats.get(name) for name in _STAT_COLUMNS]
            + [budget.get("epochs"), budget.get("seconds"), device_text, r.config.get("precision", "fp32"),
               first_line(r.error)]
        )
    return out.getvalue()
