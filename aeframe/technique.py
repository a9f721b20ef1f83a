"""The technique contract and the rule by which techniques compose (``-t a+b+c``).

A training cell has three parts. For each part a technique may **provide** it (build it from
nothing) or **wrap** it (take what another technique provided and return a changed one):

=========  ===========================  ====================================
part       provide it with              wrap it with
=========  ===========================  ====================================
model      ``build_model(ctx)``         ``wrap_model(model, ctx)``
loss       ``build_loss(ctx)``          ``wrap_loss(loss, ctx)``
schedule   ``build_schedule(ctx)``      ``wrap_schedule(schedule, ctx)``
=========  ===========================  ====================================

The rule, the same whatever order the user types the techniques in:

- **Provide.** Each part has exactly one provider among the listed techniques; a part that none of
  them provides comes from their ``base``. Two listed providers of one part are refused, naming both.
  To **replace** a part (an L1 loss instead of the Baseline's MSE), provide it: then it cannot be
  combined with another technique that replaces the same part, instead of one silently dropping the
  other.
- **Wrap.** Every listed technique's wrappers then run, left to right as typed. A wrapper must use
  what it is given: a model wrapper returns a model that contains it, a loss wrapper calls the loss it
  wraps (checked before training; a wrapper that drops it is refused).
- **Learning rates** are declared data (:attr:`Technique.learning_rates`), not something a wrapper
  sets: a declared peak rate replaces the schedule's own for that phase. Two listed techniques that
  declare a rate for the same phase are refused, naming both, unless the combination settles it:
  ``lr=RATE`` given to one of them (the row's name shows it) or ``--lr find`` (the range test sets the
  phase's rate; the table's conditions show it). A wrapper that changes a phase's rate that something
  else also sets is refused the same way.
"""
from __future__ import annotations

import difflib
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

from aeframe.errors import CompositionError, SpecError
from aeframe.params import Param, formatted, non_default

if TYPE_CHECKING:
    import torch
    from torch import nn

    from aeframe.schedule import Schedule

PARTS = ("model", "loss", "schedule")
PART_METHODS = tuple(f"{verb}_{part}" for part in PARTS for verb in ("build", "wrap"))
Loss = Callable[["torch.Tensor", "torch.Tensor"], "torch.Tensor"]

# The parameter the core adds to every technique that declares learning rates: the row's own rate.
LR_PARAM = "lr"
OWN_RATE = "own"


@dataclass(frozen=True)
class CellContext:
    """What a technique's hooks know about the cell they are building for.

    shape:       (C, H, W) of the dataset's images (the model's input and output at full size).
    dataset:     the dataset's name, e.g. "fashion-mnist" (for per-dataset settings such as a learning rate).
    dataset_spec: the dataset as ``-d`` takes it, parameters included (for ``load_dataset``).
    num_classes: how many labels the dataset has.
    params:      the typed parameters of the technique being called (each technique sees its own).
    seed:        the cell's seed (already applied to torch's generators before the model is built).
    device:      where training runs; the core moves every part built or wrapped to it.
    data_dir:    the data directory.
    cache_dir:   where plugins may keep files they derive (e.g. weights they trained), for reuse.
    load_dataset: loads another registered dataset from its ``-d`` text (e.g. ``"shapes[train=500]"``)
                 into memory as an :class:`aeframe.ImageData`; raises :class:`aeframe.DatasetUnavailable`
                 when it cannot be had (an unknown name included).
    """

    shape: tuple[int, int, int]
    dataset: str
    num_classes: int
    seed: int
    device: torch.device
    data_dir: Path
    cache_dir: Path
    load_dataset: Callable[[str], Any]
    dataset_spec: str = ""
    params: dict[str, Any] = field(default_factory=dict)


class TechniqueUnavailable(Exception):
    """Raised by a technique that cannot run here (e.g. pretrained weights missing offline).

    The cell is stored as skipped with this message, which must say what to put where (or which
    parameter gives an alternative), and the run goes on.
    """


