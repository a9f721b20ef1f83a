"""``aeframe report``'s outputs beyond the tables: the pictures, and the leaderboard page."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from aeframe.cells.record import CellRecord
from aeframe.cells.samples import Samples
from aeframe.data.directories import write_atomically
from aeframe.errors import AeframeError
from aeframe.report.grouping import group
from aeframe.report.leaderboard import leaderboard_page
from aeframe.report.pictures import write_figures
from aeframe.report.render import Figures

if TYPE_CHECKING:
    from aeframe.contract.metric import Metric


def draw(records: Sequence[CellRecord], samples: Mapping[str, Samples], directory: Path,
         say: Callable[[str], None]) -> Figures:
    """Write every table's pictures into ``directory``; a folder that cannot be written is a one-line error."""
    try:
        figures = write_figures(group(records), samples, directory)
    except OSError as exc:
        raise AeframeError(f"cannot write pictures to {directory} ({exc.strerror or exc}); "
                           "pass --images with a writable folder") from None
    count = sum(len(f) for f in figures.values())
    say(f"wrote {count} picture{'s' if count != 1 else ''} to {directory}")
    return figures


def write_page(records: Sequence[CellRecord], metrics: Sequence[Metric], page: Path, command: str,
               figures: Figures | None, say: Callable[[str], None]) -> None:
    """Write the leaderboard page to ``page``; ``command`` is how it was asked for (the page repeats it)."""
    text = leaderboard_page(records, metrics, page, command, datetime.now(timezone.utc), figures)
    try:
        page.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(page, lambda partial: partial.write_text(text))
    except OSError as exc:
        raise AeframeError(f"cannot write {page} ({exc.strerror or exc}); pass --docs with a writable path") from None
    say(f"wrote {page}")
