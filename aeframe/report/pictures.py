"""The report's pictures: per table, a grid of the same test images as each technique rebuilds them,
and a plot of test MSE against training seconds.

Both are PNG files written with matplotlib's non-interactive backend, without a timestamp in the
file, so that rendering the same store twice gives the same bytes (a committed leaderboard only
changes when its numbers do). Torch and matplotlib are imported when a picture is drawn, not before:
the report imports this module for every format.
"""
from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from aeframe.cells.record import CellRecord, full_size_points
from aeframe.cells.samples import Samples
from aeframe.data.directories import write_atomically
from aeframe.report.grouping import BEYOND, PART_TITLES, Section, Table

if TYPE_CHECKING:
    import torch

ORIGINAL_ROW = "Original"
_PNG_METADATA = {"Software": None}  # matplotlib would otherwise stamp its version into every file


@dataclass(frozen=True)
class Figure:
    """One written picture: what it shows, and where."""

    kind: str  # "reconstructions" or "mse_vs_time"
    path: Path
    caption: str


def write_figures(
    sections: Sequence[Section], samples: Mapping[str, Samples], directory: Path
) -> dict[tuple[str, str], list[Figure]]:
    """Write every table's pictures into ``directory``; (dataset name, table key) -> its figures.

    ``samples`` maps cell keys to their stored reconstructions; a table whose cells have none (a
    store from before they were kept) gets only its plot, and a table without curves gets no plot.
    """
    directory.mkdir(parents=True, exist_ok=True)
    written: dict[tuple[str, str], list[Figure]] = {}
    for section in sections:
        tables = list(section.tables.values())
        conditions = list(dict.fromkeys(table.condition.key for table in tables))
        for table in tables:
            # Numbered by condition, so that the study's pictures keep their names when a part beyond it comes.
            number = f"-{conditions.index(table.condition.key) + 1}" if len(conditions) > 1 else ""
            stem = _slug(section.name) + number + ("-beyond-the-study" if table.part == BEYOND else "")
            title = section.title + (f" ({PART_TITLES[BEYOND].lower()})" if table.part == BEYOND else "")
            figures = []
            rows = _sample_rows(table, samples)
            if rows:
                path = directory / f"{stem}-reconstructions.png"
                _draw_grid(rows, f"{title}: the same test images, reconstructed", path)
                figures.append(Figure("reconstructions", path, f"{title}: test images and reconstructions"))
            curves = _curves(table)
            if curves:
                path = directory / f"{stem}-mse-vs-time.png"
                _draw_curves(curves, f"{title}: test MSE against training time", path)
                figures.append(Figure("mse_vs_time", path, f"{title}: test MSE against training seconds"))
            if figures:
                written[(section.name, table.key)] = figures
    return written


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-") or "dataset"


# -- reconstruction grid ---------------------------------------------------------------------


def _sample_rows(table: Table, samples: Mapping[str, Samples]) -> list[tuple[str, torch.Tensor]]:
    """The originals, then one row per technique (its lowest seed that has samples), at one size.

    Rows whose sample images differ from the first row's (another dataset version) are left out
    rather than shown against the wrong originals.
    """
    picked: list[tuple[str, Samples]] = []
    for label, records in table.rows.items():
        found = [samples[r.key] for r in sorted(records, key=_seed_order) if r.key in samples]
        if found:
            picked.append((label, found[0]))
    if not picked:
        return []
    first = picked[0][1]
    side = max(s.originals.shape[-1] for _, s in picked)
    rows = [(ORIGINAL_ROW, _at_side(first.originals, side))]
    for label, found in picked:
        if found.indices == first.indices:
            rows.append((label, _at_side(found.reconstructions, side)))
    return rows


def _seed_order(record: CellRecord) -> tuple[int, str]:
    seed = record.config.seed
    return (seed, "") if isinstance(seed, int) else (1 << 30, str(seed))


