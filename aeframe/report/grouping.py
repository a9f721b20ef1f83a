"""Grouping stored cells the way every output shows them: per dataset, one table per condition.

A table compares techniques only where the comparison is fair: one table per dataset and
*condition* (budget, device type, numeric precision, dataset parameters, learning-rate policy). Within a table, a row
holds every seed of one technique label.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from aeframe.cells.record import DONE, SKIPPED_DATASET, BudgetLimits, CellRecord, label_of


@dataclass(frozen=True)
class Condition:
    """What a table's numbers were measured under; only cells under the same condition are compared."""

    budget: BudgetLimits
    device_type: str | None
    dataset_params: dict[str, Any]
    lr: str
    precision: str

    def to_json(self) -> dict[str, Any]:
        return {
            "budget": {"epochs": self.budget.epochs, "seconds": self.budget.seconds},
            "device_type": self.device_type,
            "dataset_params": self.dataset_params,
            "lr": self.lr,
            "precision": self.precision,
        }

    @property
    def key(self) -> str:
        """The same text for the same condition: what tables (and their pictures) are looked up by."""
        return json.dumps(self.to_json(), sort_keys=True)


@dataclass
class Table:
    condition: Condition
    rows: dict[str, list[CellRecord]] = field(default_factory=dict)  # label -> records, in order

    @property
    def records(self) -> list[CellRecord]:
        return [r for rs in self.rows.values() for r in rs]


@dataclass(frozen=True)
class Missing:
    """A record that is not in its dataset's tables: the latest attempt of a cell that never got
    done, or (``after_done``) an attempt that failed after the one the tables show."""

    record: CellRecord
    after_done: bool = False


@dataclass
class Section:
    name: str
    title: str
    tables: dict[str, Table] = field(default_factory=dict)  # condition key -> table, in order
    not_done: list[Missing] = field(default_factory=list)


@dataclass
class _Cell:
    """The attempts at one cell that count: its latest done one, and the latest one if it came later."""

    done: CellRecord | None = None
    later: CellRecord | None = None


def condition_of(record: CellRecord) -> Condition:
    config = record.config
    seconds = config.budget.seconds
    return Condition(
        # 60 and 60.0 are the same budget; keep them from splitting a table.
        budget=BudgetLimits(config.budget.epochs, float(seconds) if seconds is not None else None),
        device_type=config.device.type,
        dataset_params=config.dataset.params,
        lr=config.lr,
        precision=config.speed.precision,
    )


def _skip_of(record: CellRecord | None, done: CellRecord) -> bool:
    """Whether ``record`` says ``done``'s dataset could not be had (not that a technique could not run)."""
    return record is not None and record.config.kind == SKIPPED_DATASET and record.config.dataset.name == done.config.dataset.name


def group(records: Sequence[CellRecord]) -> list[Section]:
    """Sections of tables from ``records`` (oldest first): each cell's latest done attempt counts.

    A cell is a (dataset, condition, label, seed): its attempts are a rerun with ``--rerun``, a
    failure that was retried, or a rerun after an upgrade changed its key. The tables show the
    latest done attempt; an attempt that did not get done and came after it is listed below
    them, never in its place. A cell that was never done is listed by its latest attempt.
    """
    cells: dict[str, _Cell] = {}  # in the order cells first appear, so rows keep the order of first runs
    for record in records:
        identity = json.dumps(
            [record.config.dataset.name, condition_of(record).to_json(), label_of(record), record.config.seed],
            sort_keys=True,
        )
        cell = cells.setdefault(identity, _Cell())
        if record.status == DONE:
            cell.done, cell.later = record, None
            # A dataset that trains now was only missing before: forget that it was skipped.
            cells = {k: c for k, c in cells.items() if c.done is not None or not _skip_of(c.later, record)}
        else:
            cell.later = record

    sections: dict[str, Section] = {}
    for cell in cells.values():
        first = cell.done or cell.later
        dataset = first.config.dataset
        name = dataset.name or "unknown"
        section = sections.setdefault(name, Section(name, dataset.title or name))
        if cell.later is not None:
            section.not_done.append(Missing(cell.later, after_done=cell.done is not None))
        if cell.done is None:
            continue
        condition = condition_of(cell.done)
        table = section.tables.setdefault(condition.key, Table(condition))
        table.rows.setdefault(label_of(cell.done), []).append(cell.done)
    for section in sections.values():
        for table in section.tables.values():
            _reference_first(table)
    return list(sections.values())


def _reference_first(table: Table) -> None:
    """The reference row (the Baseline) leads its table, as the row the others are compared with,
    even when its cells were retrained after the others; the other rows keep their order."""
    first = [label for label, records in table.rows.items() if records[0].config.reference]
    table.rows = {label: table.rows[label] for label in first + [k for k in table.rows if k not in first]}
