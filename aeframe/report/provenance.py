"""Where a set of cells came from: the commands that ran them, the code, the libraries, the devices."""
from __future__ import annotations

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
