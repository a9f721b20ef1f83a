"""Comparison tables from stored cells: markdown for reading, JSON and CSV for further analysis.

Tables are grouped per dataset and condition (budget, device type, numeric precision, dataset
parameters, learning-rate policy; see :mod:`aeframe.report.grouping`). Seeds of the same technique under
the same condition are folded into one row as ``mean ± std``; with several seeds each row's metrics
are also compared with the Baseline row's by a paired t-test over shared seeds (``†`` marks
p < 0.05; the JSON holds the tests and 95 % intervals, see :mod:`aeframe.report.stats`).

The work is split in two: :mod:`~aeframe.report.analysis` computes everything once into the plain
data of :mod:`~aeframe.report.structure`, and :mod:`~aeframe.report.to_markdown`,
:mod:`~aeframe.report.to_json`, :mod:`~aeframe.report.to_csv` (and :mod:`aeframe.report.leaderboard`)
write it out. Nothing here imports torch.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from aeframe.cells.record import CellRecord
from aeframe.report.analysis import Figures, analyse
from aeframe.report.structure import Report
from aeframe.report.to_csv import as_csv
from aeframe.report.to_json import as_json
from aeframe.report.to_markdown import markdown

if TYPE_CHECKING:
    from aeframe.contract.metric import Metric

__all__ = ["FORMATS", "Figures", "Report", "analyse", "render", "write"]

_WRITERS = {"markdown": markdown, "json": as_json, "csv": as_csv}
FORMATS = tuple(_WRITERS)


def _writer(fmt: str) -> Callable[[Report], str]:
    writer = _WRITERS.get(fmt)
    if writer is None:
        raise ValueError(f"unknown report format {fmt!r}; use one of {', '.join(FORMATS)}")
    return writer


def write(report: Report, fmt: str) -> str:
    """An analysed report as ``markdown``, ``json`` or ``csv``."""
    return _writer(fmt)(report)


def render(
    records: Sequence[CellRecord],
    metrics: Sequence[Metric],
    fmt: str = "markdown",
    figures: Figures | None = None,
    link_base: Path | None = None,
) -> str:
    """Render ``records`` as ``markdown``, ``json`` or ``csv``; ``metrics`` pick and order the columns.

    Records are expected oldest first (as :meth:`aeframe.store.sqlite_store.Store.records` returns them): when
    two records describe the same technique, dataset, condition and seed, the later one is used.
    ``figures`` (from :func:`aeframe.report.pictures.write_figures`) are linked under their tables, by
    paths relative to ``link_base`` (the directory the output is read from; default: the current one).
    """
    writer = _writer(fmt)  # before the work, so that a wrong format costs nothing
    return writer(analyse(records, metrics, figures, link_base))
