"""The report's analysis: stored records in, a :class:`~aeframe.report.structure.Report` out.

Every number the outputs show is computed here, once: the rows' summaries over seeds (mean, std,
95 % interval), the best row of each column, the paired comparison of each row with the reference
row, the reference values on the original images, the time-to-quality table, and the words for
each table's conditions. Renderers only read the result.
"""
from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aeframe.cells.record import CellRecord, Protocol, full_size_points, label_of
from aeframe.report.columns import METRICS, PACKED_UNCOMPARABLE, STATS, SUMMARISED_STATS, Column, table_columns
from aeframe.report.conditions import conditions_line, difference
from aeframe.report.grouping import PART_TITLES, Section, Table, condition_of, group, technique_identity
from aeframe.report.provenance import distinct, protocols, provenance
from aeframe.report.stats import confidence_interval, holm, mean_std, paired_t_test
from aeframe.report.structure import (
    BusySeed,
    CombinationRow,
    Comparison,
    ComparisonTable,
    DatasetReport,
    FigureLink,
    NotDone,
    OutsideBudget,
    QualityRow,
    Report,
    Row,
    Summary,
    TimeToQuality,
)

if TYPE_CHECKING:
    from aeframe.contract.metric import Metric
    from aeframe.report.pictures import Figure

# (dataset name, table key) -> the pictures drawn for that table (see aeframe.report.pictures).
Figures = Mapping[tuple[str, str], Sequence["Figure"]]

# Shares of the reference time (the shortest row's training time) at which rows are compared.
QUALITY_FRACTIONS = (0.25, 0.5, 1.0)
# A cell stops at the first step past its budget, so "by then" allows a little overrun.
_TIME_TOLERANCE = 0.01


def analyse(
    records: Sequence[CellRecord],
    metrics: Sequence[Metric],
    figures: Figures | None = None,
    link_base: Path | None = None,
) -> Report:
    """Everything the outputs show about ``records`` (oldest first); ``metrics`` pick and order the columns.

    ``figures`` are linked from their tables by paths relative to ``link_base`` (the directory the
    output is read from; default: the current one).
    """
    columns = table_columns(metrics)
    titles = {m.name: m.title or m.name for m in metrics}
    links = _Links(figures or {}, link_base or Path("."))
    sections = group(records)
    datasets = [_dataset(section, columns, titles, links) for section in sections]
    shown = {id(r) for section in sections for table in section.tables.values() for r in table.records}
    first_protocols: dict[str, dict[str, Protocol]] = {}
    for dataset in datasets:
        for table in dataset.tables:
            for label, protocol in table.protocols.items():
                first_protocols.setdefault(dataset.title, {}).setdefault(label, protocol)
    return Report(
        datasets=datasets,
        cells=list(records),
        in_table=[id(r) in shown for r in records],
        metric_names=[c.name for c in columns if c.is_metric],
        provenance=provenance(records),
        protocols=first_protocols,
    )


@dataclass
class _Links:
    figures: Figures
    base: Path

    def of(self, section: Section, table: Table) -> list[FigureLink]:
        """The table's figures with their paths as the output's reader should follow them."""
        found = self.figures.get((section.name, table.key), ())
        return [FigureLink(f.kind, Path(os.path.relpath(f.path, self.base)).as_posix(), f.caption) for f in found]


def _dataset(section: Section, columns: list[Column], titles: dict[str, str], links: _Links) -> DatasetReport:
    tables = list(section.tables.values())
    return DatasetReport(
        name=section.name,
        title=section.title,
        tables=[_table(table, _heading(tables, table), columns, titles, links.of(section, table)) for table in tables],
        not_done=[NotDone(m.record.key, label_of(m.record), m.record.config.seed, m.record.status, m.record.error,
                          condition_of(m.record), m.after_done, m.record.curve)
                  for m in section.not_done],
    )


def _heading(tables: Sequence[Table], table: Table) -> str | None:
    """What sets ``table`` apart from its dataset's other tables (its conditions, its part); None when
    it is the only one."""
    conditions = [t.condition for t in tables]
    differs = difference(conditions, table.condition) if len({c.key for c in conditions}) > 1 else ""
    return " · ".join(filter(None, [differs, PART_TITLES.get(table.part or "")])) or None


