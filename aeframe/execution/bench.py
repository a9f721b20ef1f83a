"""``aeframe bench`` end to end: resolve names, plan cells, load each dataset and key its cells by its
fingerprint, skip finished ones, execute, store."""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import partial
from itertools import groupby
from pathlib import Path
from typing import TYPE_CHECKING

from aeframe.cells.budget import Budget
from aeframe.speed.contention import BUSY_BELOW, is_busy
from aeframe.execution.environment import device_info, source_revision, versions
from aeframe.errors import SpecError, UsageProblem, first_line, is_environment_failure
from aeframe.contract.executor import PLACEMENT_OPTIONS, Executor, ExecutorSettings, Work
from aeframe.execution.groups import DatasetGroup, load_group
from aeframe.data.loading import Workspace, default_cache_dir, default_data_dir, make_workspace
from aeframe.contract.metric import Metric
from aeframe.planning.plan import (Cell, pairs_of, plan_cells, resolve_dataset, resolve_technique, stand_in_for,
                          with_fingerprint)
from aeframe.registry.plugins import Registry
from aeframe.speed.precision_probe import choose_precision
from aeframe.console import say
from aeframe.cells.record import DIVERGED, DONE, FAILED, SKIPPED, SKIPPED_DATASET, SKIPPED_TECHNIQUE, CellRecord, Provenance
from aeframe.report.render import render
from aeframe.cells.settings import Speed, resolve_speed
from aeframe.speed.cache import SpeedCache
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
    channels_last: bool | None = None  # None: this device kind's default
    compile: bool = False
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

    def render(self, fmt: str) -> str:
        # As the report will show them: a rerun that failed leaves the earlier result in the table.
        return render(self.earlier + self.records, self.metrics, fmt)


def _whose(record: CellRecord) -> str:
    """Which plugins' techniques the failed cell ran, so the user knows whose code to look at.

    Nobody's, when the cell failed on the environment (a directory it could not write).
    """
    if is_environment_failure(record.error):
        return ""
    plugins = record.config.plugins
    return "; " + ", ".join(f"technique {t!r} from {p}" for t, p in plugins.items()) if plugins else ""


def _take_stock(cells: list[Cell], workspace: Workspace, registry: Registry, store: Store,
                rerun: bool) -> tuple[dict[str, list[CellRecord]], list[DatasetGroup], list[CellRecord]]:
    """Per dataset, in the planned order: load it once and key its cells by its data's fingerprint.

    Returns each dataset's records so far (cells the store has done, and the records of cells that
    cannot run, saved now), the groups of cells left to train, with their data, and (with ``rerun``)
    the done records of the cells that train again.
    """
    by_dataset: dict[str, list[CellRecord]] = {}
    groups = []
    earlier: list[CellRecord] = []
    for label, planned in groupby(cells, key=lambda c: c.dataset.label):
        planned = list(planned)
        records = by_dataset.setdefault(label, [])
        loaded = load_group(planned[0].dataset, planned, workspace, registry, say)
        if not isinstance(loaded, DatasetGroup):
            for record in loaded:
                store.save(record)
            records += loaded
            continue
        pending = []
        for cell in loaded.cells:
            done = store.find_done(cell.key)
            if rerun:
                # A rerun adds an attempt; the finished one stays in the store whatever happens.
                earlier += [done] if done is not None else []
                pending.append(cell)
            elif done is not None:
                records.append(done)
            else:
                pending.append(cell)
        if pending:
            groups.append(replace(loaded, cells=pending))
    return by_dataset, groups, earlier


def _summarise_diverged_and_busy(records: list[CellRecord], store_path: Path) -> None:
    """The end-of-run lines for cells whose numbers cannot be taken at face value."""
    diverged = [r for r in records if r.status == DIVERGED]
    if diverged:
        say(f"{len(diverged)} of {len(records)} cells diverged (their loss became NaN or infinite; "
            f"they are stored in {store_path} and listed under the tables):")
    for r in diverged:
        say(f"diverged: {r.config.label} on {r.config.dataset.name} (seed {r.config.seed}): "
            f"{first_line(r.error)}{_whose(r)}")
    finished = [r for r in records if r.status == DONE]  # skipped cells trained nothing, so were never timed
    busy = [r for r in finished if is_busy(r.stats)]
    if busy:
        say(f"{len(busy)} of {len(finished)} finished cells trained on a busy machine (less than {BUSY_BELOW:.0%} of the CPU, "
            "or another process on the GPU): their times and images/s are marked ‡ in the table and are not "
            "comparable; run them again (--rerun) on an idle machine")


def _speed_here(precision: str, channels_last: bool | None, compile: bool, cache_dir: Path,
                device: torch.device) -> tuple[Speed, dict[str, str], str | None]:
    """The run's speed settings, checked and (``--precision auto``) measured on ``device``, where the
    cells train; that device's description; and the line that says what auto chose.

    Runs where a cell would (``ExecutorSession.on_cell_device``): the driver may have no GPU.
    """
    chosen: list[PrecisionChoice] = []

    def measure(device: torch.device) -> str:
        # Measured once per device and torch version, then read from the cache.
        chosen.append(choose_precision(device, device_info(device)["name"], SpeedCache(cache_dir), say))
        return chosen[0].precision

    speed = resolve_speed(precision, channels_last, compile, device, measure)
    return speed, device_info(device), f"--precision auto: {chosen[0].describe()}" if chosen else None


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
    return executor


def shard_of(cells: list[Cell], shard: tuple[int, int] | None) -> list[Cell]:
    """The ``K``-th of ``N`` slices of the planned cells (every N-th cell from the K-th): the same cells
    for the same command on every machine, and each slice a mix of techniques and datasets."""
    if shard is None:
        return cells
    k, n = shard
    return cells[k - 1::n]


