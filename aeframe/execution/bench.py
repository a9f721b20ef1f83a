"""``aeframe bench`` end to end: resolve names, plan cell specs, load each dataset and key its cells by its
fingerprint, skip finished ones, hand the rest to the executor, save each record as it comes."""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import partial
from itertools import groupby
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from aeframe.cells.budget import Budget
from aeframe.cells.record import (
    BUSY_BELOW,
    DIVERGED,
    DONE,
    FAILED,
    SKIPPED,
    SKIPPED_DATASET,
    SKIPPED_TECHNIQUE,
    CellRecord,
    Provenance,
)
from aeframe.cells.settings import MEASURED, Speed
from aeframe.cells.spec import CellSpec
from aeframe.console import say
from aeframe.contract.executor import PLACEMENT_OPTIONS, DatasetGroup, Executor, ExecutorSession, ExecutorSettings
from aeframe.contract.metric import Metric
from aeframe.data.loading import Workspace, default_cache_dir, default_data_dir, make_workspace
from aeframe.errors import AeframeError, EnvironmentProblem, SpecError, StoreError, UsageProblem, first_line, is_environment_failure
from aeframe.execution.environment import device_info, source_revision, versions
from aeframe.execution.groups import load_group
from aeframe.execution.local import LocalWork
from aeframe.execution.stopping import held, say_once, stop_if_signalled, stopped_by
from aeframe.planning.composition import Composition
from aeframe.planning.plan import DatasetChoice, pairs_of, plan_cells, resolve_dataset, resolve_technique, stand_in_for
from aeframe.planning.rebuild import runnable
from aeframe.registry.plugins import Registry
from aeframe.speed.cache import SpeedCache
from aeframe.speed.precision_probe import choose_precision, precision_key
from aeframe.speed.preparation_limit import preparation_limit
from aeframe.speed.resolve import resolve_speed
from aeframe.store.sqlite_store import Store

if TYPE_CHECKING:
    import torch

    from aeframe.speed.precision_probe import PrecisionChoice


@dataclass
class BenchRequest:
    techniques: list[str]
    datasets: list[str]
    run_all: bool
    seeds: int
    budget: Budget
    device: str
    data_dir: Path | None
    store_path: Path
    rerun: bool
    lr: str = "study"
    precision: str = "auto"
    channels_last: bool | None = None  # None: measured per technique
    compile: bool = False
    graphs: bool | None = None  # None: measured per technique (CUDA only)
    command: str | None = None  # as the user typed it, kept with each cell to say how to reproduce it
    executor: str = "local"
    placement: ExecutorSettings = field(default_factory=ExecutorSettings)  # --ray-address, --gpus-per-cell, ...
    shard: tuple[int, int] | None = None  # (K, N): only the K-th of N slices of the planned cells
    combinations: int = 1  # 2: also every pair of the techniques (do they stack?)
    stand_ins: bool = False  # train a technique's offline stand-in where it cannot run here


@dataclass
class BenchOutcome:
    records: list[CellRecord]
    metrics: list[Metric]
    named_datasets: set[str] = field(default_factory=set)
    named_techniques: bool = False
    earlier: list[CellRecord] = field(default_factory=list)  # done attempts of the cells --rerun trained again
    store_lost: bool = False  # the store file was deleted or replaced during the run
    stood_in: set[str] = field(default_factory=set)  # keys of skipped cells whose stand-in ran (--stand-ins)

    def _asked_for(self, record: CellRecord) -> bool:
        """Whether the user named what was skipped (rather than --all finding it unavailable), and
        no stand-in ran in its place."""
        if record.key in self.stood_in:
            return False
        if record.config.kind == SKIPPED_DATASET:
            return record.config.dataset.name in self.named_datasets
        return self.named_techniques  # a technique that cannot run here

    @property
    def exit_code(self) -> int:
        """0 when every cell is done (or skipped by --all); 1 when a cell failed or diverged, or
        something named with -d or -t was skipped."""
        failed = any(r.status in (FAILED, DIVERGED) for r in self.records)
        missing = any(r.status == SKIPPED and self._asked_for(r) for r in self.records)
        return 1 if failed or missing or self.store_lost else 0

    @property
    def shown(self) -> list[CellRecord]:
        """The records as the report will show them: a rerun that failed leaves the earlier result in the table."""
        return self.earlier + self.records


def _whose(record: CellRecord) -> str:
    """Which plugins' techniques the failed cell ran, so the user knows whose code to look at.

    Nobody's, when the cell failed on the environment (a directory it could not write).
    """
    if is_environment_failure(record.error):
        return ""
    named = [f"technique {t!r} from {p}" for t, p in record.config.plugins.items()]
    if any(name in first_line(record.error) for name in named):  # the error says whose code it was already
        return ""
    return "; " + ", ".join(named) if named else ""


