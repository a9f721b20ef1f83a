"""The report as markdown, for reading: per dataset its tables, their notes, and what is not in them."""
from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from tabulate import tabulate

from aeframe.cells.durations import format_duration
from aeframe.cells.record import BUSY_BELOW
from aeframe.errors import first_line
from aeframe.report.columns import CLOCK_STATS, Column
from aeframe.report.conditions import difference
from aeframe.report.structure import SIGNIFICANCE, ComparisonTable, NotDone, Report, Summary, TimeToQuality

MISSING = "–"
MARKER = "†"  # follows a metric value that differs from the reference row's at p < SIGNIFICANCE
STAND_IN_MARKER = "§"  # follows the label of a row that stands in, offline, for a technique that cannot run here
BUSY_MARKER = "‡"  # follows the time columns of a row whose training clock was shared (aeframe.speed.contention)
REFERENCE_ROW = "Original Image"  # the metrics' values on the original images


def markdown(report: Report) -> str:
    """One ``## `` section per dataset, one table per condition (with a ``### `` heading when several)."""
    if not report.datasets:
        return "No results yet.\n"
    parts: list[str] = []
    for dataset in report.datasets:
        parts.append(f"## {dataset.title}")
        for table in dataset.tables:
            parts.extend(table_parts(table))
        if dataset.not_done:
            parts.append(_not_done_list(dataset.not_done))
    return "\n\n".join(parts) + "\n"


def table_parts(table: ComparisonTable) -> list[str]:
    """A table's paragraphs: heading, table, marker line, reference notes, conditions line,
    time-to-quality table and picture links."""
    parts = [f"### {table.heading}"] if table.heading is not None else []
    parts.append(_comparison_table(table))
    if table.marked_pairs:
        parts.append(_marker_line(table))
    if any(row.busy for row in table.rows):
        parts.append(_busy_line(table))
    if any(row.stand_in for row in table.rows):
        parts.append(_stand_in_line(table))
    if table.outside_budget:
        parts.append(_outside_budget_line(table))
    if table.about:
        parts.append("\n".join(table.about))
    parts.append(table.note)
    if table.time_to_quality is not None and table.time_to_quality.comparable:
        parts.append(_quality_table(table.time_to_quality))
    if table.combinations:
        parts.extend(_combinations_table(table))
    parts.extend(f"![{figure.caption}]({figure.path})" for figure in table.figures)
    return parts


def _label(label: str) -> str:
    # A "|" in a label would end its cell early.
    return label.replace("|", "\\|")


def _cell(summary: Summary | None, column: Column) -> str:
    if summary is None:
        return MISSING
    if summary.std is None or (column.collapse_equal and len(set(summary.values)) == 1):
        return column.text(summary.values[0])
    return f"{column.text(summary.mean)} ± {column.text(summary.std)}"


def _comparison_table(table: ComparisonTable) -> str:
    columns = table.columns
    body = []
    for row in table.rows:
        cells = [_label(row.label) + (f" {STAND_IN_MARKER}" if row.stand_in else "")]
        for column in columns:
            summary = row.summary(column)
            text = _cell(summary, column)
            if summary is None and column.is_metric and column.name in row.not_scored:
                text = f"n/a: {row.not_scored[column.name]}"
            if column.id in row.best:
                text = f"**{text}**"
            comparison = (row.comparisons or {}).get(column.name) if column.is_metric else None
            if comparison is not None and comparison.significant:
                text += MARKER
            if row.busy and not column.is_metric and column.name in CLOCK_STATS:
                text += BUSY_MARKER
            cells.append(text)
        body.append(cells)
    headers = ["Method"] + [c.title for c in columns]
    if table.references:
        body.insert(0, [REFERENCE_ROW] + [
            column.text(table.references[column.name]["reference"])
            if column.is_metric and column.name in table.references else MISSING
            for column in columns
        ])
    if table.several_seeds:
        headers.append("Seeds")
        for cells, row in zip(body[len(body) - len(table.rows):], table.rows):
            cells.append(str(len(row.keys)))
        if table.references:
            body[0].append(MISSING)
    return tabulate(
        body,
        headers=headers,
        tablefmt="pipe",
        colalign=["left"] + ["right"] * (len(headers) - 1),
        # Keep our formatting: tabulate would otherwise re-parse "0.001200" into "0.0012".
        disable_numparse=True,
    )


def _marker_line(table: ComparisonTable) -> str:
    """The line that explains the marker."""
    pairs = table.marked_pairs
    counts = str(pairs[0]) if len(pairs) == 1 else f"{pairs[0]}–{pairs[-1]}"
    return (f"{MARKER} differs from the {table.reference_label} at p < {SIGNIFICANCE:g}: paired t-test over {counts} "
            f"shared seeds, {_corrected_for(table.tests, 'this table')}")


def _corrected_for(tests: int, family: str) -> str:
    """The end of a marker line: the correction, over how many tests, and the rule for equal differences."""
    counted = f"the {tests} tests" if tests != 1 else "the 1 test"
    return (f"Holm-corrected for {counted} of {family} (where every seed differs by the same amount, the exact "
            "sign-flip p)")


