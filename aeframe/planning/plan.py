"""Planning a run: which (technique combination, dataset, seed) cells to train, as cell specs."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from aeframe.cells.budget import Budget
from aeframe.cells.record import BudgetLimits, CellConfig, DatasetRef, DeviceRef, Provenance, TechniqueRef
from aeframe.cells.settings import Speed
from aeframe.cells.spec import CellSpec
from aeframe.contract.dataset import DatasetPlugin, DatasetUnavailable
from aeframe.contract.params import formatted, non_default, resolve_params
from aeframe.contract.resample import RESAMPLE_PARAM
from aeframe.contract.technique import LR_PARAM, CellContext
from aeframe.errors import CompositionError, SpecError, UsageProblem
from aeframe.planning.composition import Composition, Member, parse_rate, redundant_reference
from aeframe.planning.syntax import parse_combination, parse_component
from aeframe.registry.plugins import Registry


@dataclass(frozen=True)
class DatasetChoice:
    """A dataset plugin with typed parameter values."""

    plugin: DatasetPlugin
    params: dict[str, Any]

    @property
    def label(self) -> str:
        changed = non_default(self.plugin.params, self.params)
        extra = ",".join(f"{k}={v}" for k, v in changed.items())
        return f"{self.plugin.name}[{extra}]" if extra else self.plugin.name

    def describe(self) -> DatasetRef:
        # The built-in datasets offered resample after 0.1; tables then also list no choice nobody made.
        return DatasetRef(self.plugin.name, self.plugin.title,
                          formatted(self.plugin.params, self.params, added_later=(RESAMPLE_PARAM.name,)))


def resolve_technique(text: str, registry: Registry, lr: str = "study") -> Composition:
    """``a+b[k=v]`` -> a checked :class:`Composition` (unknown names, parameters, conflicts refused).

    ``lr`` is the run's learning-rate policy, which settles some combinations (see :mod:`aeframe.planning.composition`).
    """
    members = []
    for spec in parse_combination(text):
        technique = registry.technique(spec.name)
        owner = f"technique {spec.name}"
        params = resolve_params(technique.accepted_params(), spec.given_dict, owner)
        if LR_PARAM in params:
            parse_rate(params[LR_PARAM], owner)
        try:
            technique.check_params(params)
        except ValueError as exc:
            raise SpecError(f"{owner}: {exc}") from None
        members.append(Member(technique, params))
    members, notes = redundant_reference(members, registry.reference)
    return Composition(members, lookup=registry.techniques.get, lr=lr, reference=registry.reference, notes=notes)


def pairs_of(texts: Sequence[str], registry: Registry, lr: str = "study",
             datasets: Sequence[DatasetChoice] = ()) -> tuple[list[Composition], list[tuple[str, str]]]:
    """Every pair ``a+b`` of the single techniques in ``texts``, in their order: the pairs that can be
    combined, and ``(pair, reason)`` for each that cannot (two of them provide the same part, say, or
    one cannot work with the other's model on one of ``datasets``: :meth:`Composition.check_model`).

    Texts that are already combinations (``a+b``) are not paired again, and a pair that trains exactly
    as one of its two alone (:meth:`Composition.training`) is refused as that row: it would be the same
    training under another name, with other numbers only from time-budget noise.
    """
    singles = [text for text in texts if len(parse_combination(text)) == 1]
    alone = {text: resolve_technique(text, registry, lr) for text in singles}
    contexts = [planning_context(dataset) for dataset in datasets]
    pairs, refused = [], []
    for i, first in enumerate(singles):
        for second in singles[i + 1:]:
            text = f"{first}+{second}"
            try:
                pair = resolve_technique(text, registry, lr)
                for context in contexts:
                    pair.check_model(context)
            except UsageProblem as exc:  # CompositionError and SpecError included
                refused.append((text, str(exc)))
                continue
            same = next((alone[t] for t in (first, second) if alone[t].training() == pair.training()), None)
            if same is not None:
                refused.append((text, f"it trains exactly as {same.label} alone, which is its own row"))
                continue
            pairs.append(pair)
    return pairs, refused


def stand_in_for(composition: Composition, registry: Registry) -> tuple[Composition, str] | None:
    """The combination with each member that declares an offline stand-in (``Technique.stand_in``)
    replaced by it, and what differs, one sentence per member; None when no member has one or the
    stand-ins cannot be combined."""
    members, notes = [], []
    for member in composition.members:
        found = member.technique.stand_in(dict(member.params))
        if found is None:
            members.append(member)
            continue
        changed, note = found
        members.append(Member(member.technique, {**member.params, **changed}))
        notes.append(note)
    if not notes:
        return None
    try:
        return (Composition(members, lookup=registry.techniques.get, lr=composition.lr, reference=registry.reference),
                "; ".join(notes))
    except UsageProblem:
        return None


def resolve_dataset(text: str, registry: Registry) -> DatasetChoice:
    """``name[k=v]`` -> the dataset plugin with checked, typed parameters."""
    spec = parse_component(text)
    plugin = registry.dataset(spec.name)
    params = resolve_params(plugin.params, spec.given_dict, f"dataset {spec.name}")
    try:
        plugin.check_params(params)
    except ValueError as exc:
        raise SpecError(f"dataset {spec.name}: {exc}") from None
    return DatasetChoice(plugin, params)


def check_shapes(compositions: Sequence[Composition], datasets: Sequence[DatasetChoice]) -> None:
    """Refuse a technique whose parameters cannot work on a dataset's image shape (``Technique.check_shape``),
    from the dataset's declared shape: at planning, so that no cell is stored as failed for it."""
    for dataset in datasets:
        shape = tuple(dataset.plugin.shape(dataset.params))
        for composition in compositions:
            for member in composition.members:
                # Techniques written before check_shape existed may not inherit it.
                check = getattr(member.technique, "check_shape", None)
                if check is None:
                    continue
                try:
                    check(member.params, shape)
                except ValueError as exc:
                    raise SpecError(f"technique {member.technique.name} on dataset {dataset.label} "
                                    f"({'x'.join(map(str, shape))}): {exc}") from None


def check_schedules(compositions: Sequence[Composition], datasets: Sequence[DatasetChoice]) -> None:
    """Refuse, at planning, a combination whose schedule cannot be made for a dataset (a rate declared for
    a phase the schedule does not have, a schedule wrapper that does not fit it), or whose batch is larger
    than the dataset's training split where the dataset tells its size (``DatasetPlugin.split_sizes``):
    the schedule alone is built, which needs no data, so that no cell fails for it after others have
    trained."""
    for dataset in datasets:
        sizes = dataset.plugin.split_sizes(dataset.params)
        for composition in compositions:
            try:
                problem = batch_problem(composition, dataset, sizes[0] if sizes else None, f"dataset {dataset.label}")
            except CompositionError as exc:
                raise CompositionError(f"{exc} (found when planning; nothing was trained)") from None
            if problem:
                raise SpecError(f"{problem} (found when planning; nothing was trained)")


def check_models(compositions: Sequence[Composition], datasets: Sequence[DatasetChoice]) -> None:
    """Refuse, at planning, a combination one of whose techniques cannot work with its model on a dataset
    (:meth:`Composition.check_model`: Progressive Resizing given a model whose output it cannot shrink to
    the size of its first phase, say), so that no cell fails for it after others have trained."""
    for dataset in datasets:
        context = planning_context(dataset)
        for composition in compositions:
            try:
                composition.check_model(context)
            except CompositionError as exc:
                raise CompositionError(f"{exc} (found when planning; nothing was trained)") from None


def planning_context(dataset: DatasetChoice) -> CellContext:
    """What a technique is told about a cell at planning: the dataset's name and shape, and no data."""
    return CellContext(shape=tuple(dataset.plugin.shape(dataset.params)), dataset=dataset.plugin.name,
                       num_classes=0, seed=0, device=_cpu(), data_dir=Path("."), cache_dir=Path("."),
                       load_dataset=_no_data, dataset_spec=dataset.label)


def batch_problem(composition: Composition, dataset: DatasetChoice, train_images: int | None, who: str) -> str | None:
    """Why ``composition``'s cells on ``dataset`` could not train a single step, in a line that names the
    dataset as ``who`` does ("dataset mnist"): a training split of ``train_images`` images, fewer than one
    batch of its schedule; None when they can, or when the size (None) or the batch is not known here.
    Raises :class:`CompositionError` as :meth:`Composition.check_schedule` does."""
    schedule = composition.check_schedule(planning_context(dataset))
    if schedule is None or train_images is None or train_images >= schedule.batch_size:
        return None
    batch = schedule.batch_size
    # The parameter that sets the split's size, where the dataset has one by the usual name.
    fix = (f"train={batch} or more" if any(p.name == "train" for p in dataset.plugin.params)
           else f"it {batch} or more training images")
    return (f"{who} has {train_images} training image{'s' if train_images != 1 else ''}, fewer than one "
            f"batch of {batch} (the batch {composition.label} trains with), so its cells could not train a step; give {fix}")


def _cpu() -> Any:
    import torch

    return torch.device("cpu")


def _no_data(text: str) -> Any:
    raise DatasetUnavailable(f"{text}: datasets are not loaded at planning")


def plugin_origin(registry: Registry, kind: str, name: str) -> str:
    """Which plugin registered the ``kind`` (technique, dataset, metric) ``name``, as a failure message names it."""
    info = registry.plugin_of(kind, name)
    if info is None:
        return "an unknown plugin"
    where = f"{info.dist} {info.version}" if info.dist else "no distribution"
    return f"plugin {info.name!r} ({where}{', built in' if info.builtin else ''})"


def _plugin_version(registry: Registry, kind: str, name: str) -> str | None:
    info = registry.plugin_of(kind, name)
    return info.version if info else None


def plan_cells(
    compositions: Sequence[Composition],
    datasets: Sequence[DatasetChoice],
    seeds: int,
    budget: Budget,
    device: dict[str, Any],
    versions: dict[str, str],
    registry: Registry,
    lr: str = "study",
    provenance: Provenance | None = None,
    speed: Speed | None = None,
    metrics: Sequence[str] = (),
    stand_in: str | None = None,
) -> list[CellSpec]:
    """Every combination x dataset x seed, datasets outermost so each is loaded once.

    ``device`` is ``{"type", "name", "numerics"}`` (see :func:`aeframe.execution.environment.device_info`). ``lr``
    is "study" (each technique's own rates) or "find" (a range test sets the rates of the phases that
    ask for it). ``provenance`` (the command and the source commit) is kept in each cell's config for
    the leaderboard, but is not part of the key: it does not change the numbers. ``speed`` (precision,
    channels_last, compile; plain eager fp32 when None) is in the config and the key. ``metrics``
    names the metrics every cell is evaluated with; ``stand_in`` marks the cells as offline stand-ins.

    The specs have no key yet: the data's fingerprint is known only once the dataset is loaded, and
    :meth:`aeframe.cells.spec.CellSpec.keyed` then makes it.
    """
    speed = speed or Speed()
    check_shapes(compositions, datasets)
    check_schedules(compositions, datasets)
    check_models(compositions, datasets)
    cells = []
    for dataset in datasets:
        for composition in compositions:
            techniques = [TechniqueRef(**m.describe(), version=_plugin_version(registry, "technique", m.technique.name))
                          for m in composition.members]
            # Not part of the key: who registered a technique does not change its numbers, but a
            # failure report must say whose code failed.
            plugins = {m.technique.name: plugin_origin(registry, "technique", m.technique.name)
                       for m in composition.members}
            for seed in range(seeds):
                config = CellConfig(
                    label=composition.label, reference=composition.is_reference, techniques=list(techniques),
                    dataset=dataset.describe(), seed=seed, budget=BudgetLimits(budget.epochs, budget.seconds), lr=lr,
                    speed=speed, device=DeviceRef.from_json(device), versions=dict(versions),
                    provenance=provenance, plugins=dict(plugins),
                    in_study=all(m.technique.in_study for m in composition.members),
                )
                cells.append(CellSpec(config, dataset.label, tuple(metrics), stand_in=stand_in))
    return cells
