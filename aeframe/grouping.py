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

from aeframe.record import DONE, SKIPPED, CellRecord


@dataclass
class Table:
    condition: dict[str, Any]
    rows: dict[str, list[CellRecord]] = field(default_factory=dict)  # label -> records, in order

    @property
    def records(self) -> list[CellRecord]:
        return [r for rs in self.rows.values() for r in rs]


@dataclass
class Section:
    name: str
    title: str
    tables: dict[str, Table] = field(default_factory=dict)  # condition key -> table, in order
    not_done: list[CellRecord] = field(default_factory=list)


def dataset_of(record: CellRecord) -> dict[str, Any]:
    return record.config.get("dataset") or {}


def label_of(record: CellRecord) -> str:
    return str(record.config.get("label") or dataset_of(record).get("name") or record.key)


def condition_of(record: CellRecord) -> dict[str, Any]:
    budget = record.config.get("budget") or {}
    seconds = budget.get("seconds")
    return {
        "budget": {
            "epochs": budget.get("epochs"),
            # 60 and 60.0 are the same budget; keep them from splitting a table.
            "seconds": float(seconds) if seconds is not None else None,
        },
        "device_type": (record.config.get("device") or {}).get("type"),
        "dataset_params": dataset_of(record).get("params") or {},
        "lr": record.config.get("lr", "study"),
        # Records from before the setting existed were trained in fp32.
        "precision": record.config.get("precision", "fp32"),
    }


def condition_key(condition: dict[str, Any]) -> str:
    return json.dumps(condition, sort_keys=True)


def _skip_of(record: CellRecord, done: CellRecord) -> bool:
    """Whether ``record`` says ``done``'s dataset could not be had (not that a technique could not run)."""
    dataset_skip = record.status == SKIPPED and "techniques" not in record.config
    return dataset_skip and dataset_of(record).get("name") == dataset_of(done).get("name")


def group(records: Sequence[CellRecord]) -> list[Section]:
    """Sections of tables from ``records`` (oldest first): the latest record of each cell counts."""
    # A later record for the same (dataset, condition, label, seed) supersedes an earlier one,
    # e.g. a rerun after an upgrade, or a failure that was retried: only the latest state counts.
    # It takes the earlier one's place, so rows keep the order in which labels first appeared.
    latest: dict[str, CellRecord] = {}
    for record in records:
        identity = json.dumps(
            [dataset_of(record).get("name"), condition_of(record), label_of(record), record.config.get("seed")],
            sort_keys=True,
        )
        latest[identity] = record
        if record.status == DONE:
            # A dataset that trains now was only missing before: forget that it was skipped.
            latest = {k: r for k, r in latest.items() if not _skip_of(r, record)}

    sections: dict[str, Section] = {}
    for record in latest.values():
        dataset = dataset_of(record)
        name = str(dataset.get("name") or "unknown")
        section = sections.setdefault(name, Section(name, str(dataset.get("title") or name)))
        if record.status != DONE:
            section.not_done.append(record)
            continue
        condition = condition_of(record)
        table = section.tables.setdefault(condition_key(condition), Table(condition))
        table.rows.setdefault(label_of(record), []).append(record)
    for section in sections.values():
        for table in section.tables.values():
            _reference_first(table)
    return list(sections.values())


def _reference_first(table: Table) -> None:
    """The reference row (the Baseline) leads its table, as the row the others are compared with,
    even when its cells were retrained after the others; the other rows keep their order."""
    first = [label for label, records in table.rows.items() if records[0].config.get("reference")]
    table.rows = {label: table.rows[label] for label in first + [k for k in table.rows if k not in first]}
