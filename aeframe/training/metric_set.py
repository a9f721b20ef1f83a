"""The metrics of one run: prepared once per dataset and device, a fresh copy of each for every cell.

Registered metrics are prototypes shared by the whole process; evaluating on them directly would
let two cells in flight mix their running sums. Every cell therefore gets deep copies, and what a
metric's ``prepare`` returns (a reference classifier, say) is made once and handed to the copies
instead of living in a shared instance.

Every executor does it the same way: :meth:`MetricSet.prepare` before a dataset's first cell (in
this process, or in a task whose result is shipped to the workers and taken with
:meth:`MetricSet.adopt`), then :meth:`MetricSet.for_cell` per cell.
"""
from __future__ import annotations

import copy
from typing import Any, Iterable

from aeframe.contract.metric import Metric


class MetricSet:
    """Hands out per-cell copies of ``metrics``, running each one's ``prepare`` once per key.

    The key is (metric name, ``context.dataset_spec``, ``context.device``). ``prepare`` runs on a
    copy of the prototype kept for that key, not on the prototype: a legacy metric that stores what
    it prepared on ``self`` then keeps each dataset's state apart, and the registered object is
    never touched.
    """

    def __init__(self, metrics: Iterable[Metric]):
        self.prototypes = list(metrics)
        self._prepared: dict[tuple[str, str, str], tuple[Metric, Any]] = {}

    def for_cell(self, context: Any) -> list[Metric]:
        """Fresh metrics for one cell, prepared for its dataset, with ``prepared`` set; not started."""
        fresh = []
        for prototype in self.prototypes:
            base, prepared = self._base(prototype, context)
            metric = copy.deepcopy(base)
            metric.prepared = prepared  # shared on purpose: it may be a model, and cells only read it
            fresh.append(metric)
        return fresh

    def prepare(self, context: Any) -> dict[str, tuple[Metric, Any] | None]:
        """Metric name -> (prepared copy, what ``prepare`` returned) for ``context``'s dataset; None for a
        metric whose ``prepare`` raised (a cell that adopts these prepares it again, and fails naming it).

        Kept for this set's later cells; an executor that trains elsewhere ships the result to its workers
        (see :meth:`adopt`).
        """
        found: dict[str, tuple[Metric, Any] | None] = {}
        for prototype in self.prototypes:
            try:
                found[prototype.name] = self._base(prototype, context)
            except Exception:  # the cell that meets it again reports it, as with local runs
                found[prototype.name] = None
        return found

    def adopt(self, context: Any, prepared: dict[str, tuple[Metric, Any] | None]) -> None:
        """Take what :meth:`prepare` made elsewhere as this set's preparation for ``context``."""
        for prototype in self.prototypes:
            made = prepared.get(prototype.name)
            if made is not None:
                self._prepared[self._key(prototype, context)] = made

    @staticmethod
    def _key(prototype: Metric, context: Any) -> tuple[str, str, str]:
        return prototype.name, context.dataset_spec, str(context.device)

    def _base(self, prototype: Metric, context: Any) -> tuple[Metric, Any]:
        key = self._key(prototype, context)
        if key not in self._prepared:
            base = copy.deepcopy(prototype)
            # Stored only once prepare succeeded: a failure is retried (and reported) by the next cell.
            self._prepared[key] = (base, base.prepare(context))
        return self._prepared[key]
