"""What one finished cell leaves behind: the unit the store saves and the report reads.

A record's configuration is a :class:`CellConfig`: what was asked for (techniques, dataset, seed,
budget, settings) and where it ran. Its JSON form is what the store keeps; it has the same keys
that aeframe 0.1.0 wrote (plus ``kind``), so an older aeframe still reads a newer store, and
:meth:`CellConfig.from_json` reads every older form. Keys this aeframe does not know are kept
and written back unchanged. No torch here: the report reads records without it.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from aeframe.cells.settings import Speed

if TYPE_CHECKING:
    from aeframe.cells.samples import Samples

DONE, FAILED, DIVERGED, SKIPPED = "done", "failed", "diverged", "skipped"
STATUSES = (DONE, FAILED, DIVERGED, SKIPPED)

# What a record stands for.
CELL = "cell"  # one technique combination x dataset x seed that ran: done, failed or diverged
SKIPPED_TECHNIQUE = "skipped-technique"  # a cell whose technique cannot run here (status skipped)
SKIPPED_DATASET = "skipped-dataset"  # a dataset that could not be had, standing for all its cells
KINDS = (CELL, SKIPPED_TECHNIQUE, SKIPPED_DATASET)

# A cell that got less than this share of the CPU time it asked for is marked as trained on a busy
# machine. Well below what an idle run gets (0.95 and up with scheduler statistics), well above what
# a run sharing its cores with as many busy processes as it has threads gets (about 0.5).
BUSY_BELOW = 0.75

CPU_SHARE_MEANING = ("cpu_share: over the training clock, the CPU time the process's threads got over the time "
                     "they asked for (got + waited in the run queue; Linux), or else process CPU time over wall "
                     "time x torch threads")


def now() -> str:
    """The time as records keep it: UTC, ISO 8601, to the second."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def busy_share(share: float | None) -> bool:
    """Whether a measured CPU share (:mod:`aeframe.speed.contention`) means the machine was busy."""
    return isinstance(share, (int, float)) and share < BUSY_BELOW


def _unknown(data: Mapping[str, Any], cls: type) -> dict[str, Any]:
    """The entries of ``data`` that are not fields of ``cls``: kept so that they are written back."""
    known = {f.name for f in fields(cls)} - {"extra"}
    return {k: v for k, v in data.items() if k not in known}


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


@dataclass(frozen=True)
class DatasetRef:
    """The dataset a cell trained on: its registered name, its title, its parameters (as text) and the
    fingerprint of the data it loaded (:meth:`aeframe.ImageData.fingerprint`; None until the data is
    loaded, and in records stored before fingerprints existed)."""

    name: str = ""
    title: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    fingerprint: str | None = None
    extra: dict[str, Any] = field(default_factory=dict, repr=False)

    def to_json(self) -> dict[str, Any]:
        data = {"name": self.name, "title": self.title, "params": dict(self.params)}
        if self.fingerprint is not None:  # absent rather than null: older records read the same
            data["fingerprint"] = self.fingerprint
        return {**data, **self.extra}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> DatasetRef:
        fingerprint = data.get("fingerprint")
        return cls(str(data.get("name") or ""), str(data.get("title") or ""), dict(_mapping(data.get("params"))),
                   fingerprint if isinstance(fingerprint, str) else None, _unknown(data, cls))


@dataclass(frozen=True)
class TechniqueRef:
    """One technique of a cell's combination: its name, parameters (as text) and plugin version.

    The name is the registry's: ``DIST:name`` for a name that plugins of two distributions register
    (:mod:`aeframe.registry.plugins`), so that the cell is rebuilt with the same one.
    """

    name: str
    params: dict[str, Any] = field(default_factory=dict)
    version: str | None = None
    extra: dict[str, Any] = field(default_factory=dict, repr=False)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "params": dict(self.params), "version": self.version, **self.extra}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TechniqueRef:
        return cls(str(data.get("name") or ""), dict(_mapping(data.get("params"))), data.get("version"),
                   _unknown(data, cls))


