"""The measured speed choices, kept in one JSON file in the cache directory.

Each entry is keyed by everything its measurement depended on (device name and threads, torch
version, and what was measured: a technique with its parameters, an input shape, a batch size, a
precision). A key that no longer matches (another torch, another machine sharing the cache) simply
is not found, and the choice is measured again. Writes replace the file atomically, so concurrent
runs sharing a cache lose at most one another's newest entry, never the file.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from aeframe.data.directories import write_atomically

FILE_NAME = "speed-choices.json"
FORMAT = 1


def entry_key(kind: str, **parts: Any) -> str:
    """A stable text key for an entry of ``kind`` ("precision", "layout") measured under ``parts``."""
    return json.dumps({"kind": kind, **parts}, sort_keys=True)


class SpeedCache:
    """Measured choices by key. ``directory`` None keeps them in memory only (nothing is written)."""

    def __init__(self, directory: Path | None):
        self.path = Path(directory) / FILE_NAME if directory is not None else None
        self._memory: dict[str, Any] = {}

    def _read(self) -> dict[str, Any]:
        if self.path is None:
            return self._memory
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}  # missing or damaged: measure again, and the next write replaces it
        entries = data.get("entries") if isinstance(data, dict) and data.get("format") == FORMAT else None
        return entries if isinstance(entries, dict) else {}

    def get(self, key: str) -> dict[str, Any] | None:
        found = self._read().get(key)
        return found if isinstance(found, dict) else None

    def put(self, key: str, value: dict[str, Any]) -> None:
        """Keep ``value`` under ``key``. A cache that cannot be written costs a measurement next time, not the run."""
        entries = dict(self._read())
        entries[key] = value
        if self.path is None:
            self._memory = entries
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            text = json.dumps({"format": FORMAT, "entries": entries}, indent=1, sort_keys=True)
            write_atomically(self.path, lambda partial: partial.write_text(text))
        except OSError:
            self._memory = entries
            self.path = None
