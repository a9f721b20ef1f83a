"""The report as plain data: what :func:`aeframe.report.analysis.analyse` computes once and every
renderer (markdown, JSON, CSV, the leaderboard page) only reads.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from aeframe.cells.record import CellRecord, Protocol
from aeframe.report.columns import Column
from aeframe.report.grouping import Condition

SIGNIFICANCE = 0.05  # a comparison with p below this is marked in the markdown


@dataclass(frozen=True)
class Summary:
    """One number of one row over its seeds."""

    values: list[float]  # one per seed that has it, in the row's order
    mean: float
    std: float | None  # sample standard deviation; None for a single value
    ci95: tuple[float, float] | None  # Student-t 95 % interval of the mean; None for a single value


@dataclass(frozen=True)
class Comparison:
    """A row's metric against the reference row's, over the seeds both rows have (a paired t-test)."""

    pairs: int
    mean_difference: float | None  # mean of (row − reference) over the pairs; None without pairs
    t: float | None  # None for fewer than two pairs
    p: float | None  # the test's own p (aeframe.report.stats.paired_t_test: never 0 for equal differences)
    # p after Holm's correction over every comparison of its table; what the marker uses. None: not corrected.
    p_holm: float | None = None

    @property
    def significant(self) -> bool:
        p = self.p_holm if self.p_holm is not None else self.p
        return p is not None and p < SIGNIFICANCE


@dataclass(frozen=True)
class BusySeed:
    """A seed of a row that trained on a busy machine."""

    seed: Any
    cpu_share: float | None  # share of the CPU its threads got while training
    gpu_other_processes: int | None  # other processes seen on its GPU


@dataclass
class Row:
    """One technique label of a table: every seed folded together."""

    label: str
    seeds: list[Any]
    keys: list[str]
    metrics: dict[str, Summary | None]  # metric name -> summary (None: no seed has it)
    stats: dict[str, Summary | None]  # run statistic (columns.SUMMARISED_STATS) -> summary
    params: list[float]  # the distinct parameter counts of its seeds (one, unless they disagree)
    comparisons: dict[str, Comparison] | None  # metric name -> comparison; None on the reference row
    best: set[str] = field(default_factory=set)  # ids of the columns whose best mean this row has
    # Seeds whose training clock was shared (aeframe.cells.record.CellStats.busy): seed -> what it got.
    busy: list[BusySeed] = field(default_factory=list)
    # Metric name -> why the row has no value for it (a metric's ``not_scored`` detail).
    not_scored: dict[str, str] = field(default_factory=dict)
    # What the row stands in for, offline (bench --stand-ins: Technique.stand_in's sentence); None: itself.
    stand_in: str | None = None
    # Each seed's per-epoch curve as stored (CellRecord.curve), in the order of ``seeds``.
    curves: list[list[dict[str, Any]]] = field(default_factory=list)

    def summary(self, column: Column) -> Summary | None:
        return (self.metrics if column.is_metric else self.stats).get(column.name)


@dataclass(frozen=True)
class QualityRow:
    label: str
    test_mse: list[float | None]  # mean test MSE reached at each fraction; None where a seed had none


@dataclass(frozen=True)
class TimeToQuality:
    """The rows' test MSE at shares of the reference time (the shortest mean training time)."""

    reference_seconds: float
    fractions: tuple[float, ...]
    rows: list[QualityRow]
    best: list[set[int]]  # per fraction, the indices of the rows with the lowest MSE

    @property
    def comparable(self) -> bool:
        """Whether there is something to compare: two rows, and some value."""
        return len(self.rows) >= 2 and any(v is not None for row in self.rows for v in row.test_mse)


@dataclass(frozen=True)
class FigureLink:
    kind: str
    path: str  # as the output's reader follows it
    caption: str


@dataclass(frozen=True)
class OutsideBudget:
    """One kind of work a row's cells did outside the training budget (a technique's preparation)."""

    label: str  # the row
    what: str  # as the technique described it
    seconds: float | None  # its cost when it was done (mean over the cells that know it); None: unknown
    cells: int  # how many of the row's cells needed it
    reused: int  # of those, how many took it from the cache instead of doing it

    def to_json(self) -> dict[str, Any]:
        return {"label": self.label, "what": self.what, "seconds": self.seconds, "cells": self.cells,
                "reused": self.reused}


@dataclass(frozen=True)
class CombinationRow:
    """A row that trains two techniques together, against the better of the two alone (same table)."""

    label: str  # the pair's row
    parts: list[str]  # the rows of its two techniques alone
    against: str  # the better of them by the table's deciding metric (ComparisonTable.combined_by)
    comparisons: dict[str, Comparison]  # metric name -> the pair against ``against`` (paired, Holm-corrected)


@dataclass
class ComparisonTable:
    """One table: the cells of one dataset under one condition."""

    condition: Condition
    heading: str | None  # what sets it apart from its dataset's other tables; None when it is the only one
    part: str | None  # grouping.STUDY or grouping.BEYOND where the condition's table is split; None: whole
    columns: list[Column]  # the columns shown (optional ones only where some cell has them)
    rows: list[Row]
    reference_label: str | None  # the row the others are compared with
    references: dict[str, dict[str, Any]]  # metric name -> what it stored about the original images
    about: list[str]  # one line per reference: how it was obtained
    marked_pairs: list[int]  # pair counts of the significant comparisons, sorted, without repeats
    note: str  # the conditions line
    outside_budget: list[OutsideBudget]  # the work its rows did outside the training budget, by row
    combinations: list[CombinationRow]  # pairs whose two techniques alone are rows of this table too
    combined_by: str | None  # the metric that picks each pair's better single technique
    time_to_quality: TimeToQuality | None
    provenance: dict[str, Any]
    protocols: dict[str, Protocol]  # row label -> its training protocol
    figures: list[FigureLink]

    @property
    def tests(self) -> int:
        """How many comparisons against the reference row Holm's correction counted (those with a p)."""
        return _corrected(row.comparisons or {} for row in self.rows)

    @property
    def combination_tests(self) -> int:
        """How many comparisons of the combinations table Holm's correction counted."""
        return _corrected(row.comparisons for row in self.combinations)

    @property
    def several_seeds(self) -> bool:
        return any(len(row.keys) > 1 for row in self.rows)


@dataclass(frozen=True)
class NotDone:
    """A cell (or a whole dataset) that is not in its dataset's tables."""

    key: str
    label: str
    seed: Any
    status: str
    error: str | None
    condition: Condition
    after_done: bool = False  # an attempt that did not get done after the one the table shows
    curve: list[dict[str, Any]] = field(default_factory=list)  # as stored: the epochs it got through


@dataclass
class DatasetReport:
    name: str
    title: str
    tables: list[ComparisonTable]
    not_done: list[NotDone]


@dataclass
class Report:
    """Everything the outputs show, computed once from a store's records."""

    datasets: list[DatasetReport]
    cells: list[CellRecord]  # every record as given (oldest first), for the CSV and the page's counts
    in_table: list[bool]  # for each of ``cells``, whether a table shows it (the latest done attempt of its cell)
    metric_names: list[str]
    provenance: dict[str, Any]  # of every record
    # dataset title -> row label -> its protocol, first seen among the dataset's tables: a technique can
    # train differently on each dataset (the study's learning rates were set per dataset).
    protocols: dict[str, dict[str, Protocol]]

    @property
    def done_count(self) -> int:
        return sum(self.in_table)


def _corrected(families) -> int:
    return sum(c.p_holm is not None for comparisons in families for c in comparisons.values())