@dataclass(frozen=True)
class BudgetLimits:
    """The budget a cell was given: at most ``epochs`` epochs and/or ``seconds`` of training."""

    epochs: int | None = None
    seconds: float | None = None
    extra: dict[str, Any] = field(default_factory=dict, repr=False)

    def to_json(self) -> dict[str, Any]:
        return {"epochs": self.epochs, "seconds": self.seconds, **self.extra}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> BudgetLimits:
        return cls(data.get("epochs"), data.get("seconds"), _unknown(data, cls))


# torch's defaults of the switches in DeviceRef.numerics (aeframe.execution.environment.numerics_state).
NUMERICS_DEFAULTS: dict[str, Any] = {"deterministic": False, "float32_matmul": "highest", "matmul_tf32": False,
                                     "cudnn_tf32": True, "cudnn_deterministic": False}


@dataclass(frozen=True)
class DeviceRef:
    """Where a cell ran: the device kind (``cpu``, ``cuda``, ``mps``), its model name, and the process's
    switches that change its numbers (``numerics``: see
    :func:`aeframe.execution.environment.numerics_state`; empty in records stored before aeframe 0.4)."""

    type: str | None = None
    name: str | None = None
    extra: dict[str, Any] = field(default_factory=dict, repr=False)
    numerics: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> str:
        """``"NVIDIA H200 (cuda)"``; whichever part is known."""
        return " ".join(filter(None, [self.name, f"({self.type})" if self.type else None]))

    def distinctive_numerics(self) -> dict[str, Any]:
        """The thread count and the switches set otherwise than torch's defaults: what tells this device's
        tables apart. In records from before ``numerics``, the thread count the CPU's name gives."""
        found = {k: v for k, v in self.numerics.items() if k != "threads" and NUMERICS_DEFAULTS.get(k) != v}
        threads = self.numerics.get("threads")
        if threads is None and self.type == "cpu":
            named = re.search(r"\((\d+) threads\)$", self.name or "")
            threads = int(named.group(1)) if named else None
        if threads is not None:
            found["threads"] = threads
        return found

    def to_json(self) -> dict[str, Any]:
        found = {"type": self.type, "name": self.name, **self.extra}
        if self.numerics:  # absent rather than empty: older records read the same
            found["numerics"] = dict(self.numerics)
        return found

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> DeviceRef:
        return cls(data.get("type"), data.get("name"), _unknown(data, cls), dict(_mapping(data.get("numerics"))))


@dataclass(frozen=True)
class Provenance:
    """How a cell came to be run: the command as typed (None through the Python API) and aeframe's commit."""

    command: str | None = None
    commit: str | None = None
    extra: dict[str, Any] = field(default_factory=dict, repr=False)

    def to_json(self) -> dict[str, Any]:
        return {"command": self.command, "commit": self.commit, **self.extra}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Provenance:
        return cls(data.get("command"), data.get("commit"), _unknown(data, cls))


@dataclass(frozen=True)
class PhaseSummary:
    """One phase of a training schedule: its share of the budget, peak learning rates and image size."""

    name: str | None = None
    fraction: float | None = None
    max_lr: list[float] = field(default_factory=list)
    image_size: int | None = None  # None: the dataset's own size
    extra: dict[str, Any] = field(default_factory=dict, repr=False)

    def to_json(self) -> dict[str, Any]:
        # Alphabetical, as the store writes it: a record reads the same fresh or stored.
        return {"fraction": self.fraction, "image_size": self.image_size, "max_lr": list(self.max_lr),
                "name": self.name, **self.extra}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PhaseSummary:
        rates = data.get("max_lr")
        return cls(data.get("name"), data.get("fraction"), list(rates) if isinstance(rates, list) else [],
                   data.get("image_size"), _unknown(data, cls))


@dataclass(frozen=True)
class Protocol:
    """The training protocol a cell recorded: its batch size and schedule phases."""

    batch_size: int | None = None
    phases: list[PhaseSummary] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict, repr=False)

    def to_json(self) -> dict[str, Any]:
        return {"batch_size": self.batch_size, "phases": [p.to_json() for p in self.phases], **self.extra}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Protocol:
        phases = data.get("phases")
        return cls(data.get("batch_size"),
                   [PhaseSummary.from_json(p) for p in phases if isinstance(p, Mapping)] if isinstance(phases, list)
                   else [],
                   _unknown(data, cls))


