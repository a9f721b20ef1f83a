"""Grouping stored cells the way every output shows them: per dataset, one table per condition.

A table compares techniques only where the comparison is fair: one table per dataset and
*condition* (budget, device type, numeric precision, dataset parameters, learning-rate policy). Within a table, a row
holds every seed of one technique label.

A condition's table is split in two *parts* when it holds both the study's techniques and others
(:attr:`aeframe.Technique.in_study`, as each cell recorded it): the study's rows, and "Beyond the
study", the rows that train any other technique. The reference row leads both, so that each is
compared with it; a study row that is half of a combination beyond the study is in both too, so
that the combination is compared with it.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from aeframe.cells.record import DONE, SKIPPED_DATASET, BudgetLimits, CellRecord, TechniqueRef, label_of
from aeframe.contract.technique import LR_PARAM

# The parts a condition's table is split into when it holds the study's techniques and others.
STUDY, BEYOND = "study", "beyond"
PART_TITLES = {STUDY: "The study's techniques", BEYOND: "Beyond the study"}


@dataclass(frozen=True)
class Condition:
    """What a table's numbers were measured under; only cells under the same condition are compared."""

    budget: BudgetLimits
    device_type: str | None
    dataset_params: dict[str, Any]
    lr: str
    precision: str
    # The device's thread count and switches set otherwise than torch's defaults (DeviceRef.distinctive_numerics):
    # a 1-thread cell and a 2-thread one are two cells (aeframe.cells.spec.cell_key), not a rerun of one.
    numerics: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        found = {
            "budget": {"epochs": self.budget.epochs, "seconds": self.budget.seconds},
            "device_type": self.device_type,
            "dataset_params": self.dataset_params,
            "lr": self.lr,
            "precision": self.precision,
        }
        if self.numerics:  # absent for records from before aeframe 0.4: their reports read as they did
            found["numerics"] = self.numerics
        return found

    @property
    def key(self) -> str:
        """The same text for the same condition: what tables (and their pictures) are looked up by."""
        return json.dumps(self.to_json(), sort_keys=True)


@dataclass
class Table:
    condition: Condition
    rows: dict[str, list[CellRecord]] = field(default_factory=dict)  # label -> records, in order
    part: str | None = None  # STUDY or BEYOND where the condition's table is split; None: it is whole

    @property
    def records(self) -> list[CellRecord]:
        return [r for rs in self.rows.values() for r in rs]

    @property
    def key(self) -> str:
        """The same text for the same table: its condition's key, and its part where it has one."""
        return self.condition.key if self.part is None else f"{self.condition.key}#{self.part}"


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
    tables: dict[str, Table] = field(default_factory=dict)  # table key -> table, in order
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
        numerics=config.device.distinctive_numerics(),
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
        section.tables = {part.key: part for table in section.tables.values() for part in split(table)}
    return list(sections.values())


def _reference_first(table: Table) -> None:
    """The reference row (the Baseline) leads its table, as the row the others are compared with,
    even when its cells were retrained after the others; the other rows keep their order."""
    first = [label for label, records in table.rows.items() if records[0].config.reference]
    table.rows = {label: table.rows[label] for label in first + [k for k in table.rows if k not in first]}


def technique_identity(ref: TechniqueRef) -> tuple[str, tuple[tuple[str, str], ...]]:
    """A technique as combinations are matched with their parts: its name and parameters, the learning
    rate aside (a pair may settle its members' rates)."""
    return ref.name, tuple(sorted((k, str(v)) for k, v in ref.params.items() if k != LR_PARAM))


def _beyond(records: Sequence[CellRecord]) -> bool:
    """Whether a row trains a technique that is not the study's. Records stored before cells said
    (``in_study`` None) stay with the study's rows: nothing in them tells, and a name list would."""
    return any(r.config.in_study is False for r in records)


def split(table: Table) -> list[Table]:
    """``table`` as its parts: the study's rows and those beyond it, or itself alone where it holds only
    one kind (a row besides the reference of each is needed for two tables to say more than one)."""
    beyond = {label for label, records in table.rows.items() if _beyond(records)}
    study = {label for label, records in table.rows.items()
             if label not in beyond and not records[0].config.reference}
    if not beyond or not study:
        return [table]
    # The study's techniques alone that a combination beyond the study pairs with: its Combinations
    # table compares the pair with them, so they are rows of that table too.
    pairs = [table.rows[label][0].config.techniques for label in beyond]
    paired = {technique_identity(ref) for techniques in pairs if len(techniques) > 1 for ref in techniques}
    needed = {label for label in study if _alone(table.rows[label]) in paired}

    def part(name: str, labels: set[str]) -> Table:
        return Table(table.condition, {label: records for label, records in table.rows.items()
                                       if label in labels or records[0].config.reference}, name)
    return [part(STUDY, study), part(BEYOND, beyond | needed)]


def _alone(records: Sequence[CellRecord]) -> tuple | None:
    """The identity of a row's technique where it trains one alone; None for a combination."""
    techniques = records[0].config.techniques
    return technique_identity(techniques[0]) if len(techniques) == 1 else None
