"""The measured speed choices, kept in one JSON file in the cache directory.

Each entry is keyed by everything its measurement depended on (device name and threads, torch
version, and what was measured: a technique with its parameters, an input shape, a batch size, a
precision). A key that no longer matches (another torch, another machine sharing the cache) simply
is not found, and the choice is measured again. Writes replace the file atomically, so concurrent
runs sharing a cache lose at most one another's newest entry, never the file.

Nothing read back is trusted: a damaged file, or an entry its reader's check refuses (a rate that is
no number, a mode that does not exist), is said once in a warning and measured again, never a failed cell.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Callable

from aeframe.console import say
from aeframe.data.directories import write_atomically
from aeframe.data.loading import CACHE_ENV

FILE_NAME = "speed-choices.json"
FORMAT = 1


# What was warned about in this process, so that each cell of a run does not repeat it.
_warned: set[str] = set()
# The entries of cache files that could not be written, by file: the rest of the run reads them from here
# (each cell makes its own SpeedCache) instead of measuring every cell again.
_unwritten: dict[Path, dict[str, Any]] = {}


def _warn_once(text: str) -> None:
    if text not in _warned:
        _warned.add(text)
        say(f"warning: {text}")


def finite_number(value: Any) -> bool:
    """Whether ``value`` (read from JSON) is a finite int or float, not a bool: what a measured number must be."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def rates_problem(rates: Any) -> str | None:
    """Why ``rates`` (an entry's images per second by name) is not a mapping of finite rates; None when it is.

    Args:
        rates: What the entry holds; None (no rates kept) is fine.

    Returns:
        The reason, for the warning, or None.
    """
    if rates is None:
        return None
    if not isinstance(rates, dict):
        return "images_per_second is not a mapping"
    for name, rate in rates.items():
        if not (finite_number(rate) and rate >= 0):
            return f"images_per_second of {name} is {json.dumps(rate)[:40]}, not a rate"
    return None


def _kind(key: str) -> str:
    """What an entry's key says was measured ("layout"), for a warning."""
    try:
        kind = json.loads(key).get("kind")
    except (ValueError, AttributeError):
        kind = None
    return kind if isinstance(kind, str) else "speed"


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
        if self.path in _unwritten:
            return _unwritten[self.path]
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:  # UnicodeDecodeError is a ValueError
            return self._damaged(f"it cannot be read ({type(exc).__name__})")
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            return self._damaged(f"it is not a format-{FORMAT} speed cache")
        entries = data.get("entries")
        return entries if isinstance(entries, dict) else self._damaged("its entries are not a mapping")

    def _damaged(self, why: str) -> dict[str, Any]:
        """Nothing: every choice is measured again, and the next write replaces the file."""
        _warn_once(f"ignoring the speed cache {self.path}: {why}; its choices are measured again")
        return {}

    def get(self, key: str, check: Callable[[dict[str, Any]], str | None] | None = None) -> dict[str, Any] | None:
        """The entry under ``key``; None when there is none, or ``check`` refuses it (said once, as a warning).

        Args:
            key: From :func:`entry_key`.
            check: The reader's check of an entry: why it cannot be used (a value of the wrong type or range),
                or None when it can.

        Returns:
            The entry, or None: then the reader measures again and its ``put`` replaces the entry.
        """
        found = self._read().get(key)
        if found is None:
            return None
        problem = "it is not a mapping" if not isinstance(found, dict) else check(found) if check else None
        if problem is not None:
            _warn_once(f"ignoring the cached {_kind(key)} choice in {self.path or 'memory'}: {problem}; measuring "
                       "it again")
            return None
        return found

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
            _unwritten.pop(self.path, None)
        except OSError as exc:
            _unwritten[self.path] = entries
            _warn_once(f"cannot keep speed choices in {self.path} ({exc.strerror or exc}); this run keeps them in "
                       f"memory and the next measures them again; free space there or point {CACHE_ENV} at another "
                       "directory")