def _table(table: Table, heading: str | None, columns: list[Column], titles: dict[str, str],
           figures: list[FigureLink]) -> ComparisonTable:
    rows = [_row(label, records, columns) for label, records in table.rows.items()]
    reference = _reference_label(table)
    if reference is not None:
        for row in rows:
            if row.label != reference:
                row.comparisons = {c.name: _compare(table.rows[row.label], table.rows[reference], c)
                                   for c in columns if c.is_metric}
    _holm_in_place([row.comparisons for row in rows if row.comparisons])
    combinations, combined_by = _combinations(table, rows, columns)
    shown = [c for c in columns if not c.optional or any(row.summary(c) for row in rows)]
    for column in shown:
        if column.name == "train_seconds" and table.condition.budget.seconds is not None:
            continue  # under a time budget every row trains for it: no row is the fastest
        means = [summary.mean if (summary := row.summary(column)) else None for row in rows]
        for i in _best(means, column.better, column.text):
            rows[i].best.add(column.id)
    references = _references(table)
    found = provenance(table.records)
    return ComparisonTable(
        condition=table.condition,
        heading=heading,
        part=table.part,
        columns=shown,
        rows=rows,
        reference_label=reference,
        references=references,
        about=[f"{titles.get(name, name)}: {details['about']}" for name, details in references.items()
               if details.get("about")],
        marked_pairs=sorted({c.pairs for row in rows for c in (row.comparisons or {}).values() if c.significant}),
        note=conditions_line(table.condition, table.records, found["versions"]),
        outside_budget=_outside_budget(table),
        combinations=combinations,
        combined_by=combined_by,
        time_to_quality=_time_to_quality(table, rows),
        provenance=found,
        protocols=protocols(table.rows),
        figures=figures,
    )


# -- rows --------------------------------------------------------------------------------------


def _numbers(records: Sequence[CellRecord], source: str, name: str) -> list[float]:
    found = (r.metrics.get(name) if source == METRICS else r.stats.get(name) for r in records)
    return [float(v) for v in found if isinstance(v, (int, float)) and not isinstance(v, bool)]


def _stat_records(records: Sequence[CellRecord], name: str) -> list[CellRecord]:
    """The records whose ``name`` the table summarises: a time only from cells that had the device to
    themselves (a packed cell's clock also measured its neighbours)."""
    if name in PACKED_UNCOMPARABLE:
        records = [r for r in records if not r.stats.packed]
    return _with_known_costs(records) if name == "outside_budget_seconds" else list(records)


def _with_known_costs(records: Sequence[CellRecord]) -> list[CellRecord]:
    """The records whose every preparation has a known cost: cells stored before aeframe left an
    unknown cost out of ``outside_budget_seconds`` counted it as 0 s."""
    return [r for r in records
            if all(isinstance(p, Mapping) and _finite_number(p.get("seconds")) for p in r.stats.preparation or [])]


def _summarise(values: list[float]) -> Summary | None:
    if not values:
        return None
    mean, std = mean_std(values)
    return Summary(values, mean, std, confidence_interval(values, 0.95))


def _not_scored(record: CellRecord, name: str) -> str | None:
    """Why ``record`` has no value for metric ``name``, as the metric's details say (``not_scored``)."""
    details = record.stats.metric_details
    found = details.get(name) if isinstance(details, Mapping) else None
    reason = found.get("not_scored") if isinstance(found, Mapping) else None
    return reason if isinstance(reason, str) and reason else None


