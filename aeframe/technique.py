"""The technique contract and the rule by which techniques compose (``-t a+b+c``).

A technique supplies some of the three parts of a training cell:

=========  ===========================  ====================================
part       provide it with              or wrap what another provided with
=========  ===========================  ====================================
model      ``build_model(ctx)``         ``wrap_model(model, ctx)``
loss       ``build_loss(ctx)``          ``wrap_loss(loss, ctx)``
schedule   ``build_schedule(ctx)``      ``wrap_schedule(schedule, ctx)``
=========  ===========================  ====================================

Composition rule: each part must have exactly one provider among the listed techniques. A part
that none of them provides comes from their ``base`` technique (for example ``feature-loss``
names ``baseline`` as its base, so ``-t feature-loss`` trains the Baseline's model with the feature
loss). Two listed techniques that provide the same part are an error naming both. Wrappers then
run left to right in the order the user listed the techniques.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch import nn

from aeframe.errors import CompositionError
from aeframe.params import Param, formatted, non_default
from aeframe.schedule import Schedule

PARTS = ("model", "loss", "schedule")
Loss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class CellContext:
    """What a technique's hooks know about the cell they are building for.

    shape:       (C, H, W) of the dataset's images (the model's input and output at full size).
    dataset:     the dataset's name, e.g. "fashion-mnist" (for per-dataset settings such as a learning rate).
    dataset_spec: the dataset as ``-d`` takes it, parameters included (for ``load_dataset``).
    num_classes: how many labels the dataset has.
    params:      the typed parameters of the technique being called (each technique sees its own).
    seed:        the cell's seed (already applied to torch's generators before the model is built).
    device:      where training runs.
    data_dir:    the data directory.
    cache_dir:   where plugins may keep files they derive (e.g. weights they trained), for reuse.
    load_dataset: loads another registered dataset from its ``-d`` text (e.g. ``"shapes[train=500]"``)
                 into memory; raises :class:`aeframe.DatasetUnavailable` when it cannot be had.
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


class Technique:
    """Base class for techniques. Set the attributes, then define any of the part methods above.

    name:        what users type after ``-t`` (lowercase, dashes).
    title:       the row name in tables, e.g. "Pixel Shuffle".
    description: one line for ``aeframe list techniques``.
    params:      the declared ``-t name[key=value]`` parameters.
    base:        the technique whose parts fill in what this one does not provide (or None).
    reference:   True for the one technique the others are compared with in the report's paired
                 tests (the study's Baseline); only its cells alone and at default parameters count.

    A technique may also define ``check_params(params)``, raising ``ValueError`` for values that
    are fine one by one but not together (e.g. two lists of different lengths); the user sees the
    message before anything runs.
    """

    name: str = ""
    title: str = ""
    description: str = ""
    params: Sequence[Param] = ()
    base: str | None = None
    reference: bool = False

    def provides(self, part: str) -> bool:
        return callable(getattr(self, f"build_{part}", None))

    def wraps(self, part: str) -> bool:
        return callable(getattr(self, f"wrap_{part}", None))


@dataclass(frozen=True)
class Member:
    """One technique of a combination with its typed parameter values."""

    technique: Technique
    params: dict[str, Any]

    @property
    def label(self) -> str:
        changed = non_default(self.technique.params, self.params)
        if not changed:
            return self.technique.title
        return f"{self.technique.title} [{', '.join(f'{k}={v}' for k, v in changed.items())}]"

    def describe(self) -> dict[str, Any]:
        return {"name": self.technique.name, "params": formatted(self.technique.params, self.params)}


@dataclass
class BuiltCell:
    model: nn.Module
    loss: Loss
    schedule: Schedule


class Composition:
    """Techniques combined by the rule in this module's docstring; checked when constructed."""

    def __init__(self, members: Sequence[Member], lookup: Callable[[str], Technique | None]):
        self.members = list(members)
        names = [m.technique.name for m in self.members]
        if len(set(names)) != len(names):
            raise CompositionError(f"technique {self._spelled()!r} lists the same technique twice")
        self.providers: dict[str, Member] = {part: self._provider(part, lookup) for part in PARTS}

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
                bases[base_name] = Member(base, {p.name: p.default for p in base.params})
        if len(bases) > 1:
            raise CompositionError(
                f"{self._spelled()}: no technique provides the {part} and their bases disagree ({', '.join(bases)})"
            )
        if not bases:
            raise CompositionError(
                f"{self._spelled()}: no technique provides the {part}; add one that does (e.g. baseline)"
            )
        return next(iter(bases.values()))

    @property
    def label(self) -> str:
        return " + ".join(m.label for m in self.members)

    @property
    def is_reference(self) -> bool:
        """Whether this is the reference technique alone at its defaults (the report's comparison row)."""
        if len(self.members) != 1:
            return False
        only = self.members[0]
        return only.technique.reference and not non_default(only.technique.params, only.params)

    def build(self, ctx: CellContext) -> BuiltCell:
        """Build model, loss and schedule: the providers first, then the wrappers left to right."""
        parts: dict[str, Any] = {}
        for part in PARTS:
            provider = self.providers[part]
            parts[part] = getattr(provider.technique, f"build_{part}")(replace(ctx, params=provider.params))
            for m in self.members:
                if m.technique.wraps(part):
                    parts[part] = getattr(m.technique, f"wrap_{part}")(parts[part], replace(ctx, params=m.params))
        return BuiltCell(**parts)
