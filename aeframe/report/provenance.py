"""Where a set of cells came from: the commands that ran them, the code, the libraries, the devices."""
from __future__ import annotations

import shlex
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from aeframe.cells.record import CellRecord, Protocol

VERSION_ORDER = ("aeframe", "torch", "torchvision", "cuda", "python")


def distinct(values: Iterable[Any]) -> list[Any]:
    """The values in order of first appearance, without repeats, None or empty strings."""
    return list(dict.fromkeys(v for v in values if v is not None and v != ""))


def provenance(records: Sequence[CellRecord]) -> dict[str, Any]:
    """Commands, commits, versions (package -> every version seen), devices and the finishing span.

    A list with more than one entry means the cells disagree, e.g. a table assembled from runs of
    two aeframe versions: the page says so instead of picking one.
    """
    configs = [r.config for r in records]
    packages = list(VERSION_ORDER) + sorted({p for c in configs for p in c.versions} - set(VERSION_ORDER))
    versions = {p: distinct(c.versions.get(p) for c in configs) for p in packages}
    runs = [c.provenance for c in configs if c.provenance is not None]
    finished = sorted(r.finished_at for r in records if r.finished_at)
    return {
        "commands": distinct(run.command for run in runs),
        "commits": distinct(run.commit for run in runs),
        "versions": {p: v for p, v in versions.items() if v},
        "devices": distinct(c.device.describe() for c in configs),
        "device_types": distinct(c.device.type for c in configs),
        "finished": [finished[0], finished[-1]] if finished else None,
    }


def protocols(rows: Mapping[str, Sequence[CellRecord]]) -> dict[str, Protocol]:
    """Row label -> the training protocol its cells recorded (batch size and phases)."""
    found = {}
    for label, records in rows.items():
        protocol = next((r.config.protocol for r in records if r.config.protocol), None)
        if protocol:
            found[label] = protocol
    return found


def pinned_commands(records: Sequence[CellRecord]) -> list[str]:
    """The distinct commands that ran ``records``, each ``aeframe bench`` that named no technique with
    ``-t NAME`` for every technique its cells trained (sorted, as such a bench ordered them).

    Without ``-t`` a bench trains every registered technique, so the same command run after more were
    registered (a newer aeframe, another plugin) trains more than these cells did; pinned, it trains
    what they did. Such a command trained each technique at its default parameters, so names suffice.
    """
    return [_pinned(command, records) for command in distinct(_command(r) for r in records)]


def _command(record: CellRecord) -> str | None:
    return record.config.provenance.command if record.config.provenance is not None else None


def _pinned(command: str, records: Sequence[CellRecord]) -> str:
    try:
        words = shlex.split(command)
    except ValueError:  # not as aeframe writes commands: shown as it was stored
        return command
    if words[1:2] != ["bench"] or _names_techniques(words[2:]):
        return command
    names = sorted({t.name for r in records if _command(r) == command for t in r.config.techniques})
    if not names:  # only datasets that could not be had: nothing says what it would have trained
        return command
    return shlex.join([*words[:2], *(word for name in names for word in ("-t", name)), *words[2:]])


def _names_techniques(words: Sequence[str]) -> bool:
    """Whether a bench's arguments give ``-t``/``--technique``, in any of the forms click takes."""
    return any(w.startswith(("-t", "--technique")) for w in words)  # -t NAME, -tNAME, --technique[=NAME]