def _row(label: str, records: list[CellRecord], columns: list[Column]) -> Row:
    not_scored = {}
    metrics = {}
    for column in (c for c in columns if c.is_metric):
        reasons = [reason for r in records if (reason := _not_scored(r, column.name))]
        if reasons:
            not_scored[column.name] = reasons[0]
        scored = [r for r in records if not _not_scored(r, column.name)]
        metrics[column.name] = _summarise(_numbers(scored, METRICS, column.name))
    return Row(
        label=label,
        seeds=[r.config.seed for r in records],
        keys=[r.key for r in records],
        metrics=metrics,
        stats={name: _summarise(_numbers(_stat_records(records, name), STATS, name)) for name in SUMMARISED_STATS},
        # A technique's size does not depend on the seed; more than one value flags that it did.
        params=distinct(_numbers(records, STATS, "params")),
        comparisons=None,
        busy=[BusySeed(r.config.seed, _number_or_none(r.stats.cpu_share),
                       _number_or_none(r.stats.gpu_other_processes))
              for r in records if r.stats.busy and not r.stats.packed],  # packed: busy by design, times left out
        not_scored=not_scored,
        stand_in=next((note for r in records if isinstance(note := r.stats.stand_in, str)), None),
        curves=[r.curve for r in records],
    )


def _number_or_none(value: Any) -> Any:
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _best(means: Sequence[float | None], better: str | None, text: Callable[[float], str]) -> set[int]:
    """Rows whose mean is the best; ties at the displayed precision are all best, unless all tie."""
    candidates = [(i, m) for i, m in enumerate(means) if m is not None and not math.isnan(m)]
    if better is None or len(candidates) < 2:
        return set()
    pick = max if better == "higher" else min
    best = text(pick(m for _, m in candidates))
    rows = {i for i, m in candidates if text(m) == best}
    # Bold on every row would single nothing out.
    return rows if len(rows) < len(candidates) else set()


# -- comparison against the reference row --------------------------------------------------------


def _reference_label(table: Table) -> str | None:
    """The row the others are compared with: the reference technique's (the study's Baseline), if any.

    Cells record ``config.reference`` when they train the technique that declares itself the
    reference, alone and at its default parameters; the report needs no technique's name.
    """
    return next((label for label, records in table.rows.items() if records[0].config.reference), None)


def _finite_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _compare(records: Sequence[CellRecord], reference: Sequence[CellRecord], column: Column) -> Comparison:
    """Pair ``records`` with ``reference`` by seed number; seeds either side lacks, or whose value
    is missing or not finite on either side, are left out."""
    def value(record: CellRecord) -> Any:
        return record.metrics.get(column.name)

    by_seed = {}
    for record in reference:
        seed, v = record.config.seed, value(record)
        if seed is not None and _finite_number(v):
            by_seed[json.dumps(seed)] = float(v)
    ours, theirs = [], []
    for record in records:
        seed, v = record.config.seed, value(record)
        if seed is not None and _finite_number(v) and json.dumps(seed) in by_seed:
            ours.append(float(v))
            theirs.append(by_seed.pop(json.dumps(seed)))  # one pair per seed
    if not ours:
        return Comparison(0, None, None, None)
    difference = mean_std([a - b for a, b in zip(ours, theirs)])[0]
    result = paired_t_test(ours, theirs)
    t, p = result if result is not None else (None, None)
    return Comparison(len(ours), difference, t, p)


def _combinations(table: Table, rows: list[Row], columns: list[Column]) -> tuple[list[CombinationRow], str | None]:
    """Each row of two techniques whose techniques alone are rows here, against the better of them.

    The better one is chosen by the first metric column with a direction (the mean over seeds); the
    pair is then compared with it on every metric by the paired test, Holm-corrected over the
    combinations' own tests. Techniques are matched by name and parameters, the learning rate
    aside (a pair may settle its members' rates). Returns the rows and the deciding metric.
    """
    metric_columns = [c for c in columns if c.is_metric]
    deciding = next((c for c in metric_columns if c.better), None)
    if deciding is None:
        return [], None

    singles: dict[tuple, str] = {}
    for label, records in table.rows.items():
        if len(records[0].config.techniques) == 1:
            singles.setdefault(technique_identity(records[0].config.techniques[0]), label)
    summaries = {row.label: row.metrics.get(deciding.name) for row in rows}
    found = []
    for label, records in table.rows.items():
        refs = records[0].config.techniques
        parts = [singles.get(technique_identity(ref)) for ref in refs]
        if len(refs) != 2 or None in parts or any(summaries.get(p) is None for p in parts):
            continue
        means = [summaries[p].mean for p in parts]
        best = (min if deciding.better == "lower" else max)(means)
        against = parts[means.index(best)]
        found.append(CombinationRow(label, parts, against,
                                    {c.name: _compare(records, table.rows[against], c) for c in metric_columns}))
    _holm_in_place([row.comparisons for row in found])
    return found, deciding.name if found else None


