"""The driver's half of a run: each dataset loaded once, checked and fingerprinted, and its cells keyed,
before any executor sees them.

Keys need the data's fingerprint, which is known only once the data is loaded; loading in the
driver also means an executor (this process, or workers elsewhere) is handed the data and never
reads the dataset's files itself. A dataset that cannot be used here becomes records saying why,
so its cells are accounted for and the other datasets still run.
"""
from __future__ import annotations

import hashlib
import traceback
from dataclasses import replace
from typing import Callable, Sequence

from aeframe.cells.record import SKIPPED, SKIPPED_DATASET, CellRecord, now
from aeframe.cells.spec import CellSpec
from aeframe.contract.dataset import DatasetUnavailable, ImageData
from aeframe.contract.executor import DatasetGroup
from aeframe.data.loading import Workspace
from aeframe.errors import describe
from aeframe.planning.plan import batch_problem, plugin_origin
from aeframe.planning.rebuild import runnable
from aeframe.registry.plugins import Registry


def skipped_record(spec: CellSpec, reason: str) -> CellRecord:
    """The record of a dataset that could not be had, standing for all of its cells."""
    # It stands for no technique and no seed in particular.
    config = replace(spec.config, kind=SKIPPED_DATASET, label=spec.dataset, techniques=[], seed=None,
                     reference=False, plugins={}, protocol=None)
    key = "skip-" + hashlib.sha256(spec.dataset.encode()).hexdigest()[:11]
    return CellRecord(key=key, config=config, status=SKIPPED, error=reason, started_at=now(), finished_at=now())


def failed_records(cells: Sequence[CellSpec], reason: str) -> list[CellRecord]:
    """One failed record per cell of a dataset whose data could not be used (the reason names the dataset)."""
    stamp = now()
    return [spec.failed(reason, stamp) for spec in cells]


def _empty_split(data: ImageData) -> str | None:
    for name, split in (("training", data.train), ("test", data.test)):
        if len(split) == 0:
            return name
    return None


def load_group(cells: list[CellSpec], workspace: Workspace, registry: Registry,
               say: Callable[[str], None]) -> tuple[list[CellRecord], DatasetGroup | None]:
    """The dataset of ``cells`` (all of one ``-d`` text) loaded once, through the workspace, with the cells
    keyed by the data's fingerprint; and the records that stand for the cells that cannot use it.

    A dataset that cannot be had here (files missing, unreadable) gives one skipped record; a
    dataset plugin that raises, or hands back a split without images, gives a failed record per
    cell, naming the plugin; so does a training split smaller than a cell's batch, for that cell.
    The group is None when no cell is left to train.
    """
    label = cells[0].dataset
    whose = f"dataset {label} ({plugin_origin(registry, 'dataset', cells[0].config.dataset.name)})"
    try:
        data = workspace.load_dataset(label)
        empty = _empty_split(data)
        fingerprint = None if empty else data.fingerprint()
    except DatasetUnavailable as exc:
        say(f"skipping {label}: {exc}")
        return [skipped_record(cells[0], str(exc))], None
    except Exception as exc:  # a dataset plugin's bug must not take the other datasets down
        reason = f"{whose} failed to load: {describe(exc)}"
        say(f"cannot run {label}: {reason}")
        return failed_records(cells, f"{reason}\n{traceback.format_exc()}"), None
    if empty is not None:
        # Scored on no test images, every metric would read as perfect (an MSE of 0); trained on none,
        # a model would be scored untrained.
        reason = (f"{whose} loaded an empty {empty} split (0 images), so its cells would "
                  f"{'score nothing' if empty == 'test' else 'train on nothing'}; give the dataset images in both splits")
        say(f"cannot run {label}: {reason}")
        return failed_records(cells, reason), None
    keyed = [spec.keyed(fingerprint) for spec in cells]
    # Known only now for a dataset that cannot tell its size at planning; found before the metrics are
    # prepared for it (a reference classifier trained), which no cell could use.
    small = {spec.key: reason for spec in keyed if (reason := _smaller_than_a_batch(spec, len(data.train), whose, registry))}
    for reason in dict.fromkeys(small.values()):
        say(f"cannot run {label}: {reason}")
    runs = [spec for spec in keyed if spec.key not in small]
    return [spec.failed(small[spec.key]) for spec in keyed if spec.key in small], \
        DatasetGroup(label, data, runs) if runs else None


def _smaller_than_a_batch(spec: CellSpec, train_images: int, whose: str, registry: Registry) -> str | None:
    """Why ``spec`` could not train a step on a training split of ``train_images`` images (see
    :func:`aeframe.planning.plan.batch_problem`); None when it can or its schedule cannot be built here."""
    try:
        cell = runnable(spec, registry)
        return batch_problem(cell.composition, cell.dataset, train_images, whose)
    except Exception:  # the cell reports what keeps its parts from being built when it runs
        return None
