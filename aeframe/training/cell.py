"""Running one cell: seed, build the composed technique, train under the budget, evaluate, record."""
from __future__ import annotations

import random
import traceback
from dataclasses import replace
from datetime import datetime, timezone

import torch
from torch import nn

from aeframe.speed.preparation import prepare_cell
from aeframe.planning.composition import BuiltCell
from aeframe.data.splits import CellData, to_unit
from aeframe.contract.dataset import DatasetUnavailable
from aeframe.data.directories import environment_failure
from aeframe.errors import AeframeError, CompositionError, describe
from aeframe.training.evaluate import timed_evaluate
from aeframe.speed.layout import layout_key
from aeframe.data.loading import CACHE_ENV, DATA_ENV, Workspace
from aeframe.training.metric_set import MetricSet
from aeframe.speed.numerics import compiled, prepare_device, speed_model
from aeframe.contract.output import reconstruction, training_loss
from aeframe.planning.plan import Cell
from aeframe.cells.record import DIVERGED, DONE, FAILED, SKIPPED, SKIPPED_TECHNIQUE, CellRecord, PhaseSummary, Protocol
from aeframe.cells.samples import capture_samples
from aeframe.contract.schedule import Schedule
from aeframe.speed.cache import SpeedCache
from aeframe.contract.technique import CellContext, TechniqueUnavailable
from aeframe.training.train import ProgressSink, train


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


def _check_parts(model: nn.Module, built: BuiltCell, data: CellData, label: str) -> None:
    """Catch plugin bugs before training, naming the technique: a model whose output does not match its
    input, and a loss wrapper that drops the loss it wraps. Random streams are left as they were."""
    sample = to_unit(data.test.view(None)[:2])
    was_training = model.training
    model.eval()
    devices = [sample.device] if sample.device.type == "cuda" else []
    try:
        with torch.no_grad(), torch.random.fork_rng(devices=devices):
            out = model(sample)
            image = reconstruction(out)
            if image.shape == sample.shape:
                training_loss(built.loss, out, sample)
    finally:
        model.train(was_training)
    if image.shape != sample.shape:
        raise AeframeError(
            f"technique {label!r} built a model whose output has shape {tuple(image.shape)[1:]} "
            f"for input {tuple(sample.shape)[1:]}; an autoencoder must return its input's shape"
        )
    dropping = built.unused_losses()
    if dropping:
        raise CompositionError(
            f"technique {dropping[0]}'s wrap_loss returned a loss that never calls the loss it wraps, so that loss "
            "would be dropped; a technique that replaces the loss provides it (build_loss) instead"
        )


def _layout_key(cell: Cell, shape: tuple[int, ...], schedule: Schedule) -> str:
    """The cache key of this cell's layout choice (see :func:`aeframe.speed.layout.layout_key`)."""
    config = cell.config
    return layout_key(config.device.name or config.device.type or "", config.versions.get("torch", ""),
                      [t.to_json() for t in config.techniques], shape, schedule.batch_size, config.speed.precision)


def cell_context(cell: Cell, shape: tuple[int, ...], num_classes: int, device: torch.device,
                 workspace: Workspace) -> CellContext:
    """What the technique's methods (and the metrics' ``prepare``) know about ``cell``."""
    return CellContext(shape=shape, dataset=cell.dataset.plugin.name, num_classes=num_classes, seed=cell.seed,
                       device=device, data_dir=workspace.data_dir, cache_dir=workspace.cache_dir,
                       load_dataset=workspace.load_dataset, dataset_spec=cell.dataset.label)


def _note_outside_budget(record: CellRecord, context: CellContext) -> None:
    """What the cell cost outside its training budget: its techniques' preparation (pretraining,
    reused or not), the learning-rate range test and the first compilation, in seconds."""
    if context.preparations:
        record.stats["preparation"] = [p.to_json() for p in context.preparations]
    parts = [p.seconds for p in context.preparations]
    parts += [record.stats[name] for name in ("lr_find_seconds", "compile_seconds") if name in record.stats]
    # A part of unknown cost (reused from a cache that did not keep it) makes the total unknown: a
    # sum of the known parts would show the row as cheaper than it was, 0 s when nothing is known.
    if parts and all(p is not None for p in parts):
        record.stats["outside_budget_seconds"] = sum(parts)


