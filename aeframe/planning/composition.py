"""The rule by which techniques compose (``-t a+b+c``), and the building of a cell's parts by it.

The rule, the same whatever order the user types the techniques in:

- **Provide.** Each part has exactly one provider among the listed techniques; a part that none of
  them provides comes from their ``base`` (the reference technique, the study's Baseline, for a
  technique that names none). Two listed providers of one part are refused, naming both.
  To **replace** a part (an L1 loss instead of the Baseline's MSE), provide it: then it cannot be
  combined with another technique that replaces the same part, instead of one silently dropping the
  other.
- **Wrap.** Every listed technique's wrappers then run, left to right as typed. A wrapper must use
  what it is given: a model wrapper returns a model that contains it, a loss wrapper calls the loss it
  wraps (checked before training; a wrapper that drops it is refused).
- **The optimizer and the learning-rate curve** are parts the schedule has (``make_optimizer``,
  ``lr_at`` and ``beta1_at``) unless one listed technique provides them; two providers are refused.
  Optimizer wrappers run left to right as typed, like the others.
- **Learning rates** are declared data (:attr:`Technique.learning_rates`), not something a wrapper
  sets: a declared peak rate replaces the schedule's own for that phase. Two listed techniques that
  declare a rate for the same phase are refused, naming both, unless the combination settles it:
  ``lr=RATE`` given to one of them (the row's name shows it) or ``--lr find`` (the range test sets the
  phase's rate; the table's conditions show it). A wrapper that changes a phase's rate that something
  else also sets is refused the same way. Rates declared relative (:class:`RelativeRate`) multiply
  whatever rate the phase has, and each other: they never conflict.
- **Events** (:mod:`aeframe.contract.events`) of the listed techniques run in the order of their
  names, not as typed. Two that both change the weights evaluated (``around_evaluation``) are refused.
- **The reference technique is redundant** beside others: every technique builds on it, so
  ``baseline+X`` trains exactly as ``X`` and is planned as ``X``, with a note (:func:`redundant_reference`).

Every refusal happens when the combination is made, that is at planning, before anything trains;
what only the schedule can tell (a rate declared for a phase it does not have) is checked at planning
too, by building the schedule alone (:meth:`Composition.check_schedule`), and what only the model can
tell (Progressive Resizing given a model it cannot shrink) by building the model on the meta device
(:meth:`Composition.check_model`).
"""
from __future__ import annotations

import copy
import json
import math
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

from aeframe.contract.events import AROUND_EVALUATION
from aeframe.contract.params import formatted, non_default
from aeframe.contract.technique import (
    ALL_PHASES,
    LR_CURVE,
    LR_PARAM,
    OPTIMIZER,
    OWN_RATE,
    PARTS,
    CellContext,
    PeakRate,
    RelativeRate,
    Technique,
)
from aeframe.errors import CompositionError, SpecError

if TYPE_CHECKING:
    import torch
    from torch import nn

    from aeframe.contract.schedule import Schedule

# Parts a technique may provide that the schedule has otherwise: no provider among the listed is fine.
SCHEDULE_PARTS = (OPTIMIZER, LR_CURVE)

Loss = Callable[["torch.Tensor", "torch.Tensor"], "torch.Tensor"]


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
        # lr=own is what the technique trained with before it declared a rate.
        return {"name": self.technique.name,
                "params": formatted(self.technique.accepted_params(), self.params, added_later=(LR_PARAM,))}


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


@dataclass(frozen=True)
class Actor:
    """A listed technique that acts at training events, as one cell has it: its own shallow copy of the
    technique (so that what its event methods keep is this cell's), and its parameters."""

    name: str
    technique: Technique
    params: dict[str, Any]


@dataclass
class BuiltCell:
    """A cell's parts, built and on the cell's device."""

    model: nn.Module
    loss: Loss
    schedule: Schedule
    # Loss wrappers and the loss each was given, watched to find a wrapper that drops what it wraps.
    watched: list[tuple[str, Any]] = field(default_factory=list)
    # The techniques that act at training events, in the order they are called (their names').
    actors: list[Actor] = field(default_factory=list)

    def unused_losses(self) -> list[str]:
        """Techniques whose loss wrapper has not called the loss it wraps (after the loss ran once)."""
        return [name for name, probe in self.watched if probe.calls == 0]


