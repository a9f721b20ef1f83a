"""Merging results stores made on separate machines into one: ``aeframe merge OUT IN...``.

Every attempt of every input is kept, so OUT holds the whole history. Where stores hold the same
cell (the same key), the attempt that finished last counts: each merged cell's attempts get row
ids in the order of their ``finished_at`` (ties: OUT's first, then the inputs in the order given),
which is the order the ``cells`` view, ``aeframe bench``'s resume and the report all go by. An
attempt that OUT already holds (same key, times, status and content) is not added again, so
merging is idempotent. The sample images of a cell follow the ``done`` attempt that counts.

Every input is read, and refused with the store's one-line error if it cannot be (not a store, a
newer schema), before OUT is opened, so a refused input leaves OUT untouched; the attempts are
then written in one transaction.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from aeframe.cells.record import DONE, CellRecord, label_of
from aeframe.errors import StoreError
from aeframe.store.rows import attempt_row
from aeframe.store.sqlite_store import Store

Say = Callable[[str], None]


@dataclass(frozen=True)
class InputCount:
    """What one input brought: its readable attempts, how many were new to OUT, how many unreadable rows it had."""

    name: str
    attempts: int = 0
    new: int = 0
    unreadable: int = 0

    @property
    def present(self) -> int:
        """Attempts OUT held already (from an earlier merge, or another input)."""
        return self.attempts - self.new


@dataclass(frozen=True)
class Disagreement:
    """A cell whose stores hold different ``done`` attempts: each source's, and the one that counts now."""

    key: str
    cell: str  # "Baseline on shapes, seed 0"
    finished: dict[str, str]  # source -> finished_at of its counting done attempt
    winners: list[str]  # the sources whose done attempt counts now
    winner_finished: str


@dataclass
class MergeSummary:
    """What :func:`merge_stores` did, for the lines it says and for tests."""

    out: str
    inputs: list[InputCount] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # inputs that are OUT itself
    disagreements: list[Disagreement] = field(default_factory=list)
    attempts: int = 0  # in OUT afterwards
    cells: int = 0
    done: int = 0

    def lines(self) -> list[str]:
        """The summary, one line per input, per disagreement, and one for OUT."""
        lines = [f"{name} is {self.out} itself: its attempts are there already" for name in self.skipped]
        for count in self.inputs:
            unreadable = f"; {count.unreadable} unreadable left out" if count.unreadable else ""
            lines.append(f"{count.name}: {_n(count.attempts, 'attempt')}, {count.new} new, "
                         f"{count.present} already in {self.out}{unreadable}")
        for d in self.disagreements:
            each = ", ".join(f"{source} finished {when}" for source, when in d.finished.items())
            lines.append(f"stores disagree on {d.cell} (cell {d.key}): done in {each}; the attempt "
                         f"finished {d.winner_finished} ({', '.join(d.winners)}) counts, the others are history")
        lines.append(f"{self.out} now holds {_n(self.attempts, 'attempt')} of {_n(self.cells, 'cell')} "
                     f"({self.done} done)")
        return lines


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


@dataclass
class _Source:
    """An input's readable attempts (oldest finished first) and sample images."""

    name: str
    attempts: list[CellRecord]
    sample_rows: dict[str, tuple] = field(default_factory=dict)
    unreadable: int = 0

    def counting(self) -> dict[str, CellRecord]:
        """Key -> the done attempt that counts in this store."""
        return _counting(self.attempts)


def _counting(records: Sequence[CellRecord]) -> dict[str, CellRecord]:
    """Key -> the latest finished done attempt of ``records`` (oldest finished first), as the report picks it."""
    return {record.key: record for record in records if record.status == DONE}


def _read(path: Path, say: Say) -> _Source:
    source = _Source(str(path), [])

    def warn(message: str) -> None:
        if message.startswith(f"{path}: left out the attempt"):
            source.unreadable += 1
        say(f"warning: {message}")

    with Store(path, write=False, warn=warn) as store:
        source.attempts = store.records()
        source.sample_rows = store.sample_rows({r.key for r in source.attempts if r.status == DONE})
    return source


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:  # OUT does not exist yet
        return False


def merge_stores(out: Path, inputs: Sequence[Path], say: Say) -> MergeSummary:
    """Merge the results stores ``inputs`` into ``out`` (created if missing, else added to); see the module.

    ``say`` gets warnings and the summary (:meth:`MergeSummary.lines`), one line each. An input
    that is ``out`` itself is skipped. Raises :class:`aeframe.errors.StoreError` when a store
    cannot be used; nothing is written to ``out`` then.
    """
    try:
        return _merge(out, inputs, say)
    except StoreError as e:
        # The store's advice is for `--store`, which merge does not have: its files are its arguments.
        raise StoreError(str(e).replace("pass --store with ", "give ")) from None