def _schedule_summary(schedule) -> Protocol:
    return Protocol(
        batch_size=schedule.batch_size,
        phases=[PhaseSummary(p.name, round(p.fraction, 6), p.lrs(), p.image_size) for p in schedule.phases],
    )


def run_cell(
    cell: Cell,
    data: CellData,
    metrics: MetricSet,
    device: torch.device,
    workspace: Workspace,
    progress: ProgressSink | None = None,
) -> CellRecord:
    """Train and evaluate one cell. Any exception becomes a failed record; Ctrl-C propagates.

    ``metrics`` is the run's :class:`MetricSet`: each cell evaluates fresh copies, prepared once per dataset.

    A technique that cannot run here (:class:`TechniqueUnavailable`, or another dataset it needs
    being unavailable) gives a skipped record with the reason.
    """
    record = CellRecord(key=cell.key, config=cell.config, status=FAILED, started_at=now())
    try:
        context = cell_context(cell, tuple(data.train.images.shape[1:]), data.num_classes, device, workspace)
        cell_metrics = metrics.for_cell(context)
        # Seeded after the metrics: only the first cell of a dataset prepares them, and whatever random
        # numbers that draws must not make its training differ from the next cell's with the same seed.
        seed_everything(cell.seed)
        built = cell.composition.build(context)
        prepare_device(device)
        loss_fn = built.loss
        record.config = replace(record.config, protocol=_schedule_summary(built.schedule))
        _check_parts(built.model, built, data, cell.composition.label)
        # Off the clock and the same for every cell: resized copies, the layout, kernel set-up.
        prepared = prepare_cell(built.model, loss_fn, built.schedule, cell.config.speed, data, device,
                                SpeedCache(workspace.cache_dir), _layout_key(cell, context.shape, built.schedule))
        speed = prepared.speed
        model = speed_model(built.model, speed, device)
        if speed.compile:
            model = compiled(model)
        generator = torch.Generator(device=device).manual_seed(cell.seed)
        result = train(model, loss_fn, built.schedule, data.train, data.test, cell.budget, context, generator, progress,
                       find_lr=cell.config.lr == "find", speed=speed)
        record.curve = result.curve
        record.stats = {
            "train_seconds": result.train_seconds,
            "eval_seconds": result.eval_seconds,
            "epochs": result.epochs,
            "steps": result.steps,
            "images_per_second": result.steps * built.schedule.batch_size / max(result.train_seconds, 1e-9),
            "params": sum(p.numel() for p in model.parameters()),
            "prepare_seconds": prepared.seconds,
            **prepared.layout.stats(),
        }
        if result.compile_seconds is not None:
            record.stats["compile_seconds"] = result.compile_seconds
        # How much of the machine the training clock had (aeframe.speed.contention); the report marks shared clocks.
        if result.cpu_share is not None:
            record.stats["cpu_share"] = result.cpu_share
            record.stats["cpu_share_measure"] = result.cpu_share_measure
        if result.gpu_other_processes is not None:
            record.stats["gpu_other_processes"] = result.gpu_other_processes
        if result.lr_tests:
            record.stats["lr_find_seconds"] = sum(t["seconds"] for t in result.lr_tests)
            record.stats["lr_found"] = [t["suggestion"] for t in result.lr_tests]
        _note_outside_budget(record, context)
        if result.diverged:
            record.status, record.error = DIVERGED, result.diverged
        else:
            values, _, seconds = timed_evaluate(model, data.test, cell_metrics, context, result.final_size)
            record.metrics = values
            record.stats["eval_seconds"] += seconds
            record.samples = capture_samples(model, data.test, result.final_size)
            details = {m.name: found for m in cell_metrics if (found := m.details())}
            if details:
                record.stats["metric_details"] = details
            record.status = DONE
    except KeyboardInterrupt:
        raise
    except (TechniqueUnavailable, DatasetUnavailable) as exc:
        record.status, record.error = SKIPPED, str(exc)
        record.config = replace(record.config, kind=SKIPPED_TECHNIQUE)
    except Exception as exc:  # a failing technique must not take the other cells down
        record.status = FAILED
        # A full disk or an unwritable cache is not the technique's bug: say which directory to fix.
        roots = {CACHE_ENV: workspace.cache_dir, f"--data-dir or {DATA_ENV}": workspace.data_dir}
        line = environment_failure(exc, roots) or describe(exc)
        record.error = f"{line}\n{traceback.format_exc()}"
    record.finished_at = now()
    return record