@dataclass(frozen=True)
class PeakRate:
    """A peak learning rate a technique declares for one phase: one value for every dataset, with
    exceptions for named datasets.

    A value is one rate, or a tuple of rates, one per parameter group of the phase.
    """

    default: float | tuple[float, ...]
    datasets: Mapping[str, float | tuple[float, ...]] = field(default_factory=dict)

    def on(self, dataset: str) -> float | tuple[float, ...]:
        """The rate for ``dataset`` (its name as ``-d`` takes it, without parameters)."""
        return self.datasets.get(dataset, self.default)

    def values(self) -> list[float | tuple[float, ...]]:
        return [self.default, *self.datasets.values()]


class Technique:
    """Base class for techniques. Set the attributes, then define any of the part methods above.

    name:           what users type after ``-t`` (lowercase, dashes).
    title:          the row name in tables, e.g. "Pixel Shuffle".
    description:    one line for ``aeframe list techniques``.
    params:         the declared ``-t name[key=value]`` parameters (:class:`aeframe.Param`).
    base:           the technique whose parts fill in what this one does not provide (or None).
    reference:      True for the one technique the others are compared with in the report's paired
                    tests (the study's Baseline); only its cells alone and at default parameters count.
    learning_rates: phase name -> the peak learning rate this technique trains that phase with, a
                    number (or one per parameter group) or a :class:`PeakRate` that differs by dataset.
                    It replaces the schedule's own rate for that phase, whichever technique provides
                    the schedule. A technique that declares rates accepts the parameter ``lr`` too
                    (``-t name[lr=3e-4]``): the rate for this row instead of the declared one.

    Registration is strict: a method named ``build_*`` or ``wrap_*`` that is not one of the six part
    methods, an attribute close to a contract name (``titel``), or a technique with a ``base`` that
    provides, wraps and declares nothing is refused when the plugin loads, naming the plugin.
    """

    name: str = ""
    title: str = ""
    description: str = ""
    params: Sequence[Param] = ()
    base: str | None = None
    reference: bool = False
    learning_rates: Mapping[str, float | tuple[float, ...] | PeakRate] = MappingProxyType({})

    def check_params(self, params: dict[str, Any]) -> None:
        """Raise ``ValueError`` for parameter values that are fine one by one but not together (e.g.
        two lists of different lengths); the user sees the message before anything runs."""

    def provides(self, part: str) -> bool:
        """Whether this technique builds ``part`` ("model", "loss" or "schedule")."""
        return callable(getattr(self, f"build_{part}", None))

    def wraps(self, part: str) -> bool:
        """Whether this technique wraps ``part`` built by another."""
        return callable(getattr(self, f"wrap_{part}", None))

    def accepted_params(self) -> tuple[Param, ...]:
        """Every parameter ``-t name[...]`` accepts: :attr:`params`, and ``lr`` when rates are declared."""
        if not self.learning_rates:
            return tuple(self.params)
        phases = ", ".join(repr(p) for p in self.learning_rates)
        return (*self.params, Param(
            LR_PARAM, str, OWN_RATE,
            f"peak learning rate of phase {phases} for this row: {OWN_RATE} (this technique's declared "
            "rate) or a number such as 3e-4; settles a combination of techniques that both declare one",
        ))


def technique_problems(technique: Technique) -> list[str]:
    """What in ``technique``'s declarations breaks the contract (empty when nothing does)."""
    problems = []
    name = technique.name
    problems += [f"technique {name!r} defines {member!r}, which is not a part method; "
                 f"{_suggest(member, PART_METHODS, 'one of ' + ', '.join(PART_METHODS))}"
                 for member in _own_members(technique) if member.startswith(("build_", "wrap_", "replace_"))
                 and member not in PART_METHODS]
    contributes = any(technique.provides(p) or technique.wraps(p) for p in PARTS) or technique.learning_rates
    if technique.base is not None and not contributes:
        problems.append(f"technique {name!r} provides, wraps and declares nothing, so it would train its base "
                        f"{technique.base!r} under another name; define build_*/wrap_* methods")
    problems += _rate_problems(technique)
    names = [p.name for p in technique.params]
    if technique.learning_rates and LR_PARAM in names:
        problems.append(f"technique {name!r} declares learning_rates and a parameter {LR_PARAM!r}; aeframe adds "
                        f"{LR_PARAM!r} itself to techniques that declare rates: rename the parameter")
    return problems