def _combinations_table(table: ComparisonTable) -> list[str]:
    """Do the techniques stack? Each pair against the better of its two techniques alone."""
    metrics = [c for c in table.columns if c.is_metric]
    by = next(c for c in metrics if c.name == table.combined_by)
    lines = []
    for row in table.combinations:
        cells = [_label(row.label), _label(row.against)]
        for column in metrics:
            c = row.comparisons.get(column.name)
            if c is None or c.mean_difference is None:
                cells.append("–")
                continue
            sign = "+" if c.mean_difference >= 0 else ""
            cells.append(f"{sign}{column.text(c.mean_difference)}{MARKER if c.significant else ''}")
        lines.append(cells)
    headers = ["Combination", "Against (the better alone)", *[f"Δ {c.title}" for c in metrics]]
    body = tabulate(lines, headers=headers, tablefmt="pipe", colalign=["left", "left"] + ["right"] * len(metrics),
                    disable_numparse=True)
    direction = "lower" if by.better == "lower" else "higher"
    intro = (f"Combinations: does a pair beat the better of its two techniques alone (by {by.title}, {direction} is "
             "better)? Δ is the pair's mean minus that technique's, over the seeds both have.")
    note = (f"{MARKER} p < {SIGNIFICANCE:g}: paired t-test over shared seeds, "
            f"{_corrected_for(table.combination_tests, 'this combinations table')}")
    return [intro, body, note]


def _stand_in_line(table: ComparisonTable) -> str:
    """What each stand-in row stands in for, and why it runs instead."""
    items = [f"{_label(row.label)}: {row.stand_in}" for row in table.rows if row.stand_in]
    return f"{STAND_IN_MARKER} an offline stand-in for a study row that cannot run here (`--stand-ins`). " + "; ".join(items) + "."


def _outside_budget_line(table: ComparisonTable) -> str:
    """What the rows did outside the training budget, and what it cost (the Outside Budget column)."""
    items = []
    for entry in table.outside_budget:
        cost = format_duration(entry.seconds) if entry.seconds is not None else "cost not recorded"
        if entry.reused == entry.cells:
            when = "done before this run and taken from the cache"
        elif entry.reused:
            when = f"done once and taken from the cache by {entry.reused} of its {entry.cells} cells"
        else:
            when = "done for each cell" if entry.cells > 1 else "done for this cell"
        items.append(f"{_label(entry.label)}: {entry.what}, {cost} ({when})")
    # The column is optional: it is shown only where every cost is known.
    counted = (", and counted in the Outside Budget column" if any(c.name == "outside_budget_seconds"
                                                                  for c in table.columns) else "")
    return f"Outside the training budget{counted}: " + "; ".join(items) + "."


def _busy_line(table: ComparisonTable) -> str:
    """The line that explains the busy marker: who got how much, and the threshold."""
    several_seeds = table.several_seeds
    who = []
    for row in table.rows:
        for seed in row.busy:
            got = []
            if seed.cpu_share is not None and seed.cpu_share < BUSY_BELOW:
                got.append(f"{seed.cpu_share:.0%} of the CPU")
            if seed.gpu_other_processes:
                got.append(f"{seed.gpu_other_processes} other process{'es' if seed.gpu_other_processes > 1 else ''} "
                           "on its GPU")
            which = f" (seed {seed.seed})" if several_seeds else ""
            who.append(f"{_label(row.label)}{which}: {', '.join(got)}")
    return (f"{BUSY_MARKER} trained on a busy machine, so its time, epochs and images/s are not comparable with the "
            f"other rows': {'; '.join(who)}. Measured over the training clock: the share of the CPU time the "
            f"process's threads asked for that they got (from the kernel's run-queue statistics; an idle machine gives "
            f"about 95% or more), marked below {BUSY_BELOW:.0%}; on a GPU also other processes using it")


def _quality_table(quality: TimeToQuality) -> str:
    """The comparison at equal training time."""
    headers = ["Method"] + [f"{f:.0%} ({format_duration(f * quality.reference_seconds)})" for f in quality.fractions]
    body = [[_label(row.label)] + [MISSING if v is None else f"{v:.6f}" for v in row.test_mse] for row in quality.rows]
    for j, best in enumerate(quality.best):
        for i in best:
            body[i][j + 1] = f"**{body[i][j + 1]}**"
    intro = ("Test MSE reached at equal training time (the mean over seeds, from each cell's per-epoch curve, "
             "full-size evaluations only; – where a seed had none by then):")
    return intro + "\n\n" + tabulate(body, headers=headers, tablefmt="pipe",
                                      colalign=["left"] + ["right"] * len(quality.fractions), disable_numparse=True)


def _not_done_list(entries: Sequence[NotDone]) -> str:
    """One bullet per label, status and reason, naming the seeds it holds for.

    Seeds that failed or were skipped for the same reason share a bullet; the condition is named
    only where it tells apart entries of the same list.
    """
    conditions = [e.condition for e in entries]
    several_seeds = len({json.dumps(e.seed) for e in entries}) > 1
    several_conditions = len({c.key for c in conditions}) > 1
    bullets: dict[tuple[str, str, str, str], list[Any]] = {}
    for entry in entries:
        where = difference(conditions, entry.condition) if several_conditions else ""
        status = f"later attempt {entry.status}" if entry.after_done else entry.status
        bullets.setdefault((entry.label, where, status, first_line(entry.error)), []).append(entry.seed)
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
