"""A planned cell as plain data, from planning to its record: what it trains, on which dataset, with
which metrics, and its key.

Planning makes a :class:`CellSpec` for every (technique combination, dataset, seed); the driver
keys it once the dataset is loaded and its fingerprint known (:meth:`CellSpec.keyed`); an executor
trains it in this process or ships it to a worker. Either way the same function rebuilds its live
parts from a plugin registry (:func:`aeframe.planning.rebuild.runnable`), so a local run exercises
exactly what a remote one does. No plugin object is inside: a spec pickles without any plugin.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, replace

from aeframe.cells.record import FAILED, CellConfig, CellRecord, now
from aeframe.cells.settings import Speed


def cell_key(config: CellConfig) -> str:
    """A hash of everything that decides a cell's numbers (not the device's name or the label).

    The device's numerics are part of it (torch's threads on a CPU, the deterministic-algorithm and
    float32-matmul switches: :func:`aeframe.execution.environment.numerics_state`): a CPU cell on one
    thread sums in another order than on two, and under a time budget trains fewer steps.

    The data's fingerprint is part of it: a cell trained on other data (another ``--data-dir``,
    changed files, another version of a generator) is another cell. Cells stored before
    fingerprints existed (aeframe 0.1.0) were hashed without it, so no key matches them any more:
    nothing proves they saw today's data.
    """
    decisive = {
        "techniques": [t.to_json() for t in config.techniques],
        "dataset": {"name": config.dataset.name, "params": config.dataset.params,
                    "fingerprint": config.dataset.fingerprint},
        "seed": config.seed,
        "budget": config.budget.to_json(),
        "lr": config.lr,
        "device": config.device.type,
        "versions": {k: config.versions[k] for k in ("aeframe", "torch")},
    }
    if config.device.numerics:  # records stored before aeframe 0.4 have none, and keep their keys
        decisive["numerics"] = config.device.numerics
    # Precision changes the rounding of every step; channels_last and compile change the order of
    # float sums (so the last bits), and under a time budget how many steps fit: all three decide
    # the numbers. Only values other than plain eager fp32 are hashed, so that cells stored before
    # these settings existed (all plain fp32) keep their keys.
    plain = Speed().decisive()
    decisive.update({k: v for k, v in config.speed.decisive().items() if v != plain.get(k)})
    return hashlib.sha256(json.dumps(decisive, sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class CellSpec:
    """One planned cell.

    config:   what it trains and where (:class:`aeframe.cells.record.CellConfig`); the record keeps it.
    dataset:  the dataset as ``-d`` takes it (``shapes[train=512]``): what loads its data.
    metrics:  the names of the metrics it is evaluated with.
    key:      :func:`cell_key` of ``config``, made once by :meth:`keyed` when the data's fingerprint
              is known; None before.
    stand_in: for an offline stand-in (``--stand-ins``), one sentence on what differs from the row it
              stands in for; its record keeps it.
    """

    config: CellConfig
    dataset: str
    metrics: tuple[str, ...] = ()
    key: str | None = None
    stand_in: str | None = None

    def keyed(self, fingerprint: str) -> CellSpec:
        """This spec with the fingerprint of the data it will train on, and its key.

        Args:
            fingerprint: The loaded data's :meth:`aeframe.ImageData.fingerprint`.

        Returns:
            A copy of this spec whose config carries ``fingerprint`` and whose :attr:`key` is that config's
                :func:`cell_key`.
        """
        config = replace(self.config, dataset=replace(self.config.dataset, fingerprint=fingerprint))
        return replace(self, config=config, key=cell_key(config))

    @property
    def title(self) -> str:
        """``Baseline on shapes (seed 0)``: the cell as progress lines and task names show it."""
        return f"{self.config.label} on {self.dataset} (seed {self.config.seed})"

    def failed(self, reason: str, started_at: str | None = None) -> CellRecord:
        """The record of this cell when it never got to train, saying why.

        It names no plugin: the summary of failed cells must not blame a technique that did not run.

        Args:
            reason: Why the cell did not train, as the user should read it; kept as the record's error.
            started_at: When the attempt began, as records keep times (:func:`aeframe.cells.record.now`);
                None: now.

        Returns:
            A record with status failed, this spec's key (or, before the data's fingerprint was known, the
                key of its config without one), and no plugins in its config.
        """
        # A cell whose data never loaded has no fingerprint: its key is that of its config without one.
        return CellRecord(key=self.key or cell_key(self.config), config=replace(self.config, plugins={}),
                          status=FAILED, error=reason, started_at=started_at or now(), finished_at=now())