# JSON keys of CellConfig's parts that are objects, and the part that reads each.
_PARTS: dict[str, Any] = {"dataset": DatasetRef, "budget": BudgetLimits, "device": DeviceRef,
                          "provenance": Provenance, "protocol": Protocol}
# The keys a CellConfig writes itself; every other key of a stored config is kept in ``extra``.
_WRITTEN = ("kind", "label", "reference", "in_study", "techniques", "dataset", "seed", "budget", "lr",
            "precision", "channels_last", "compile", "device", "versions", "provenance", "plugins", "protocol")


@dataclass(frozen=True)
class CellConfig:
    """A cell's configuration: what it trained, on what, under which budget and settings, and where.

    ``kind`` says what the record stands for (:data:`CELL`, :data:`SKIPPED_TECHNIQUE`,
    :data:`SKIPPED_DATASET`). A skipped dataset has no techniques and no seed. ``reference`` is
    True for the reference technique (the study's Baseline) trained alone at its default
    parameters: the report compares the other rows with it. ``in_study`` is True when every technique
    of the combination is one of the study's (:attr:`aeframe.Technique.in_study`), False when any is
    not, and None in records stored before aeframe recorded it (the report keeps those with the
    study's rows). ``plugins`` names, per technique, the plugin that registered it, and ``protocol``
    is filled in once the technique's schedule is built. ``extra`` holds what a newer aeframe stored
    and this one does not know.
    """

    kind: str = CELL
    label: str = ""
    reference: bool = False
    techniques: list[TechniqueRef] = field(default_factory=list)
    dataset: DatasetRef = field(default_factory=DatasetRef)
    seed: int | None = None
    budget: BudgetLimits = field(default_factory=BudgetLimits)
    lr: str = "study"  # "study": each technique's own rates; "find": a range test per cell
    speed: Speed = field(default_factory=Speed)
    device: DeviceRef = field(default_factory=DeviceRef)
    versions: dict[str, str] = field(default_factory=dict)
    provenance: Provenance | None = None
    plugins: dict[str, str] = field(default_factory=dict)
    protocol: Protocol | None = None
    in_study: bool | None = None
    extra: dict[str, Any] = field(default_factory=dict, repr=False)

    def to_json(self) -> dict[str, Any]:
        """Plain JSON data: the keys aeframe 0.1.0 wrote, where it looks for them, plus ``kind``."""
        data: dict[str, Any] = {"kind": self.kind, "label": self.label, "reference": self.reference}
        if self.in_study is not None:  # absent rather than null: older records read the same
            data["in_study"] = self.in_study
        # Older aeframes tell a skipped dataset by its missing techniques.
        if self.kind != SKIPPED_DATASET:
            data["techniques"] = [t.to_json() for t in self.techniques]
        data["dataset"] = self.dataset.to_json()
        if self.seed is not None:
            data["seed"] = self.seed
        data.update(budget=self.budget.to_json(), lr=self.lr, **self.speed.to_json(), device=self.device.to_json(),
                    versions=dict(self.versions))
        if self.provenance is not None:
            data["provenance"] = self.provenance.to_json()
        data["plugins"] = dict(self.plugins)
        if self.protocol is not None:
            data["protocol"] = self.protocol.to_json()
        return {**self.extra, **data}

    @classmethod
    def from_json(cls, data: Mapping[str, Any], status: str | None = None) -> CellConfig:
        """Read a stored config, of this aeframe or an older one; ``status`` is the record's.

        Missing keys take their defaults. Without ``kind`` (stores before it existed) it is
        inferred: a skipped record without techniques is a skipped dataset (also when ``status`` is
        not given), one with techniques a skipped technique, anything else a cell. A known key
        whose value has another shape (e.g. an early text ``protocol``) is kept as it was, in
        ``extra``, rather than read wrongly.
        """
        extra = {k: v for k, v in data.items() if k not in _WRITTEN}
        parts: dict[str, Any] = {}
        for key, part in _PARTS.items():
            value = data.get(key)
            if isinstance(value, Mapping):
                parts[key] = part.from_json(value)
            elif value is not None:
                extra[key] = value
        techniques = data.get("techniques")
        kind = data.get("kind")
        if kind not in KINDS:
            skipped = status in (SKIPPED, None)
            kind = (SKIPPED_DATASET if skipped and "techniques" not in data
                    else SKIPPED_TECHNIQUE if status == SKIPPED else CELL)
        return cls(
            kind=kind,
            label=str(data.get("label") or ""),
            reference=bool(data.get("reference", False)),
            in_study=in_study if isinstance(in_study := data.get("in_study"), bool) else None,
            techniques=[TechniqueRef.from_json(t) for t in techniques if isinstance(t, Mapping)]
            if isinstance(techniques, list) else [],
            seed=data.get("seed"),
            lr=str(data.get("lr") or "study"),
            speed=Speed.from_json(data),
            versions=dict(_mapping(data.get("versions"))),
            plugins=dict(_mapping(data.get("plugins"))),
            extra=extra,
            **parts,
        )


