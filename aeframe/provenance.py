"""Where a set of cells came from: the commands that ran them, the code, the libraries, the devices."""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from aeframe.record import CellRecord

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
    packages = list(VERSION_ORDER) + sorted({p for c in configs for p in (c.get("versions") or {})} - set(VERSION_ORDER))
    versions = {p: distinct((c.get("versions") or {}).get(p) for c in configs) for p in packages}
    finished = sorted(r.finished_at for r in records if r.finished_at)
    return {
        "commands": distinct((c.get("provenance") or {}).get("command") for c in configs),
        "commits": distinct((c.get("provenance") or {}).get("commit") for c in configs),
        "versions": {p: v for p, v in versions.items() if v},
        "devices": distinct(
            f"{(c.get('device') or {}).get('name')} ({(c.get('device') or {}).get('type')})"
            for c in configs if c.get("device")
        ),
        "device_types": distinct((c.get("device") or {}).get("type") for c in configs),
        "finished": [finished[0], finished[-1]] if finished else None,
    }


def protocols(rows: dict[str, list[CellRecord]]) -> dict[str, dict[str, Any]]:
    """Row label -> the training protocol its cells recorded (batch size and phases)."""
    found = {}
    for label, records in rows.items():
        protocol = next((r.config.get("protocol") for r in records if r.config.get("protocol")), None)
        if protocol:
            found[label] = protocol
    return found