def _merge(out: Path, inputs: Sequence[Path], say: Say) -> MergeSummary:
    summary = MergeSummary(str(out))
    sources = []
    for path in inputs:
        if _same_file(path, out):
            summary.skipped.append(str(path))
        else:
            sources.append(_read(path, say))

    with Store(out, warn=lambda message: say(f"warning: {message}")) as store:
        plan = _Plan(str(out), store.attempts(), sources)
        store.append(plan.order, plan.samples)
        records = store.records()
    summary.inputs, summary.disagreements = plan.counts, plan.disagreements
    summary.attempts = len(records)
    summary.cells = len({r.key for r in records})
    summary.done = len({r.key for r in records if r.status == DONE})
    for line in summary.lines():
        say(line)
    return summary


@dataclass(order=True)
class _Entry:
    """One distinct attempt, placed by when it finished, then by where it was first found."""

    finished_at: str
    rank: int  # OUT's attempts first (in row id order), then each input's in turn
    record: CellRecord = field(compare=False)
    row_id: int | None = field(compare=False)  # in OUT; None for an attempt new to OUT


class _Plan:
    """What to append to OUT (:attr:`order`: row ids to move and records to add) and which samples to set."""

    def __init__(self, out: str, existing: list[tuple[int, CellRecord]], sources: list[_Source]) -> None:
        self.order: list[int | CellRecord] = []
        self.samples: dict[str, tuple | None] = {}
        self.counts: list[InputCount] = []
        self.disagreements: list[Disagreement] = []
        self._held: dict[tuple, _Entry] = {}  # each distinct attempt, as its row
        self._by_key: dict[str, list[_Entry]] = {}
        self._first: dict[tuple, str] = {}  # attempt -> the first source that held it
        self._counting: dict[str, dict[str, CellRecord]] = {out: _counting([record for _, record in existing])}

        # Row id order is the order OUT's attempts count in: keep it for ties in finished_at.
        for row_id, record in sorted(existing, key=lambda pair: pair[0]):
            self._add(record, out, row_id)
        pictures: dict[tuple, tuple] = {}  # a store's counting done attempt -> its sample images
        for source in sources:
            new = sum(self._add(record, source.name, None) for record in source.attempts)
            self.counts.append(InputCount(source.name, len(source.attempts), new, source.unreadable))
            self._counting[source.name] = counting = source.counting()
            for key, record in counting.items():
                if key in source.sample_rows:
                    pictures.setdefault(attempt_row(record), source.sample_rows[key])

        moving: list[_Entry] = []
        for key, entries in self._by_key.items():
            entries.sort()
            new = [i for i, e in enumerate(entries) if e.row_id is None]
            if new:
                # OUT's attempts that finished before every new one keep their row ids; the rest move after them.
                moving.extend(entries[new[0]:])
                winner = self._winner(key)
                if winner is not None and winner.row_id is None:
                    self.samples[key] = pictures.get(attempt_row(winner.record))
            self._disagreement(key)
        # In finished_at order across cells too, so that the rows read as one history.
        self.order = [e.record if e.row_id is None else e.row_id for e in sorted(moving)]

    def _add(self, record: CellRecord, source: str, row_id: int | None) -> bool:
        """Hold ``record`` unless an identical attempt is held already; whether it was new."""
        row = attempt_row(record)
        if row in self._held:
            return False
        entries = self._by_key.setdefault(record.key, [])
        self._held[row] = entry = _Entry(record.finished_at, len(self._held), record, row_id)
        self._first[row] = source
        entries.append(entry)
        return row_id is None

    def _winner(self, key: str) -> _Entry | None:
        done = [e for e in self._by_key[key] if e.record.status == DONE]
        return done[-1] if done else None

    def _disagreement(self, key: str) -> None:
        held = {name: counting[key] for name, counting in self._counting.items() if key in counting}
        if len({attempt_row(record) for record in held.values()}) < 2:
            return
        winner = self._winner(key)
        assert winner is not None  # there are several done attempts
        record, row = winner.record, attempt_row(winner.record)
        sources = [name for name, mine in held.items() if attempt_row(mine) == row] or [self._first[row]]
        cell = f"{label_of(record)} on {record.config.dataset.name or 'unknown'}, seed {record.config.seed}"
        self.disagreements.append(Disagreement(key, cell, {name: r.finished_at for name, r in held.items()},
                                               sources, record.finished_at))
