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
    ``in_table`` says which attempt of each cell the tables use."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(
        ["key", "label", "dataset", "seed", "status"]
        + report.metric_names
        + list(STAT_COLUMNS)
        + ["budget_epochs", "budget_seconds", "device", "precision", "error", "in_table"]
        + list(CONTENTION_COLUMNS) + ["busy"]
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
        )
    return out.getvalue()