def _take_stock(cells: list[CellSpec], workspace: Workspace, registry: Registry, store: Store,
                rerun: bool) -> tuple[dict[str, list[CellRecord]], list[DatasetGroup], list[CellRecord]]:
    """Per dataset, in the planned order: load it once and key its cells by its data's fingerprint.

    Returns each dataset's records so far (cells the store has done, and the records of cells that
    cannot run, saved now), the groups of cells left to train, with their data, and (with ``rerun``)
    the done records of the cells that train again.
    """
    by_dataset: dict[str, list[CellRecord]] = {}
    groups = []
    earlier: list[CellRecord] = []
    for label, planned in groupby(cells, key=lambda spec: spec.dataset):
        records = by_dataset.setdefault(label, [])
        refused, loaded = load_group(list(planned), workspace, registry, say)
        for record in refused:
            store.save(record)
        records += refused
        if loaded is None:
            continue
        pending = []
        for spec in loaded.cells:
            done = store.find_done(spec.key)
            if rerun:
                # A rerun adds an attempt; the finished one stays in the store whatever happens.
                earlier += [done] if done is not None else []
                pending.append(spec)
            elif done is not None:
                records.append(done)
            else:
                pending.append(spec)
        if pending:
            groups.append(replace(loaded, cells=pending))
    return by_dataset, groups, earlier


def _summarise_diverged_and_busy(records: list[CellRecord], store_path: Path) -> None:
    """The end-of-run lines for cells whose numbers cannot be taken at face value."""
    diverged = [r for r in records if r.status == DIVERGED]
    if diverged:
        say(f"{len(diverged)} of {len(records)} cells diverged (their loss or their evaluation became NaN or infinite; "
            f"they are stored in {store_path} and listed under the tables):")
    for r in diverged:
        say(f"diverged: {r.config.label} on {r.config.dataset.name} (seed {r.config.seed}): "
            f"{first_line(r.error)}{_whose(r)}")
    finished = [r for r in records if r.status == DONE]  # skipped cells trained nothing, so were never timed
    busy = [r for r in finished if r.stats.busy]
    if busy:
        say(f"{len(busy)} of {len(finished)} finished cells trained on a busy machine (less than {BUSY_BELOW:.0%} of the CPU, "
            "or another process on the GPU): their times and images/s are marked ‡ in the table and are not "
            "comparable; run them again (--rerun) on an idle machine")


def _speed_here(precision: str, channels_last: bool | None, compile: bool, graphs: bool | None, cache_dir: Path,
                kept: dict[str, str], device: torch.device) -> tuple[Speed, dict[str, Any], str | None]:
    """The run's speed settings, checked and (``--precision auto``) measured on ``device``, where the
    cells train; that device's description; and the line that says what auto chose. ``kept``: the
    precisions auto chose for the store's earlier cells (:func:`_kept_precisions`).

    Runs where a cell would (``ExecutorSession.on_cell_device``): the driver may have no GPU.
    """
    chosen: list[PrecisionChoice] = []

    def measure(device: torch.device) -> str:
        # Measured once per device and torch version, then read from the cache.
        chosen.append(choose_precision(device, device_info(device)["name"], SpeedCache(cache_dir), say, kept))
        return chosen[0].precision

    speed = resolve_speed(precision, channels_last, compile, device, measure, graphs)
    return speed, device_info(device), f"--precision auto: {chosen[0].describe()}" if chosen else None


def _kept_precisions(store_path: Path, precision: str) -> dict[str, str]:
    """For ``--precision auto``: the precision auto chose for the store's latest cells, by machine state
    (:func:`aeframe.speed.precision_probe.precision_key`). Empty when there is no store yet; a store
    that cannot be read is left for the run to report."""
    if precision != "auto":
        return {}
    try:
        if not store_path.is_file():
            return {}
        with Store(store_path, write=False, warn=lambda _: None) as store:
            records = store.records()
    except (StoreError, OSError):  # e.g. a name too long: opening the store for the run says so
        return {}
    kept = {}
    for record in records:  # oldest first: the latest choice wins
        config = record.config
        if config.speed.precision_from == MEASURED and config.device.name and config.versions.get("torch"):
            kept[precision_key(config.device.name, config.versions["torch"])] = config.speed.precision
    return kept