class Composition:
    """Techniques combined by the rule in this module's docstring; checked when constructed.

    ``lr`` is the run's learning-rate policy ("study" or "find"): under "find" the range test settles
    a phase whose rate two techniques declare.
    """

    def __init__(self, members: Sequence[Member], lookup: Callable[[str], Technique | None], lr: str = "study",
                 reference: Technique | None = None, notes: Sequence[str] = ()):
        self.members = list(members)
        self.lr = lr
        self.reference = reference  # the base of a member that names none (Technique.base is None)
        self.notes = list(notes)  # said when the combination is planned (baseline+X planned as X)
        names = [m.technique.name for m in self.members]
        if len(set(names)) != len(names):
            raise CompositionError(f"technique {self._spelled()!r} lists the same technique twice")
        self.providers: dict[str, Member] = {part: self._provider(part, lookup) for part in PARTS}
        self.schedule_parts: dict[str, Member | None] = {
            part: self._provider(part, lookup, required=False) for part in SCHEDULE_PARTS}
        self.rates, self._contested = self._settle_rates()
        self.factors = self._rate_factors()
        self._check_events()

    def not_graph_safe(self) -> list[str]:
        """The techniques whose code runs in this combination's step (members, and the bases that provide
        a part) and that do not declare ``cuda_graphs``: its step is captured only when asked for."""
        involved = [m.technique for m in self.members] + [m.technique for m in self.providers.values()]
        names: list[str] = []
        for technique in involved:
            if not technique.cuda_graphs and technique.name not in names:
                names.append(technique.name)
        return names

    def training(self) -> str:
        """What this combination trains, whoever was typed: each part's provider and its wrappers in order
        (with their parameters), and who sets each phase's rate. Two combinations with the same text
        train alike (``baseline+progressive-resizing`` is ``progressive-resizing``: the Baseline provides
        only what Progressive Resizing already takes from it, its base)."""
        def who(member: Member) -> dict[str, Any]:
            return member.describe()

        return json.dumps({"providers": {part: who(m) for part, m in self.providers.items()},
                           "schedule_parts": {part: m and who(m) for part, m in self.schedule_parts.items()},
                           "wrappers": {part: [who(m) for m in self._wrappers(part)] for part in (*PARTS, OPTIMIZER)},
                           "rates": {phase: who(m) for phase, m in self.rates.items()},
                           "factors": {phase: [who(m) for m in ms] for phase, ms in self.factors.items()},
                           "events": [who(m) for m in self._actors()],
                           "contested": sorted(self._contested), "lr": self.lr}, sort_keys=True)

    def _spelled(self) -> str:
        return "+".join(m.technique.name for m in self.members)

    def _provider(self, part: str, lookup: Callable[[str], Technique | None], required: bool = True) -> Member | None:
        own = [m for m in self.members if m.technique.provides(part)]
        if len(own) > 1:
            a, b = own[0].technique.name, own[1].technique.name
            raise CompositionError(
                f"cannot combine {a} and {b}: both provide the {part}; combine techniques that change different parts"
            )
        if own:
            return own[0]
        if not required:  # the schedule has it
            return None
        bases: dict[str, Member] = {}
        for m in self.members:
            base_name = m.technique.base
            if base_name is None:
                if self.reference is None or self.reference is m.technique:
                    continue
                base_name = self.reference.name
            if base_name in bases:
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
        """Phase name (or ``"*"``) -> the member whose absolute rate it trains with, and the phases left to
        the range test.

        An explicit ``lr=`` beats declared rates; two of the same standing on one phase are refused. A
        claim on ``"*"`` (every phase) competes with the claims on each named phase.
        """
        claims: dict[str, list[Member]] = {}
        for m in self.members:
            for phase, rate in m.technique.learning_rates.items():
                if m.explicit_rate is not None or not isinstance(rate, RelativeRate):
                    claims.setdefault(phase, []).append(m)
        every = claims.get(ALL_PHASES, [])
        settled, contested = {}, set()
        for phase, named in claims.items():
            claimants = named if phase == ALL_PHASES else [*named, *(m for m in every if m not in named)]
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
                which = "every phase" if phase == ALL_PHASES else f"phase {phase!r}"
                raise CompositionError(
                    f"cannot combine {a} and {b}: both set the peak learning rate of {which}; {how}"
                )
        return settled, contested

    def _rate_factors(self) -> dict[str, list[Member]]:
        """Phase name (or ``"*"``) -> the members whose :class:`RelativeRate` multiplies its rate (an ``lr=``
        makes a member's rate absolute instead)."""
        factors: dict[str, list[Member]] = {}
        for m in self.members:
            if m.explicit_rate is not None:
                continue
            for phase, rate in m.technique.learning_rates.items():
                if isinstance(rate, RelativeRate):
                    factors.setdefault(phase, []).append(m)
        return factors

    def _actors(self) -> list[Member]:
        """The listed techniques that act at training events, in the order of their names."""
        return sorted((m for m in self.members if m.technique.events()), key=lambda m: m.technique.name)

    def _check_events(self) -> None:
        around = [m.technique.name for m in self._actors() if m.technique.acts_on(AROUND_EVALUATION)]
        if len(around) > 1:
            raise CompositionError(
                f"cannot combine {around[0]} and {around[1]}: both change the weights that are evaluated "
                f"({AROUND_EVALUATION}); each would evaluate its own, so the row would measure neither"
            )

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
        """Build model, loss and schedule on ``ctx.device``: each provider, then the wrappers left to right;
        and each technique that acts at events, copied for this cell."""
        model = self._build_model(ctx)
        loss, watched = self._build_loss(ctx)
        schedule = self._build_schedule(ctx)
        actors = [Actor(m.technique.name, copy.copy(m.technique), m.params) for m in self._actors()]
        return BuiltCell(model, loss, schedule, watched, actors)

    def check_schedule(self, ctx: CellContext) -> Schedule | None:
        """Build the schedule alone, at planning, to find what only it can tell: a rate declared for a
        phase it does not have, a wrapper that does not fit it, its batch size. Raises
        :class:`CompositionError` (a ``ValueError`` of a technique's becomes one, naming the technique);
        any other error is left for the cell to report when it is built, and gives None."""
        try:
            return self._build_schedule(ctx)
        except CompositionError:
            raise
        except ValueError as exc:
            raise CompositionError(f"{self._spelled()} on {ctx.dataset_spec or ctx.dataset}: {exc}") from None
        except Exception:  # not knowable here (a plugin that needs what only a cell has): the cell says it
            return None

    def check_model(self, ctx: CellContext) -> None:
        """Let each listed technique that checks the model (``Technique.check_model``) refuse this
        combination's model, at planning. The model is built as a cell builds it, on the meta device
        (shapes without values: no cost, no weights loaded), and only when a listed technique checks it.

        Raises :class:`CompositionError` naming the technique, the model's provider and the dataset. A
        model that cannot be built or run on the meta device is left for the cell to report.
        """
        checkers = [m for m in self.members if getattr(m.technique, "checks_model", lambda: False)()]
        if not checkers:
            return
        import torch

        # A scratch cache: a provider that ignores ``inspecting`` and derives weights writes nothing real.
        with tempfile.TemporaryDirectory(prefix="aeframe-inspect-") as scratch:
            meta = replace(ctx, device=torch.device("meta"), inspecting=True, cache_dir=Path(scratch),
                           data_dir=Path(scratch))
            try:
                with torch.device("meta"):
                    model = self._build_model(meta)
            except CompositionError:
                raise
            except Exception:  # a provider that needs data or weights to build: the cell says what fails
                return
            provider = self.providers["model"].technique.name
            for m in checkers:
                who = (f"cannot combine {m.technique.name} and {provider}" if provider != m.technique.name
                       else f"technique {provider}")
                try:
                    with torch.device("meta"):
                        m.technique.check_model(model.train(), self._context(m, meta))
                except ValueError as exc:
                    raise CompositionError(f"{who} on {ctx.dataset_spec or ctx.dataset}: {exc}") from None
                except Exception:  # no meta kernel for an operation of the model: the cell will tell
                    continue

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
        declared = [*self.rates.items(), *((p, m) for p, ms in self.factors.items() for m in ms)]
        for phase_name, member in declared:
            if phase_name != ALL_PHASES and phase_name not in phases:
                raise CompositionError(
                    f"technique {member.technique.name} declares a learning rate for phase {phase_name!r}, but the "
                    f"schedule of {provider.technique.name} has the phases {', '.join(map(repr, sorted(phases)))}"
                )
        for phase in schedule.phases:
            if phase.name in self._contested and not phase.find_lr:
                raise CompositionError(
                    f"two techniques set the peak learning rate of phase {phase.name!r}, which --lr find does not "
                    f"test; give {LR_PARAM}=RATE to one of them"
                )
            setter = self.rates.get(phase.name) or self.rates.get(ALL_PHASES)
            if setter is not None:
                phase.max_lr = _rate_for(setter, phase.name, phase.max_lr, ctx.dataset)
                setters[phase.name] = setter.technique.name
            # Each member once: one that names this phase and "*" gives this phase's factor.
            scaling = {m.technique.name: m for m in [*self.factors.get(phase.name, []), *self.factors.get(ALL_PHASES, [])]}
            factor = math.prod(_factor(m, phase.name) for m in scaling.values())
            if factor != 1:
                phase.max_lr = _scaled(phase.max_lr, factor)
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
        self._build_schedule_parts(schedule, ctx)
        return schedule

    def _build_schedule_parts(self, schedule: Schedule, ctx: CellContext) -> None:
        """The optimizer and the learning-rate curve into ``schedule``: a provider's in place of the
        schedule's own, then the optimizer's wrappers left to right."""
        optimizer = self.schedule_parts[OPTIMIZER]
        if optimizer is not None:
            schedule.make_optimizer = optimizer.technique.build_optimizer(self._context(optimizer, ctx))
        for m in self._wrappers(OPTIMIZER):
            schedule.make_optimizer = m.technique.wrap_optimizer(schedule.make_optimizer, self._context(m, ctx))
        curve = self.schedule_parts[LR_CURVE]
        if curve is not None:
            made = curve.technique.build_lr_curve(self._context(curve, ctx))
            schedule.lr_at, schedule.beta1_at = made.lr_at, made.beta1_at