def _outside_budget(table: Table) -> list[OutsideBudget]:
    """Per row, each kind of preparation its cells reported (``stats["preparation"]``), in order of appearance."""
    found = []
    for label, records in table.rows.items():
        kinds: dict[str, list[Mapping[str, Any]]] = {}
        for record in records:
            for entry in record.stats.preparation or []:
                if isinstance(entry, Mapping) and isinstance(entry.get("what"), str):
                    kinds.setdefault(entry["what"], []).append(entry)
        for what, entries in kinds.items():
            known = [float(e["seconds"]) for e in entries if _finite_number(e.get("seconds"))]
            found.append(OutsideBudget(label, what, mean_std(known)[0] if known else None, len(entries),
                                       sum(bool(e.get("reused")) for e in entries)))
    return found


def _holm_in_place(families: list[dict[str, Comparison]]) -> None:
    """Holm's correction over every comparison in ``families`` (metric name -> comparison, per row),
    taken as one family of tests: with some 20 tests a table, uncorrected p < 0.05 would mark about
    one difference that is not there. Each usable comparison gets its ``p_holm``."""
    found = [(comparisons, name) for comparisons in families for name in comparisons]
    adjusted = holm([comparisons[name].p for comparisons, name in found])
    for (comparisons, name), p_holm in zip(found, adjusted):
        if p_holm is not None and not math.isnan(p_holm):
            comparisons[name] = replace(comparisons[name], p_holm=p_holm)


# -- reference values ----------------------------------------------------------------------------


def _references(table: Table) -> dict[str, dict[str, Any]]:
    """Metric name -> the details (``reference``, ``about``, ...) a metric stored for this table's dataset."""
    found: dict[str, dict[str, Any]] = {}
    for record in table.records:
        details_by_metric = record.stats.metric_details
        if not isinstance(details_by_metric, Mapping):
            continue
        for name, details in details_by_metric.items():
            if name not in found and isinstance(details, Mapping) and _finite_number(details.get("reference")):
                found[name] = dict(details)
    return found


# -- time to quality -------------------------------------------------------------------------------


def _mse_at(record: CellRecord, seconds: float) -> float | None:
    """The test MSE the cell had reached after ``seconds`` of training: its last full-size curve point by then."""
    reached = [mse for at, mse in full_size_points(record) if at <= seconds * (1 + _TIME_TOLERANCE)]
    return reached[-1] if reached and math.isfinite(reached[-1]) else None


def _time_to_quality(table: Table, rows: list[Row]) -> TimeToQuality | None:
    """The reference time and, per row, the mean test MSE reached at each of ``QUALITY_FRACTIONS`` of it.

    The reference is the shortest mean training time of the table's rows, so every row is looked at
    within the time it actually trained. None when no row has a curve.
    """
    times = [summary.mean for row in rows if (summary := row.stats["train_seconds"])]
    if not times or not any(r.curve for r in table.records):
        return None
    reference = min(times)
    quality = []
    for label, records in table.rows.items():
        values: list[float | None] = []
        for fraction in QUALITY_FRACTIONS:
            reached = [v for v in (_mse_at(r, fraction * reference) for r in records) if v is not None]
            # A mean over only the seeds that had an evaluation by then would flatter the row.
            values.append(mean_std(reached)[0] if len(reached) == len(records) else None)
        quality.append(QualityRow(label, values))
    best = [_best([row.test_mse[j] for row in quality], "lower", str) for j in range(len(QUALITY_FRACTIONS))]
    return TimeToQuality(reference, QUALITY_FRACTIONS, quality, best)
