"""The columns of a comparison table: what each shows, how its numbers are written, which way is better."""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from aeframe.cells.durations import format_duration

if TYPE_CHECKING:
    from aeframe.contract.metric import Metric

METRICS, STATS = "metrics", "stats"  # where a column's number is found in a record


@dataclass(frozen=True)
class Column:
    """One column: ``record.metrics[name]`` or ``record.stats[name]``, with its title and format."""

    source: str  # METRICS or STATS
    name: str
    title: str
    format: Callable[[float], str]
    better: str | None = None  # "lower" / "higher": bold the best row; None: never bold
    collapse_equal: bool = False  # show one value, not "x ± 0", when every seed agrees
    optional: bool = False  # left out of a table where no record has it

    @property
    def id(self) -> str:
        """Unique among a table's columns even if a metric shares a statistic's name."""
        return f"{self.source}.{self.name}"

    @property
    def is_metric(self) -> bool:
        """Metric columns are the ones compared with the reference row."""
        return self.source == METRICS

    def text(self, value: float) -> str:
        # A diverged-but-finished seed can leave nan/inf; show it plainly rather than crash.
        return self.format(value) if math.isfinite(value) else str(value)


# The run statistics a row summarises, in the order the JSON lists them; params last (the JSON
# writes it apart, as one number).
SUMMARISED_STATS = ("train_seconds", "eval_seconds", "lr_find_seconds", "compile_seconds", "outside_budget_seconds",
                    "epochs", "images_per_second", "cpu_share", "params")
# The columns that depend on how much of the machine the training clock had (aeframe.speed.contention).
CLOCK_STATS = ("train_seconds", "epochs", "images_per_second")
# Stats that depend on having the device alone: a packed cell's (--cells-per-device) are left out of the tables.
PACKED_UNCOMPARABLE = ("train_seconds", "eval_seconds", "images_per_second", "lr_find_seconds", "compile_seconds",
                       "outside_budget_seconds")

_STAT_COLUMNS = (
    Column(STATS, "train_seconds", "Training Time", format_duration, "lower"),
    # Under a time budget the last epoch is usually partial.
    Column(STATS, "epochs", "Epochs", lambda v: f"{v:.2f}", collapse_equal=True),
    Column(STATS, "images_per_second", "Images/s", lambda v: f"{v:,.0f}", "higher"),
    Column(STATS, "params", "Params", lambda v: f"{round(v):,}", collapse_equal=True),
    # The range test of --lr find is not training: its cost shows apart.
    Column(STATS, "lr_find_seconds", "LR Find", format_duration, optional=True),
    # Neither is torch.compile's first compilation (--compile).
    Column(STATS, "compile_seconds", "Compile", format_duration, optional=True),
    # All a cell cost besides its training budget: the two above and its techniques' own preparation
    # (pretraining, reused or not): a row is not cheaper than it was.
    Column(STATS, "outside_budget_seconds", "Outside Budget", format_duration, optional=True),
)


def table_columns(metrics: Sequence[Metric]) -> list[Column]:
    """One column per metric, in the given order, then the run statistics."""
    by_metric = [Column(METRICS, m.name, m.title or m.name, _formatter(m.format), m.better) for m in metrics]
    return by_metric + list(_STAT_COLUMNS)


def _formatter(spec: str) -> Callable[[float], str]:
    return lambda value: format(value, spec)