def run_bench(request: BenchRequest, registry: Registry) -> BenchOutcome:
    """Run (or take from the store) every requested cell; each cell is saved as soon as it ends."""
    technique_texts = request.techniques or sorted(registry.techniques)
    dataset_texts = request.datasets or sorted(registry.datasets)
    if not technique_texts:
        raise SpecError("no techniques are registered; `aeframe plugins` shows what failed to load")
    compositions = [resolve_technique(text, registry, request.lr) for text in technique_texts]
    if request.combinations == 2:
        pairs, refused = pairs_of(technique_texts, registry, request.lr)
        say(f"--combinations 2: {len(pairs)} pairs of the {len(compositions)} techniques, "
            f"{len(refused)} refused (not run)")
        for text, reason in refused:
            say(f"not combined: {text}: {reason}")
        compositions += pairs
    datasets = [resolve_dataset(text, registry) for text in dataset_texts]
    executor = _executor(request, registry)
    data_dir = request.data_dir or default_data_dir()
    workspace = make_workspace(registry, data_dir, default_cache_dir(), say)
    settings = replace(request.placement, device=request.device, data_dir=data_dir, cache_dir=workspace.cache_dir,
                       say=say)
    with executor.open(settings) as session:
        speed, device, chose = session.on_cell_device(partial(
            _speed_here, request.precision, request.channels_last, request.compile, workspace.cache_dir))
        if chose:
            say(chose)
        metrics = list(registry.metrics.values())
        provenance = Provenance(request.command, source_revision())
        cells = plan_cells(compositions, datasets, request.seeds, request.budget, device, versions(), registry,
                           request.lr, provenance, speed)
        planned = len(cells)
        cells = shard_of(cells, request.shard)
        if request.shard:
            say(f"shard {request.shard[0]}/{request.shard[1]}: {len(cells)} of the {planned} planned cells")
        work = Work(workspace, metrics)
        outcome = _execute(request, registry, session, work, cells, datasets, device)
        if not request.stand_ins:
            return outcome
        stand_ins, notes, covered = _stand_in_cells(outcome.records, cells, request, registry, device, provenance,
                                                    speed)
        if not stand_ins:
            return outcome
        say(f"--stand-ins: {len(stand_ins)} cells stand in for cells whose techniques cannot run here")
        more = _execute(request, registry, session, work, stand_ins, datasets, device, notes)
        return replace(outcome, records=outcome.records + more.records, earlier=outcome.earlier + more.earlier,
                       store_lost=outcome.store_lost or more.store_lost, stood_in=covered)


def _stand_in_cells(records: list[CellRecord], cells: list[Cell], request: BenchRequest, registry: Registry,
                    device: dict[str, str], provenance: Provenance, speed) -> tuple[list[Cell], dict[str, str], set[str]]:
    """The cells of the declared offline stand-ins (``Technique.stand_in``) for the cells of this run
    that were skipped as unable to run here, the note each stand-in's row carries (by row label),
    and the keys of the skipped cells they stand in for."""
    wanted: dict[str, tuple] = {}  # stand-in label + dataset -> (composition, dataset, seeds, note)
    covered = set()
    for record in records:
        if record.status != SKIPPED or record.config.kind != SKIPPED_TECHNIQUE:
            continue
        # A record's key covers its data's fingerprint, which the planned cells get when their data is loaded.
        fingerprint = record.config.dataset.fingerprint
        cell = next((c for c in cells if with_fingerprint(c, fingerprint).key == record.key), None)
        if cell is None:
            continue
        found = stand_in_for(cell.composition, registry)
        if found is None:
            continue
        composition, note = found
        covered.add(record.key)
        entry = wanted.setdefault(f"{composition.label}\0{cell.dataset.label}", (composition, cell.dataset, set(), note))
        entry[2].add(cell.seed)
    planned, notes = [], {}
    for composition, dataset, seeds, note in wanted.values():
        for cell in plan_cells([composition], [dataset], request.seeds, request.budget, device, versions(), registry,
                               request.lr, provenance, speed):
            if cell.seed in seeds:
                planned.append(cell)
                notes[composition.label] = note
    return planned, notes, covered


def _execute(request: BenchRequest, registry: Registry, session, work: Work, cells: list[Cell],
             datasets: list, device: dict[str, str], notes: dict[str, str] | None = None) -> BenchOutcome:
    """Take stock of the store, train what is left with ``session``, save each record as it comes."""
    workspace, metrics = work.workspace, list(work.metrics)
    with Store(request.store_path) as store:
        by_dataset, groups, earlier = _take_stock(cells, workspace, registry, store, request.rerun)
        found = sum(r.status == DONE for rs in by_dataset.values() for r in rs)
        if found:
            say(f"{found} of {len(cells)} cells already done in {request.store_path}; "
                "taking them from there (--rerun trains them again)")
        pending = sum(len(g.cells) for g in groups)
        if pending:
            speed = cells[0].config.speed
            where = f" ({session.where})" if session.where else ""
            say(f"training {pending} cells on {device['name']}{where}, "
                f"budget {request.budget.describe()} per cell, {speed.describe()}")
        dataset_of = {cell.key: g.dataset.label for g in groups for cell in g.cells}
        try:
            for record in session.run(groups, work):
                if notes and record.config.label in notes:  # an offline stand-in: its row is marked, the note said
                    record.stats["stand_in"] = notes[record.config.label]
                store.save(record)
                by_dataset[dataset_of[record.key]].append(record)
        except KeyboardInterrupt:
            saved = sum(len(rs) for rs in by_dataset.values())
            say(f"interrupted: the {saved} finished cells are saved in {request.store_path}")
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
    return BenchOutcome(records, metrics, named, bool(request.techniques) and not request.run_all, earlier, lost)