def _at_side(images: torch.Tensor, side: int) -> torch.Tensor:
    """Nearest-neighbour upscaling, so that a smaller evaluation size shows its real pixels."""
    if images.shape[-1] == side:
        return images
    import torch
    from torch.nn import functional as F

    return F.interpolate(images.float(), size=(side, side), mode="nearest").to(torch.uint8)


def _draw_grid(rows: list[tuple[str, torch.Tensor]], title: str, path: Path) -> None:
    plt = _pyplot()
    columns = rows[0][1].shape[0]
    cell = 0.75
    figure, axes = plt.subplots(len(rows), columns, figsize=(2.4 + cell * columns, 0.35 + cell * len(rows)),
                                squeeze=False)  # the width is set below, once the labels are measured
    for r, (label, images) in enumerate(rows):
        for c in range(columns):
            axis = axes[r][c]
            axis.set_xticks([])
            axis.set_yticks([])
            for spine in axis.spines.values():
                spine.set_visible(False)
            if c < images.shape[0]:
                image = images[c]
                if image.shape[0] == 1:
                    axis.imshow(image[0].numpy(), cmap="gray", vmin=0, vmax=255, interpolation="nearest")
                else:
                    axis.imshow(image.permute(1, 2, 0).numpy(), interpolation="nearest")
        axes[r][0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=9)
    figure.suptitle(title, fontsize=10)
    # Room on the left for the widest label as drawn (a fixed margin cut "Pixel Shuffle + Progressive
    # Resizing" to "ixel Shuffle + ..."), then the images at their size.
    figure.canvas.draw()
    renderer = figure.canvas.get_renderer()
    widest = max(axes[r][0].yaxis.label.get_window_extent(renderer).width for r in range(len(rows))) / figure.dpi
    left = widest + 0.25
    width = left + cell * columns + 0.1
    figure.set_size_inches(width, 0.35 + cell * len(rows))
    figure.subplots_adjust(left=left / width, right=1 - 0.05 / width, top=1 - 0.35 / (0.35 + cell * len(rows)),
                           bottom=0.01, wspace=0.05, hspace=0.05)
    _save(plt, figure, path)


# -- MSE against time ------------------------------------------------------------------------


def _curves(table: Table) -> list[tuple[str, list[list[tuple[float, float]]]]]:
    found = []
    for label, records in table.rows.items():
        # A log axis has no place for 0 or inf (a perfect or a diverged evaluation).
        lines = [[(t, m) for t, m in full_size_points(r) if 0 < m < math.inf] for r in records]
        lines = [points for points in lines if points]
        if lines:
            found.append((label, lines))
    return found


def _draw_curves(curves: list[tuple[str, list[list[tuple[float, float]]]]], title: str, path: Path) -> None:
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(7, 4.2))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    markers = "osD^vP*Xh<>"
    for i, (label, lines) in enumerate(curves):
        for j, points in enumerate(lines):
            x, y = zip(*points)
            # One colour per technique; every seed is drawn, named once in the legend.
            axis.plot(x, y, color=colours[i % len(colours)], marker=markers[i % len(markers)], markersize=4,
                      linewidth=1.2, alpha=0.85, label=label if j == 0 else None)
    axis.set_yscale("log")
    axis.set_xlabel("training seconds")
    axis.set_ylabel("test MSE (log scale)")
    axis.set_title(title, fontsize=10)
    axis.grid(True, which="both", alpha=0.3)
    axis.legend(fontsize=8)
    figure.tight_layout()
    _save(plt, figure, path)


def _save(plt, figure, path: Path) -> None:
    # Through a temporary file: a report stopped mid-write must not leave a cut-short PNG over a good one.
    try:
        write_atomically(path, lambda partial: figure.savefig(partial, dpi=100, metadata=_PNG_METADATA))
    finally:
        plt.close(figure)


def _pyplot():
    # Imported on first use: matplotlib takes a second to load, and only pictures need it.
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    return pyplot
