"""The driver's half of a run: each dataset loaded once, checked and fingerprinted, and its cells given
their final keys, before any executor sees them.

Keys need the data's fingerprint, which is known only once the data is loaded; loading in the
driver also means an executor (this process, or workers elsewhere) is handed the data and never
reads the dataset's files itself. A dataset that cannot be used here becomes records saying why,
so its cells are accounted for and the other datasets still run.
"""
from __future__ import annotations

import hashlib
import traceback
from dataclasses import dataclass, replace
from typing import Callable, Sequence

from aeframe.training.cell import now
from aeframe.contract.dataset import DatasetUnavailable, ImageData
from aeframe.errors import describe
from aeframe.data.loading import Workspace
from aeframe.planning.plan import Cell, DatasetChoice, plugin_origin, with_fingerprint
from aeframe.registry.plugins import Registry
from aeframe.cells.record import FAILED, SKIPPED, SKIPPED_DATASET, CellRecord


@dataclass
class DatasetGroup:
    """One dataset's cells, with final keys, and the loaded data they train on: what an executor is handed."""

    dataset: DatasetChoice
    data: ImageData
    cells: list[Cell]


def skipped_record(cell: Cell, reason: str) -> CellRecord:
    """The record of a dataset that could not be had, standing for all of its cells."""
    # It stands for no technique and no seed in particular.
    config = replace(cell.config, kind=SKIPPED_DATASET, label=cell.dataset.label, techniques=[], seed=None,
                     reference=False, plugins={}, protocol=None)
    key = "skip-" + hashlib.sha256(cell.dataset.label.encode()).hexdigest()[:11]
    return CellRecord(key=key, config=config, status=SKIPPED, error=reason, started_at=now(), finished_at=now())


def failed_records(cells: Sequence[Cell], reason: str) -> list[CellRecord]:
    """One failed record per cell of a dataset whose data could not be used (the reason names the dataset)."""
    # No technique ran: the summary of failed cells must not point at the techniques' plugins.
    stamp = now()
    return [CellRecord(key=cell.key, config=replace(cell.config, plugins={}), status=FAILED, error=reason,
                       started_at=stamp, finished_at=stamp) for cell in cells]


def _empty_split(data: ImageData) -> str | None:
    for name, split in (("training", data.train), ("test", data.test)):
        if len(split) == 0:
            return name
    return None


def load_group(dataset: DatasetChoice, cells: list[Cell], workspace: Workspace, registry: Registry,
               say: Callable[[str], None]) -> DatasetGroup | list[CellRecord]:
    """``dataset`` loaded (once, through the workspace) with its ``cells`` keyed by the data's fingerprint,
    or the records that stand for those cells when the data cannot be used.

    A dataset that cannot be had here (files missing, unreadable) gives one skipped record; a
    dataset plugin that raises, or hands back a split without images, gives a failed record per
    cell, naming the plugin.
    """
    label = dataset.label
    whose = f"dataset {label} ({plugin_origin(registry, 'dataset', dataset.plugin.name)})"
    try:
        data = workspace.load_dataset(label)
        empty = _empty_split(data)
        fingerprint = None if empty else data.fingerprint()
    except DatasetUnavailable as exc:
        say(f"skipping {label}: {exc}")
        return [skipped_record(cells[0], str(exc))]
    except Exception as exc:  # a dataset plugin's bug must not take the other datasets down
        reason = f"{whose} failed to load: {describe(exc)}"
        say(f"cannot run {label}: {reason}")
        return failed_records(cells, f"{reason}\n{traceback.format_exc()}")
    if empty is not None:
        # Scored on no test images, every metric would read as perfect (an MSE of 0); trained on none,
        # a model would be scored untrained.
        reason = (f"{whose} loaded an empty {empty} split (0 images), so its cells would "
                  f"{'score nothing' if empty == 'test' else 'train on nothing'}; give the dataset images in both splits")
        say(f"cannot run {label}: {reason}")
        return failed_records(cells, reason)
    return DatasetGroup(dataset, data, [with_fingerprint(cell, fingerprint) for cell in cells])