@dataclass
class CellStats:
    """What happened while a cell trained and was evaluated, as its record keeps it.

    Every field is None where it does not apply (a cell that failed before training has no times);
    the JSON form leaves those out, so a record reads the same as one stored before a field existed.
    Keys this aeframe does not know are kept in ``extra`` and written back unchanged.

    train_seconds:    device-synchronised training time, the budget's clock.
    eval_seconds:     evaluation time (per-epoch test MSE and the final metrics), apart from training.
    epochs, steps:    how far the budget went (epochs may be fractional under a time budget).
    images_per_second: training images per second of train_seconds.
    params:           the model's parameter count.
    prepare_seconds:  the one-time preparation before the clock (resized views, layout, set-up).
    memory_format, layout_source, layout_images_per_second: the memory layout trained in, how it was
                      decided, and the rates measured for each layout (:mod:`aeframe.speed.layout`).
    compile_seconds:  the first compilation of ``--compile``, off the clock.
    step_mode, step_source, step_images_per_second, step_reason: whether the steps were eager or
                      replayed from a CUDA graph, how that was decided, the rates measured for each,
                      and why the step is eager where a graph was asked for or tried
                      (:mod:`aeframe.speed.step_mode`).
    device_busy_share: the share of a step's time the GPU spent in kernels, measured on a rehearsal
                      (:mod:`aeframe.speed.utilisation`); ``--cells-per-device auto`` packs by it.
    gpu_peak_memory:  the most GPU memory (bytes) the cell's process had allocated while it trained.
    capture_seconds, graphs_captured: capturing the CUDA graphs (one per phase that brings a new
                      image size or optimizer), off the clock, and how many there were.
    cpu_share, cpu_share_measure, gpu_other_processes: how much of the machine the clock had
                      (:mod:`aeframe.speed.contention`); see :attr:`busy`.
    lr_find_seconds, lr_found: ``--lr find``'s range tests, their time and the rates they chose.
    preparation:      what techniques did outside the budget (:class:`aeframe.contract.technique.Preparation` as JSON).
    outside_budget_seconds: the cost of that work, the range test and compilation, when all are known.
    metric_details:   metric name -> its ``details()``.
    placement:        where an executor ran the cell (node, device, reservations, wall-clock span).
    stand_in:         for an offline stand-in (``--stand-ins``), what differs from the row it stands in for.
    packed:           how many cells shared the device while this one trained (``--cells-per-device``);
                      its times measured its neighbours too, so the tables leave them out.
    """

    train_seconds: float | None = None
    eval_seconds: float | None = None
    epochs: float | None = None
    steps: int | None = None
    images_per_second: float | None = None
    params: int | None = None
    prepare_seconds: float | None = None
    memory_format: str | None = None
    layout_source: str | None = None
    layout_images_per_second: dict[str, float] | None = None
    compile_seconds: float | None = None
    step_mode: str | None = None
    step_source: str | None = None
    step_images_per_second: dict[str, float] | None = None
    step_reason: str | None = None
    device_busy_share: float | None = None
    gpu_peak_memory: int | None = None
    capture_seconds: float | None = None
    graphs_captured: int | None = None
    cpu_share: float | None = None
    cpu_share_measure: str | None = None
    gpu_other_processes: int | None = None
    lr_find_seconds: float | None = None
    lr_found: list[float] | None = None
    preparation: list[dict[str, Any]] | None = None
    outside_budget_seconds: float | None = None
    metric_details: dict[str, dict[str, Any]] | None = None
    placement: dict[str, Any] | None = None
    stand_in: str | None = None
    packed: int | None = None
    extra: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def busy(self) -> bool:
        """Whether the training clock was shared: less than :data:`BUSY_BELOW` of the CPU, or another
        process on the GPU. Cells stored before these were measured are not busy."""
        others = self.gpu_other_processes
        return busy_share(self.cpu_share) or (isinstance(others, int) and not isinstance(others, bool) and others > 0)

    def get(self, name: str) -> Any:
        """The stat called ``name`` (a field, or a key kept in ``extra``), None where there is none:
        for the report's columns, which name the stat they show."""
        if name in _STAT_FIELDS:
            return getattr(self, name)
        return self.extra.get(name)

    def __getitem__(self, name: str) -> Any:
        """Read access by name, as to the stored JSON: a stat that is not set is a KeyError."""
        value = self.get(name)
        if value is None:
            raise KeyError(name)
        return value

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get(name) is not None

    def to_json(self) -> dict[str, Any]:
        """The stats as the store keeps them: the fields that are set, then the unknown keys."""
        data = {name: getattr(self, name) for name in _STAT_FIELDS if getattr(self, name) is not None}
        return {**self.extra, **data}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CellStats:
        """Stats as stored, by this aeframe or another (unknown keys go to ``extra``)."""
        known = {name: data[name] for name in _STAT_FIELDS if name in data}
        return cls(**known, extra={k: v for k, v in data.items() if k not in _STAT_FIELDS})


