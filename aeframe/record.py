"""What one finished cell leaves behind: the unit the store saves and the report reads."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aeframe.samples import Samples

DONE, FAILED, DIVERGED, SKIPPED = "done", "failed", "diverged", "skipped"
STATUSES = (DONE, FAILED, DIVERGED, SKIPPED)


@dataclass
class CellRecord:
    """One cell's configuration, outcome, metrics, run statistics and per-epoch curve.

    ``config`` is plain JSON data:
      ``label``      the row name, e.g. "Baseline" or "Pixel Shuffle + Feature Loss [icnr=true]";
      ``techniques`` list of {"name", "params", "version"};
      ``dataset``    {"name", "title", "params"};
      ``seed``, ``budget`` {"epochs", "seconds"}, ``protocol`` (a short text),
      ``device`` {"type", "name"}, ``versions`` {"aeframe", "torch", "torchvision", "python"}.
    ``key`` is a hash of everything in ``config`` that decides the numbers (see plan.cell_key).
    ``stats``: train_seconds, eval_seconds, epochs, steps, images_per_second, params.
    ``curve``: one dict per epoch (or partial epoch at the budget's end):
    {"epoch", "step", "train_loss", "test_mse", "seconds"}.
    ``samples``: reconstructions of a few test images, for the report's pictures; the store keeps
    them in a table of their own and reads them only on request (:meth:`Store.samples`).
    """

    key: str
    config: dict[str, Any]
    status: str
    error: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    stats: dict[str, Any] = field(default_factory=dict)
    curve: list[dict[str, Any]] = field(default_factory=list)
    started_at: str = ""
    finished_at: str = ""
    samples: Samples | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"unknown status {self.status!r}")



def full_size_points(record: CellRecord) -> list[tuple[float, float]]:
    """(training seconds, test MSE) of the curve's evaluations at the dataset's own image size.

    A phase that trains on downsized images (progressive resizing) is evaluated at its size too;
    those points do not compare with anything else and are left out.
    """
    phases = (record.config.get("protocol") or {}).get("phases") or []
    downsized = {p.get("name") for p in phases if p.get("image_size")}
    points = []
    for point in record.curve:
        seconds, mse = point.get("seconds"), point.get("test_mse")
        if isinstance(seconds, (int, float)) and isinstance(mse, (int, float)) and point.get("phase") not in downsized:
            points.append((float(seconds), float(mse)))
    return points
