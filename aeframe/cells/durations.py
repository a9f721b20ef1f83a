"""Durations and budgets as people type and read them: one parser, one formatter, one budget wording.

Everything that shows a length of time (the report's columns, the progress lines, the budget a run
was given) goes through here, so the same number reads the same everywhere. No torch: the report
uses it.
"""
from __future__ import annotations

import math
import re

_UNITS = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600}


def parse_duration(text: str) -> float:
    """``45s``, ``10m``, ``1h``, ``1h30m`` or a plain number of seconds -> seconds (positive)."""
    cleaned = text.strip().lower().replace(" ", "")
    if re.fullmatch(r"\d+(\.\d+)?", cleaned):
        seconds = float(cleaned)
    else:
        parts = re.findall(r"(\d+(?:\.\d+)?)(h|min|m|sec|s)", cleaned)
        if not parts or "".join(n + u for n, u in parts) != cleaned:
            raise ValueError(f"cannot read {text!r} as a duration; use e.g. 45s, 10m, 1h or 1h30m")
        seconds = sum(float(n) * _UNITS[u] for n, u in parts)
    if seconds <= 0:
        raise ValueError(f"duration {text!r} must be positive")
    if not math.isfinite(seconds):  # hundreds of digits overflow a float
        raise ValueError(f"duration {text!r} is too long to be a time budget")
    return seconds


def format_duration(seconds: float) -> str:
    """A measured duration as people read it: ``"4.2s"``, ``"45s"``, ``"24m 43s"``, ``"1h 02m 03s"``."""
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"not a duration: {seconds!r}")
    # Tiny test runs take under a second; "0s" would hide whether they took 0.1 s or 0.9 s.
    if round(seconds, 1) < 10:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours}h {minutes:02d}m {secs:02d}s"
    if minutes:
        return f"{minutes}m {secs:02d}s"
    return f"{secs}s"


def describe_budget(epochs: int | None, seconds: float | None, *, per_cell: bool = False) -> str:
    """A budget as it was given: ``"15 epochs"``, ``"60 s"``, ``"15 epochs or 60 s"``.

    ``per_cell`` words it for a table's conditions: ``"15 epochs per cell"``, ``"60 s of training
    per cell"``, ``"15 epochs or 60 s of training per cell, whichever ends first"``. The seconds are
    the limit as typed (``60 s``), not a measured duration, so they are not rounded into minutes.
    """
    epochs_text = f"{epochs} epoch{'s' if epochs != 1 else ''}" if epochs is not None else ""
    seconds_text = f"{seconds:g} s" if seconds is not None else ""
    if not per_cell:
        return " or ".join(t for t in (epochs_text, seconds_text) if t) or "none"
    if epochs_text and seconds_text:
        return f"{epochs_text} or {seconds_text} of training per cell, whichever ends first"
    if epochs_text:
        return f"{epochs_text} per cell"
    if seconds_text:
        return f"{seconds_text} of training per cell"
    return "none"