def _rate_for(member: Member, phase: str, current: Any, dataset: str) -> float | tuple[float, ...]:
    """The phase's peak rate from ``member``: its ``lr=``, or what it declares for ``dataset`` (for the
    phase by name, else for every phase).

    An ``lr=`` for a phase with one rate per parameter group sets the top group's rate; the other
    groups keep their ratios to it (as the range test of ``--lr find`` does).
    """
    explicit = member.explicit_rate
    if explicit is None:
        rates = member.technique.learning_rates
        declared = rates[phase] if phase in rates else rates[ALL_PHASES]
        return declared.on(dataset) if isinstance(declared, PeakRate) else declared
    if isinstance(current, (int, float)):
        return explicit
    top = max(current)
    return tuple(explicit * r / top for r in current)


def _factor(member: Member, phase: str) -> float:
    rates = member.technique.learning_rates
    rate = rates[phase] if phase in rates else rates[ALL_PHASES]
    return float(rate.factor)


def _scaled(rate: float | Sequence[float], factor: float) -> float | tuple[float, ...]:
    if isinstance(rate, (int, float)):
        return rate * factor
    return tuple(r * factor for r in rate)


def redundant_reference(members: Sequence[Member], reference: Technique | None) -> tuple[list[Member], list[str]]:
    """``members`` without the reference technique at its defaults when others are listed, and a note
    saying so: every technique builds on the reference (or replaces its parts), so ``baseline+X``
    trains exactly as ``X``, and is planned as ``X``, one row named ``X``."""
    if len(members) < 2 or reference is None:
        return list(members), []
    kept = [m for m in members
            if not (m.technique is reference and not non_default(reference.accepted_params(), m.params))]
    if len(kept) == len(members) or not kept:
        return list(members), []
    spelled = "+".join(m.technique.name for m in members)
    rest = "+".join(m.technique.name for m in kept)
    return kept, [f"{spelled} is planned as {rest}: every technique builds on {reference.title} "
                  f"({reference.name}), so listing it adds nothing"]


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