def _rate_problems(technique: Technique) -> list[str]:
    rates = technique.learning_rates
    if not isinstance(rates, Mapping):
        return [f"technique {technique.name!r}: learning_rates must map phase names to rates, "
                f"not be a {type(rates).__name__}"]
    problems = []
    for phase, rate in rates.items():
        values = rate.values() if isinstance(rate, PeakRate) else [rate]
        if not isinstance(phase, str) or not all(_valid_rate(v) for v in values):
            problems.append(f"technique {technique.name!r}: learning_rates[{phase!r}] = {rate!r}; give a positive "
                            "number, a tuple of them (one per parameter group) or an aeframe.PeakRate")
    return problems


def _valid_rate(value: Any) -> bool:
    items = value if isinstance(value, tuple) and value else (value,)
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0 for v in items)


def _own_members(obj: Any) -> list[str]:
    """Public names the plugin's class (below aeframe's base classes) or the object itself defines."""
    names: set[str] = set(vars(obj)) if hasattr(obj, "__dict__") else set()
    for cls in type(obj).__mro__:
        if cls.__module__.startswith("aeframe.") or cls is object:
            continue
        names.update(vars(cls))
    return sorted(n for n in names if not n.startswith("_"))


def misspelt_members(obj: Any, base: type, extra: Sequence[str], owner: str) -> list[str]:
    """Members of ``obj`` that are not part of ``base``'s contract but are spelt almost like a part of it.

    A plugin's own helpers are welcome; a ``titel`` or ``wrap_modle`` would silently do nothing.
    """
    contract = {n for n in dir(base) if not n.startswith("_")} | set(extra)
    problems = []
    for member in _own_members(obj):
        if member in contract or member.startswith(("build_", "wrap_", "replace_")):
            continue
        close = difflib.get_close_matches(member, sorted(contract), n=1, cutoff=0.8)
        if close:
            problems.append(f"{owner} defines {member!r}; did you mean {close[0]!r}?")
    return problems


def _suggest(name: str, valid: Sequence[str], otherwise: str) -> str:
    close = difflib.get_close_matches(name, valid, n=1, cutoff=0.6)
    return f"did you mean {close[0]!r}?" if close else f"use {otherwise}"


@dataclass(frozen=True)
class Member:
    """One technique of a combination with its typed parameter values."""

    technique: Technique
    params: dict[str, Any]

    @property
    def label(self) -> str:
        changed = non_default(self.technique.accepted_params(), self.params)
        if not changed:
            return self.technique.title
        return f"{self.technique.title} [{', '.join(f'{k}={v}' for k, v in changed.items())}]"

    @property
    def explicit_rate(self) -> float | None:
        """The rate given with ``lr=``, or None when the technique's declared rates apply."""
        text = self.params.get(LR_PARAM, OWN_RATE)
        return None if text == OWN_RATE else float(text)

    def describe(self) -> dict[str, Any]:
        params = formatted(self.technique.accepted_params(), self.params)
        # The declared rate is what the technique trained with before it declared one; recording
        # lr=own would change the keys of the cells it stored then, so only an explicit lr= is kept.
        if params.get(LR_PARAM) == OWN_RATE:
            del params[LR_PARAM]
        return {"name": self.technique.name, "params": params}


def parse_rate(text: str, owner: str) -> None:
    """Refuse an ``lr=`` value that is neither ``own`` nor a positive number."""
    if text == OWN_RATE:
        return
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise SpecError(f"{owner}: {LR_PARAM}={text} is not a learning rate; give a positive number such as 3e-4, "
                        f"or {OWN_RATE}")


@dataclass
class BuiltCell:
    """A cell's parts, built and on the cell's device."""

    model: nn.Module
    loss: Loss
    schedule: Schedule
    # Loss wrappers and the loss each was given, watched to find a wrapper that drops what it wraps.
    watched: list[tuple[str, Any]] = field(default_factory=list)

    def unused_losses(self) -> list[str]:
        """Techniques whose loss wrapper has not called the loss it wraps (after the loss ran once)."""
        return [name for name, probe in self.watched if probe.calls == 0]


