"""One check's verdict and the line that shows it."""
from __future__ import annotations

from dataclasses import dataclass

PASS, FAIL, SKIP = "PASS", "FAIL", "SKIP"


@dataclass(frozen=True)
class Check:
    """``status`` of check ``what`` on the ``kind`` named ``name``; ``reason`` says why it failed or was skipped."""

    kind: str
    name: str
    what: str
    status: str
    reason: str = ""

    @property
    def line(self) -> str:
        text = f"{self.status} {self.kind} {self.name}: {self.what}"
        return f"{text}: {self.reason}" if self.reason else text


def verdict(kind: str, name: str, what: str, problems: list[str]) -> Check:
    """PASS when there are no problems, else FAIL with them joined into one line."""
    if problems:
        return Check(kind, name, what, FAIL, "; ".join(problems))
    return Check(kind, name, what, PASS)


def listed(items: list[str], most: int = 3) -> str:
    """``a, b, c, ...``: enough names to find the culprits, short enough for one line."""
    shown = ", ".join(items[:most])
    return f"{shown}, ..." if len(items) > most else shown


