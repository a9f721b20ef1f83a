"""How a cell computes: numeric precision, memory format and compilation, as its config records them.

These settings change how fast a cell trains, and (through rounding, and through how many steps fit
in a time budget) its numbers, so they are kept in every cell's config and are part of its key.
What ``auto`` means is not a table of CPU features but a measurement on the machine at hand: the
precision by :mod:`aeframe.speed.precision_probe` once per device, the memory layout by
:mod:`aeframe.speed.layout` per technique and input shape. docs/speed.md explains both.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Mapping

    import torch

PRECISIONS = ("fp32", "bf16", "fp16")
PRECISION_CHOICES = ("auto",) + PRECISIONS

# How a cell's precision was decided (Speed.precision_from).
ASKED = "asked"
MEASURED = "measured"


@dataclass(frozen=True)
class Speed:
    """The settings of a run. The defaults are plain eager fp32 in the usual layout, as before these existed.

    ``channels_last`` is None when each cell's layout is measured (:mod:`aeframe.speed.layout`); the
    layout a cell trained in is then in its stats (``memory_format``). ``graphs`` likewise: None when
    each cell measures whether its step is faster captured in a CUDA graph (:mod:`aeframe.speed.graphs`),
    True or False when asked for; the mode a cell trained in is in its stats (``step_mode``).
    ``precision_from`` says whether the precision was asked for or measured (``--precision auto``); it
    is not part of a cell's key, since it does not change the numbers: the precision does.
    """

    precision: str = "fp32"
    channels_last: bool | None = False
    compile: bool = False
    precision_from: str = ASKED
    graphs: bool | None = None

    def to_json(self) -> dict[str, Any]:
        """As a cell's config records them."""
        data = self.decisive()
        if self.precision_from != ASKED:
            data["precision_from"] = self.precision_from
        return data

    def decisive(self) -> dict[str, Any]:
        """The settings that decide a cell's numbers (see :func:`aeframe.cells.spec.cell_key`)."""
        found = {"precision": self.precision, "channels_last": self.channels_last, "compile": self.compile}
        # Only when asked for: keys made before graphs existed stay the keys of measured cells.
        if self.graphs is not None:
            found["graphs"] = self.graphs
        return found

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Speed:
        """The settings a cell's config records; configs stored before they existed were plain fp32."""
        layout = data.get("channels_last", False)
        return cls(str(data.get("precision") or "fp32"), None if layout is None else bool(layout),
                   bool(data.get("compile", False)), str(data.get("precision_from") or ASKED),
                   None if data.get("graphs") is None else bool(data["graphs"]))

    @property
    def tuned_layout(self) -> bool:
        return self.channels_last is None

    def describe(self) -> str:
        precision = f"precision {self.precision}" + (" (measured: the fastest within tolerance)"
                                                     if self.precision_from == MEASURED else "")
        layout = ("memory layout measured per technique" if self.tuned_layout
                  else f"channels_last {'on' if self.channels_last else 'off'}")
        graphs = ("CUDA graphs measured per technique" if self.graphs is None
                  else f"CUDA graphs {'on' if self.graphs else 'off'}")
        return f"{precision}, {layout}, compile {'on' if self.compile else 'off'}, {graphs}"

    @property
    def dtype(self) -> torch.dtype:
        import torch

        return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[self.precision]