class Composition:
    """Techniques combined by the rule in this module's docstring; checked when constructed.

    ``lr`` is the run's learning-rate policy ("study" or "find"): under "find" the range test settles
    a phase whose rate two techniques declare.
    """

    def __init__(self, members: Sequence[Member], lookup: Callable[[str], Technique | None], lr: str = "study"):
        self.members = list(members)
        self.lr = lr
        names = [m.technique.name for m in self.members]
        if len(set(names)) != len(names):
            raise CompositionError(f"technique {self._spelled()!r} lists the same technique twice")
        self.providers: dict[str, Member] = {part: self._provider(part, lookup) for part in PARTS}
        self.rates, self._contested = self._settle_rates()

    def _spelled(self) -> str:
        return "+".join(m.technique.name for m in self.members)

    def _provider(self, part: str, lookup: Callable[[str], Technique | None]) -> Member:
        own = [m for m in self.members if m.technique.provides(part)]
        if len(own) > 1:
            a, b = own[0].technique.name, own[1].technique.name
            raise CompositionError(
                f"cannot combine {a} and {b}: both provide the {part}; combine techniques that change different parts"
            )
        if own:
            return own[0]
        bases: dict[str, Member] = {}
        for m in self.members:
            base_name = m.technique.base
            if base_name is None or base_name in bases:
                continue
            base = lookup(base_name)
            if base is None:
                raise CompositionError(f"technique {m.technique.name} builds on {base_name!r}, which is not installed")
            if base.provides(part):
                bases[base_name] = Member(base, {p.name: p.default for p in base.accepted_params()})
        if len(bases) > 1:
            raise CompositionError(
                f"{self._spelled()}: no technique provides the {part} and their bases disagree ({', '.join(bases)})"
            )
        if not bases:
            raise CompositionError(
                f"{self._spelled()}: no technique provides the {part}; add one that does (e.g. baseline)"
            )
        return next(iter(bases.values()))

    def _settle_rates(self) -> tuple[dict[str, Member], set[str]]:
        """Phase name -> the member whose rate it trains with, and the phases left to the range test.

        An explicit ``lr=`` beats declared rates; two of the same standing on one phase are refused.
        """
        claims: dict[str, list[Member]] = {}
        for m in self.members:
            for phase in m.technique.learning_rates:
                claims.setdefault(phase, []).append(m)
        settled, contested = {}, set()
        for phase, claimants in claims.items():
            explicit = [m for m in claimants if m.explicit_rate is not None]
            deciding = explicit or claimants
            if len(deciding) == 1:
                settled[phase] = deciding[0]
            elif not explicit and self.lr == "find":
                contested.add(phase)
            else:
                a, b = (m.technique.name for m in deciding[:2])
                how = ("give lr= to only one of them" if explicit else
                       f"choose it for this row with {LR_PARAM}=RATE on one of them "
                       f"(e.g. -t '{self._with_rate(deciding[-1])}') or use --lr find")
                raise CompositionError(
                    f"cannot combine {a} and {b}: both set the peak learning rate of phase {phase!r}; {how}"
                )
        return settled, contested

    def _with_rate(self, member: Member) -> str:
        return "+".join(m.technique.name + (f"[{LR_PARAM}=1e-4]" if m is member else "") for m in self.members)

    @property
    def label(self) -> str:
        return " + ".join(m.label for m in self.members)

    @property
    def is_reference(self) -> bool:
        """Whether this is the reference technique alone at its defaults (the report's comparison row)."""
        if len(self.members) != 1:
            return False
        only = self.members[0]
        return only.technique.reference and not non_default(only.technique.accepted_params(), only.params)

    def build(self, ctx: CellContext) -> BuiltCell:
        """Build model, loss and schedule on ``ctx.device``: each provider, then the wrappers left to right."""
        model = self._build_model(ctx)
        loss, watched = self._build_loss(ctx)
        schedule = self._build_schedule(ctx)
        return BuiltCell(model, loss, schedule, watched)

    def _context(self, member: Member, ctx: CellContext) -> CellContext:
        return replace(ctx, params=member.params)

    def _wrappers(self, part: str) -> list[Member]:
        return [m for m in self.members if m.technique.wraps(part)]

    def _build_model(self, ctx: CellContext) -> nn.Module:
        provider = self.providers["model"]
        model = provider.technique.build_model(self._context(provider, ctx)).to(ctx.device)
        for m in self._wrappers("model"):
            wrapped = m.technique.wrap_model(model, self._context(m, ctx))
            if not any(module is model for module in getattr(wrapped, "modules", lambda: ())()):
                raise CompositionError(
                    f"technique {m.technique.name}'s wrap_model returned a model that does not contain the model it "
                    "was given; a technique that replaces the model provides it (build_model) instead"
                )
            model = wrapped.to(ctx.device)
        return model

    def _build_loss(self, ctx: CellContext) -> tuple[Loss, list[tuple[str, Any]]]:
        provider = self.providers["loss"]
        loss = _on_device(provider.technique.build_loss(self._context(provider, ctx)), ctx.device)
        watched = []
        for m in self._wrappers("loss"):
            probe = _Watched(loss)
            watched.append((m.technique.name, probe))
            loss = _on_device(m.technique.wrap_loss(probe, self._context(m, ctx)), ctx.device)
        return loss, watched

    def _build_schedule(self, ctx: CellContext) -> Schedule:
        provider = self.providers["schedule"]
        schedule = provider.technique.build_schedule(self._context(provider, ctx))
        setters: dict[str, str] = {}  # phase name -> who set its rate
        phases = {p.name for p in schedule.phases}
        for phase_name, member in self.rates.items():
            if phase_name not in phases:
                raise CompositionError(
                    f"technique {member.technique.name} declares a learning rate for phase {phase_name!r}, but the "
                    f"schedule of {provider.technique.name} has the phases {', '.join(map(repr, sorted(phases)))}"
                )
            setters[phase_name] = member.technique.name
        for phase in schedule.phases:
            if phase.name in self._contested and not phase.find_lr:
                raise CompositionError(
                    f"two techniques set the peak learning rate of phase {phase.name!r}, which --lr find does not "
                    f"test; give {LR_PARAM}=RATE to one of them"
                )
            if phase.name in self.rates:
                phase.max_lr = _rate_for(self.rates[phase.name], phase.name, phase.max_lr, ctx.dataset)
        for m in self._wrappers("schedule"):
            before = {p.name: p.lrs() for p in schedule.phases}
            schedule = m.technique.wrap_schedule(schedule, self._context(m, ctx))
            for phase in schedule.phases:
                if phase.name in before and phase.lrs() != before[phase.name]:
                    if phase.name in setters:
                        raise CompositionError(
                            f"cannot combine {setters[phase.name]} and {m.technique.name}: both set the peak learning "
                            f"rate of phase {phase.name!r} ({m.technique.name} in its wrap_schedule; declare it in "
                            "learning_rates instead, so that aeframe can settle it)"
                        )
                    setters[phase.name] = m.technique.name
        return schedule


def _rate_for(member: Member, phase: str, current: Any, dataset: str) -> float | tuple[float, ...]:
    """The phase's peak rate from ``member``: its ``lr=``, or what it declares for ``dataset``.

    An ``lr=`` for a phase with one rate per parameter group sets the top group's rate; the other
    groups keep their ratios to it (as the range test of ``--lr find`` does).
    """
    explicit = member.explicit_rate
    if explicit is None:
        declared = member.technique.learning_rates[phase]
        return declared.on(dataset) if isinstance(declared, PeakRate) else declared
    if isinstance(current, (int, float)):
        return explicit
    top = max(current)
    return tuple(explicit * r / top for r in current)


def _on_device(part: Any, device: torch.device) -> Any:
    return part.to(device) if hasattr(part, "to") and hasattr(part, "parameters") else part


class _Watched:
    """A loss that counts its calls; what a loss wrapper is given, so that dropping it shows."""

    def __init__(self, loss: Loss):
        self.loss = loss
        self.calls = 0

    def __call__(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.loss(output, target)
