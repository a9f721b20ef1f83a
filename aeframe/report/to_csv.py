"""The report as CSV, for spreadsheets and pandas: one line per stored cell, whatever its status."""
from __future__ import annotations

import csv
import io

from aeframe.cells.record import label_of
from aeframe.errors import first_line
from aeframe.report.structure import Report

STAT_COLUMNS = ("train_seconds", "eval_seconds", "lr_find_seconds", "compile_seconds", "epochs", "steps",
                "images_per_second", "params")
# Added later, so at the end: scripts that read the columns by position keep working.
CONTENTION_COLUMNS = ("cpu_share", "gpu_other_processes")


def as_csv(report: Report) -> str:
    """Every attempt as stored (oldest first, seeds not folded), numbers at full precision, missing ones empty;
    ``in_table`` says which attempt of each cell the tables use. Last, one column ``diagnostic_NAME`` per
    diagnostic any cell's technique recorded: its value in the cell's last epoch (the JSON has every epoch's)."""
    diagnostics = sorted({name for r in report.cells for name in _last_diagnostics(r.curve)})
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(
        ["key", "label", "dataset", "seed", "status"]
        + report.metric_names
        + list(STAT_COLUMNS)
        + ["budget_epochs", "budget_seconds", "device", "precision", "error", "in_table"]
        + list(CONTENTION_COLUMNS) + ["busy"]
        + [f"diagnostic_{name}" for name in diagnostics]
    )
    for r, shown in zip(report.cells, report.in_table):
        config = r.config
        writer.writerow(
            [r.key, label_of(r), config.dataset.name, config.seed, r.status]
            + [r.metrics.get(name) for name in report.metric_names]
            + [r.stats.get(name) for name in STAT_COLUMNS]
            + [config.budget.epochs, config.budget.seconds, config.device.describe(), config.speed.precision,
               first_line(r.error), "true" if shown else "false"]
            + [r.stats.get(name) for name in CONTENTION_COLUMNS]
            + ["true" if r.stats.busy else "false"]
            + [_last_diagnostics(r.curve).get(name) for name in diagnostics]
        )
    return out.getvalue()


def _last_diagnostics(curve: list[dict] | None) -> dict[str, float]:
    return (curve[-1].get("diagnostics") or {}) if curve else {}