def _check_preparation_limit(budget: Budget) -> None:
    """Refuse an unreadable AEFRAME_PREPARATION_LIMIT before anything runs (each cell reads it where it
    trains, and would fail one by one)."""
    try:
        preparation_limit(budget.seconds)
    except AeframeError as exc:
        raise EnvironmentProblem(str(exc)) from None


def _executor(request: BenchRequest, registry: Registry) -> Executor:
    """The executor asked for, usable here, given only the options it takes."""
    executor = registry.get("executor", request.executor)
    missing = executor.missing()
    if missing:
        raise UsageProblem(f"--executor {request.executor}: {missing}")
    refused = sorted(request.placement.given - set(executor.accepts))
    if refused:
        raise UsageProblem(f"{PLACEMENT_OPTIONS[refused[0]]} does not apply to --executor {request.executor}; "
                           f"leave it out, or use an executor that places cells (`aeframe list executors`)")
    packing = request.placement.cells_per_device
    if packing != 1 and request.budget.seconds is not None:
        raise UsageProblem(f"--cells-per-device {packing} with --time-budget: cells sharing the device would each "
                           "measure their neighbours' work as their own; give --epochs instead, or leave out "
                           "--cells-per-device")
    return executor


def _distinct(compositions: list[Composition]) -> list[Composition]:
    """The compositions with each one's notes said, and one of any two that train alike under one name
    (``-t l1-loss -t baseline+l1-loss`` is one row)."""
    seen, kept = set(), []
    for composition in compositions:
        for note in composition.notes:
            say(f"note: {note}")
        identity = (composition.label, composition.training())
        if identity not in seen:
            seen.add(identity)
            kept.append(composition)
    return kept


def shard_of(cells: list[CellSpec], shard: tuple[int, int] | None) -> list[CellSpec]:
    """The ``K``-th of ``N`` slices of the planned cells (every N-th cell from the K-th): the same cells
    for the same command on every machine, and each slice a mix of techniques and datasets."""
    if shard is None:
        return cells
    k, n = shard
    return cells[k - 1::n]


Plan = Callable[[list, list], "list[CellSpec]"]


def _stopped_line(exc: KeyboardInterrupt, records: list[CellRecord], planned: int, request: BenchRequest) -> str:
    """How many of the ``planned`` cells a stopped run leaves done in the store, and how to train the rest."""
    done = len({r.key for r in records if r.status == DONE})
    line = f"{stopped_by(exc)}: {done} of {planned} cells done and saved in {request.store_path}"
    if done >= planned:
        return line
    # --rerun would train the saved cells again: the rest is what a run without it trains.
    again = "run the same command again without --rerun" if request.rerun else "run the same command again"
    return f"{line}; {again} to train the other {planned - done}"


def run_bench(request: BenchRequest, registry: Registry) -> BenchOutcome:
    """Run (or take from the store) every requested cell; each cell is saved as soon as it ends."""
    technique_texts = request.techniques or sorted(registry.techniques)
    dataset_texts = request.datasets or sorted(registry.datasets)
    if not technique_texts:
        raise SpecError("no techniques are registered; `aeframe plugins` shows what failed to load")
    compositions = _distinct([resolve_technique(text, registry, request.lr) for text in technique_texts])
    datasets = [resolve_dataset(text, registry) for text in dataset_texts]
    if request.combinations == 2:
        pairs, refused = pairs_of(technique_texts, registry, request.lr, datasets)
        say(f"--combinations 2: {len(pairs)} pair{'s' if len(pairs) != 1 else ''} of the {len(compositions)} techniques, "
            f"{len(refused)} refused (not run)")
        for text, reason in refused:
            say(f"not combined: {text}: {reason}")
        compositions += pairs
    _check_preparation_limit(request.budget)
    executor = _executor(request, registry)
    data_dir = request.data_dir or default_data_dir()
    workspace = make_workspace(registry, data_dir, default_cache_dir(), say)
    settings = replace(request.placement, device=request.device, data_dir=data_dir, cache_dir=workspace.cache_dir,
                       say=say)
    with executor.open(settings) as session:
        speed, device, chose = session.on_cell_device(partial(
            _speed_here, request.precision, request.channels_last, request.compile, request.graphs,
            workspace.cache_dir, _kept_precisions(request.store_path, request.precision)))
        if chose:
            say(chose)
        metrics = list(registry.metrics.values())
        plan: Plan = partial(plan_cells, seeds=request.seeds, budget=request.budget, device=device, versions=versions(),
                             registry=registry, lr=request.lr, provenance=Provenance(request.command, source_revision(request.store_path)),
                             speed=speed, metrics=tuple(m.name for m in metrics))
        cells = plan(compositions, datasets)
        planned = len(cells)
        cells = shard_of(cells, request.shard)
        if request.shard:
            say(f"shard {request.shard[0]}/{request.shard[1]}: {len(cells)} of the {planned} planned cells")
        work = LocalWork(registry, workspace, metrics)
        outcome, keyed = _execute(request, session, work, cells, datasets, device)
        if not request.stand_ins:
            return outcome
        stand_ins, covered = _stand_in_cells(outcome.records, keyed, datasets, registry, plan)
        if not stand_ins:
            return outcome
        say(f"--stand-ins: {len(stand_ins)} cells stand in for cells whose techniques cannot run here")
        more, _ = _execute(request, session, work, stand_ins, datasets, device)
        return replace(outcome, records=outcome.records + more.records, earlier=outcome.earlier + more.earlier,
                       store_lost=outcome.store_lost or more.store_lost, stood_in=covered)