_STAT_FIELDS = tuple(f.name for f in fields(CellStats) if f.name != "extra")


@dataclass
class CellRecord:
    """One cell's configuration, outcome, metrics, run statistics and per-epoch curve.

    ``key`` is a hash of everything in ``config`` that decides the numbers (see :func:`aeframe.cells.spec.cell_key`).
    ``stats``: :class:`CellStats` (a mapping given instead is read as their JSON form).
    ``curve``: one dict per epoch (or partial epoch at the budget's end):
    {"epoch", "step", "phase", "train_loss", "test_mse", "seconds"}.
    ``samples``: reconstructions of a few test images, for the report's pictures; the store keeps
    them in a table of their own and reads them only on request (:meth:`Store.samples`).
    """

    key: str
    config: CellConfig
    status: str
    error: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    stats: CellStats = field(default_factory=CellStats)
    curve: list[dict[str, Any]] = field(default_factory=list)
    started_at: str = ""
    finished_at: str = ""
    samples: Samples | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"unknown status {self.status!r}")
        if not isinstance(self.config, CellConfig):
            raise TypeError("a record's config is a CellConfig; CellConfig.from_json reads the stored JSON form")
        if isinstance(self.stats, Mapping):
            self.stats = CellStats.from_json(self.stats)


def label_of(record: CellRecord) -> str:
    """The row a record belongs to: its technique label, else its dataset's name (a skipped dataset), else its key."""
    return record.config.label or record.config.dataset.name or record.key


def full_size_points(record: CellRecord) -> list[tuple[float, float]]:
    """(training seconds, test MSE) of the curve's evaluations at the dataset's own image size.

    A phase that trains on downsized images (progressive resizing) is evaluated at its size too;
    those points do not compare with anything else and are left out.
    """
    phases = record.config.protocol.phases if record.config.protocol else []
    downsized = {p.name for p in phases if p.image_size}
    points = []
    for point in record.curve:
        seconds, mse = point.get("seconds"), point.get("test_mse")
        if isinstance(seconds, (int, float)) and isinstance(mse, (int, float)) and point.get("phase") not in downsized:
            points.append((float(seconds), float(mse)))
    return points