def _stand_in_cells(records: list[CellRecord], keyed: dict[str, CellSpec], datasets: list[DatasetChoice],
                    registry: Registry, plan: Plan) -> tuple[list[CellSpec], set[str]]:
    """The cells of the declared offline stand-ins (``Technique.stand_in``) for the cells of this run
    that were skipped as unable to run here, each carrying the note its row shows, and the keys of the
    skipped cells they stand in for."""
    wanted: dict[tuple[str, str], tuple] = {}  # (stand-in label, dataset) -> (composition, note, seeds)
    covered = set()
    for record in records:
        spec = keyed.get(record.key)
        if record.status != SKIPPED or record.config.kind != SKIPPED_TECHNIQUE or spec is None:
            continue
        found = stand_in_for(runnable(spec, registry).composition, registry)
        if found is None:
            continue
        composition, note = found
        covered.add(record.key)
        entry = wanted.setdefault((composition.label, spec.dataset), (composition, note, set()))
        entry[2].add(spec.config.seed)
    by_label = {choice.label: choice for choice in datasets}
    planned = []
    for (_, dataset), (composition, note, seeds) in wanted.items():
        planned += [spec for spec in plan([composition], [by_label[dataset]], stand_in=note)
                    if spec.config.seed in seeds]
    return planned, covered


def _execute(request: BenchRequest, session: ExecutorSession, work: LocalWork, cells: list[CellSpec],
             datasets: list[DatasetChoice], device: dict[str, str]) -> tuple[BenchOutcome, dict[str, CellSpec]]:
    """Take stock of the store, train what is left with ``session``, save each record as it comes.

    Also returns the keyed specs of the cells that trained, by key."""
    with Store(request.store_path) as store:
        by_dataset, groups, earlier = _take_stock(cells, work.workspace, work.registry, store, request.rerun)
        found = sum(r.status == DONE for rs in by_dataset.values() for r in rs)
        if found:
            say(f"{found} of {len(cells)} cells already done in {request.store_path}; "
                "taking them from there (--rerun trains them again)")
        keyed = {spec.key: spec for group in groups for spec in group.cells}
        pending = sum(len(group.cells) for group in groups)
        if pending:
            speed = cells[0].config.speed
            where = f" ({session.where})" if session.where else ""
            say(f"training {pending} cells on {device['name']}{where}, "
                f"budget {request.budget.describe()} per cell, {speed.describe()}")
        dataset_of = {spec.key: group.dataset for group in groups for spec in group.cells}
        try:
            stop_if_signalled()
            for record in session.run(groups, work):
                with held():  # a cell whose done line was shown is saved, whatever signal comes meanwhile
                    store.save(record)
                    by_dataset[dataset_of[record.key]].append(record)
                stop_if_signalled()
        except KeyboardInterrupt as exc:
            records = [r for rs in by_dataset.values() for r in rs]
            say_once(exc, _stopped_line(exc, records + earlier, len(cells), request))
            raise
    lost = store.replaced is not None
    records = [r for rs in by_dataset.values() for r in rs]
    failed = [r for r in records if r.status == FAILED]
    if failed:
        say(f"{len(failed)} of {len(records)} cells failed; the others are stored in {request.store_path}:")
    for r in failed:
        say(f"failed: {r.config.label} on {r.config.dataset.name} (seed {r.config.seed}): "
            f"{first_line(r.error)}{_whose(r)}")
    _summarise_diverged_and_busy(records, request.store_path)
    named = set() if request.run_all or not request.datasets else {d.plugin.name for d in datasets}
    outcome = BenchOutcome(records, list(work.metrics), named, bool(request.techniques) and not request.run_all,
                           earlier, lost)
    return outcome, keyed
