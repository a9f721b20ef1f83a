"""One cell from its spec to its record: rebuild its parts, prepare them off the clock, train under the
budget, evaluate, and make the record.

:func:`run_cell` is what every executor ends in, in this process or on a worker elsewhere, and
:func:`_record` the one place a trained cell's record and its stats are made.
"""
from __future__ import annotations

import math
import random
import traceback
from dataclasses import replace
from typing import Any, Callable

import torch
from torch import nn

from aeframe.cells.record import (
    DIVERGED,
    DONE,
    FAILED,
    SKIPPED,
    SKIPPED_TECHNIQUE,
    CellRecord,
    CellStats,
    PhaseSummary,
    Protocol,
    now,
)
from aeframe.cells.samples import Samples
from aeframe.cells.spec import CellSpec, cell_key
from aeframe.console import say
from aeframe.contract.dataset import DatasetUnavailable
from aeframe.contract.output import reconstruction, training_loss
from aeframe.contract.schedule import Schedule
from aeframe.contract.technique import CellContext, TechniqueUnavailable
from aeframe.data.directories import environment_failure
from aeframe.data.loading import CACHE_ENV, DATA_ENV, Workspace
from aeframe.data.splits import CellData, to_unit
from aeframe.errors import AeframeError, CompositionError, describe
from aeframe.planning.composition import BuiltCell
from aeframe.planning.rebuild import PluginMismatch, node_name, runnable
from aeframe.registry.plugins import Registry
from aeframe.speed.cache import SpeedCache
from aeframe.speed.layout import layout_key
from aeframe.speed.numerics import compiled, prepare_device, speed_model
from aeframe.speed.preparation import CellPreparation, prepare_cell
from aeframe.speed.preparation_limit import PreparationTooLong, PreparationWatch, preparation_limit
from aeframe.speed.step_mode import step_key
from aeframe.training.evaluate import capture_samples, timed_evaluate
from aeframe.training.events import CellEvents
from aeframe.training.exits import exit_reason
from aeframe.training.isolation import isolated
from aeframe.training.metric_set import MetricSet
from aeframe.training.train import ProgressSink, TrainResult, train


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


def cell_context(spec: CellSpec, shape: tuple[int, ...], num_classes: int, device: torch.device,
                 workspace: Workspace) -> CellContext:
    """What the technique's methods (and the metrics' ``prepare``) know about the cell of ``spec``."""
    config = spec.config
    return CellContext(shape=shape, dataset=config.dataset.name, num_classes=num_classes, seed=config.seed or 0,
                       device=device, data_dir=workspace.data_dir, cache_dir=workspace.cache_dir,
                       load_dataset=workspace.load_dataset, dataset_spec=spec.dataset)


def data_context(spec: CellSpec, data: CellData, device: torch.device, workspace: Workspace) -> CellContext:
    """:func:`cell_context` for a cell on ``data``."""
    return cell_context(spec, tuple(data.train.images.shape[1:]), data.num_classes, device, workspace)


@isolated()  # whatever a plugin sets process-wide (threads, RNGs, torch's switches) ends with its cell
def run_cell(
    spec: CellSpec,
    data: CellData,
    metrics: MetricSet,
    device: torch.device,
    workspace: Workspace,
    registry: Registry,
    progress: ProgressSink | None = None,
) -> CellRecord:
    """Rebuild ``spec``'s cell from ``registry``, train and evaluate it; its record. Never raises but for Ctrl-C.

    ``data`` is the spec's dataset on ``device``; ``metrics`` the run's :class:`MetricSet`, prepared for
    the dataset (each cell evaluates fresh copies). A plugin missing here, or of another version than
    the one the cell was planned with, fails the cell naming it. A technique that cannot run here
    (:class:`TechniqueUnavailable`, or another dataset it needs being unavailable) gives a skipped
    record with the reason; any other exception a failed record with the traceback.
    """
    started = now()
    try:
        cell = runnable(spec, registry)
    except PluginMismatch as exc:
        return spec.failed(str(exc), started)
    except Exception as exc:  # e.g. a parameter that a newer version of the plugin no longer accepts
        return spec.failed(f"cannot rebuild the cell on node {node_name()}: {describe(exc)}\n{traceback.format_exc()}",
                           started)
    protocol, stats, curve = None, None, None  # what a failure after building or training still records
    try:
        context = data_context(spec, data, device, workspace)
        cell_metrics = metrics.for_cell(context)
        # Seeded after the metrics: whatever random numbers preparing them drew must not make this cell's
        # training differ from another's with the same seed.
        seed_everything(cell.seed)
        built = cell.composition.build(context)
        prepare_device(device)
        protocol = _schedule_summary(built.schedule)
        _check_parts(built, data, cell.composition.label)
        # Off the clock and the same for every cell: resized copies, the layout, kernel set-up.
        watch = PreparationWatch(cell.composition.label, preparation_limit(cell.budget.seconds),
                                 _preparation_lines(spec, progress))
        prepared = prepare_cell(built.model, built.loss, built.schedule, spec.config.speed, data, device,
                                SpeedCache(workspace.cache_dir), _layout_key(spec, context.shape, built.schedule),
                                lambda channels_last: _step_key(spec, context.shape, built.schedule, channels_last),
                                cell.composition.not_graph_safe(), watch)
        model = speed_model(built.model, prepared.speed, device)
        if prepared.speed.compile:
            model = compiled(model)
        generator = torch.Generator(device=device).manual_seed(cell.seed)
        # The techniques acting at events see the model they built (compiling wraps the same parameters).
        events = CellEvents(built.actors, built.model, device)
        result = train(model, built.loss, built.schedule, data.train, data.test, cell.budget, context, generator,
                       progress, find_lr=spec.config.lr == "find", speed=prepared.speed, step=prepared.step,
                       events=events)
        stats, curve = _stats(spec, built, model, result, prepared, context), result.curve
        if result.diverged:
            return _record(spec, started, DIVERGED, protocol, error=result.diverged, stats=stats, curve=curve)
        with events.evaluating():
            values, mse, seconds = timed_evaluate(model, data.test, cell_metrics, context, result.final_size)
            samples = capture_samples(model, data.test, result.final_size) if math.isfinite(mse) else None
        details = {m.name: found for m in cell_metrics if (found := m.details())}
        stats = _stats(spec, built, model, result, prepared, context, seconds, details)
        if not math.isfinite(mse):  # a finite loss, yet NaN in eval mode (statistics that blew up): no result
            error = f"evaluation gave non-finite mse: {mse}, though the training loss was finite"
            return _record(spec, started, DIVERGED, protocol, error=error, metrics=values, stats=stats, curve=curve)
        return _record(spec, started, DONE, protocol, metrics=values, stats=stats, curve=result.curve, samples=samples)
    except KeyboardInterrupt:
        raise
    except (TechniqueUnavailable, DatasetUnavailable) as exc:
        return _record(spec, started, SKIPPED, protocol, error=str(exc))
    except PreparationTooLong as exc:  # the message says it all: a traceback of aeframe's own loop would not help
        return _record(spec, started, FAILED, protocol, error=str(exc))
    except Exception as exc:  # a failing technique must not take the other cells down
        # A full disk or an unwritable cache is not the technique's bug: say which directory to fix.
        roots = {CACHE_ENV: workspace.cache_dir, f"--data-dir or {DATA_ENV}": workspace.data_dir}
        line = environment_failure(exc, roots) or describe(exc)
        return _record(spec, started, FAILED, protocol, error=f"{line}\n{traceback.format_exc()}", stats=stats,
                       curve=curve)
    except BaseException as exc:  # sys.exit() in a plugin must fail its cell, not end the run (Ctrl-C is raised above)
        reason = exit_reason(exc, cell.composition, spec.config.plugins, trained=stats is not None)
        return _record(spec, started, FAILED, protocol, error=f"{reason}\n{traceback.format_exc()}", stats=stats,
                       curve=curve)


def _preparation_lines(spec: CellSpec, progress: ProgressSink | None) -> Callable[[str], None]:
    """Where the preparation's progress lines go: the cell's progress display where it has one for notes,
    else stderr with the cell's title (a worker's stderr, which Ray shows in the driver's)."""
    note = getattr(progress, "note", None)
    return note if callable(note) else (lambda line: say(f"{spec.title}: {line}"))


def _record(spec: CellSpec, started: str, status: str, protocol: Protocol | None, *, error: str | None = None,
            metrics: dict[str, float] | None = None, stats: CellStats | None = None,
            curve: list[dict[str, Any]] | None = None, samples: Samples | None = None) -> CellRecord:
    """The record of a cell that got as far as building: its config with the protocol it trained by."""
    config = replace(spec.config, protocol=protocol)
    if status == SKIPPED:
        config = replace(config, kind=SKIPPED_TECHNIQUE)
    return CellRecord(key=spec.key or cell_key(spec.config), config=config, status=status, error=error, metrics=metrics or {},
                      stats=stats or CellStats(), curve=curve or [], started_at=started, finished_at=now(),
                      samples=samples)


def _stats(spec: CellSpec, built: BuiltCell, model: nn.Module, result: TrainResult, prepared: CellPreparation,
           context: CellContext, eval_seconds: float = 0.0, details: dict[str, Any] | None = None) -> CellStats:
    """What the cell's training (and evaluation) measured, and what it cost outside its budget."""
    lr_find_seconds = sum(t["seconds"] for t in result.lr_tests) if result.lr_tests else None
    preparations = [p.to_json() for p in context.preparations]
    # A part of unknown cost (reused from a cache that did not keep it) makes the total unknown: a
    # sum of the known parts would show the row as cheaper than it was, 0 s when nothing is known.
    parts = [p.seconds for p in context.preparations] + [
        s for s in (lr_find_seconds, result.compile_seconds, result.capture_seconds) if s is not None]
    layout, step = prepared.layout, prepared.step
    return CellStats(
        train_seconds=result.train_seconds,
        eval_seconds=result.eval_seconds + eval_seconds,
        epochs=result.epochs,
        steps=result.steps,
        images_per_second=result.steps * built.schedule.batch_size / max(result.train_seconds, 1e-9),
        params=sum(p.numel() for p in model.parameters()),
        prepare_seconds=prepared.seconds,
        memory_format=layout.name,
        layout_source=layout.source,
        layout_images_per_second=dict(layout.images_per_second) or None,
        compile_seconds=result.compile_seconds,
        step_mode=result.step_mode,
        step_source=step.source,
        step_images_per_second=dict(step.images_per_second) or None,
        step_reason=result.step_reason,
        device_busy_share=step.busy,
        gpu_peak_memory=result.gpu_peak_memory,
        capture_seconds=result.capture_seconds,
        graphs_captured=result.graphs_captured,
        # How much of the machine the training clock had (aeframe.speed.contention); the report marks shared clocks.
        cpu_share=result.cpu_share,
        cpu_share_measure=result.cpu_share_measure if result.cpu_share is not None else None,
        gpu_other_processes=result.gpu_other_processes,
        lr_find_seconds=lr_find_seconds,
        lr_found=[t["suggestion"] for t in result.lr_tests] or None,
        preparation=preparations or None,
        outside_budget_seconds=sum(parts) if parts and all(p is not None for p in parts) else None,
        metric_details=details or None,
        stand_in=spec.stand_in,
    )


def _check_parts(built: BuiltCell, data: CellData, label: str) -> None:
    """Catch plugin bugs before training, naming the technique: a model whose output, in eval or in training
    mode, does not match its input or is not finite, and a loss wrapper that drops the loss it wraps."""
    sample = to_unit(data.test.view(None)[:2])
    # Both modes: a shape wrong in training mode alone (B, C, 1, 1) trains through the loss's broadcasting.
    for training in (False, True):
        image = _output_in_mode(built, sample, training)
        mode = " in training mode" if training else ""
        if image.shape != sample.shape:
            raise AeframeError(
                f"technique {label!r} built a model whose output has shape {tuple(image.shape)[1:]}{mode} "
                f"for input {tuple(sample.shape)[1:]}; an autoencoder must return its input's shape"
            )
        finite = torch.isfinite(image)
        if not bool(finite.all()):
            raise AeframeError(
                f"technique {label!r} built a model whose output {mode.strip() or 'in eval mode'} is not finite "
                f"({float(image[~finite][0])}) before any training; check its forward"
            )
    dropping = built.unused_losses()
    if dropping:
        raise CompositionError(
            f"technique {dropping[0]}'s wrap_loss returned a loss that never calls the loss it wraps, so that loss "
            "would be dropped; a technique that replaces the loss provides it (build_loss) instead"
        )


def _output_in_mode(built: BuiltCell, sample: torch.Tensor, training: bool) -> torch.Tensor:
    """The model's reconstruction of ``sample`` in training or eval mode, the loss called on it where the shapes
    agree. The cell's numbers must not move: random streams, buffers (batch-norm statistics) and the mode are
    left as they were."""
    model = built.model
    was_training = model.training
    buffers = {name: b.clone() for name, b in model.named_buffers()}
    devices = [sample.device] if sample.device.type == "cuda" else []
    try:
        with torch.no_grad(), torch.random.fork_rng(devices=devices):
            model.train(training)
            out = model(sample)
            image = reconstruction(out)
            if image.shape == sample.shape:
                training_loss(built.loss, out, sample)
    finally:
        model.train(was_training)
        with torch.no_grad():
            for name, b in model.named_buffers():
                if name in buffers:
                    b.copy_(buffers[name])
    return image


def _layout_key(spec: CellSpec, shape: tuple[int, ...], schedule: Schedule) -> str:
    """The cache key of this cell's layout choice (see :func:`aeframe.speed.layout.layout_key`)."""
    config = spec.config
    return layout_key(config.device.name or config.device.type or "", config.versions.get("torch", ""),
                      [t.to_json() for t in config.techniques], shape, schedule.batch_size, config.speed.precision)


def _step_key(spec: CellSpec, shape: tuple[int, ...], schedule: Schedule, channels_last: bool) -> str:
    """The cache key of this cell's step-mode choice (see :func:`aeframe.speed.step_mode.step_key`)."""
    config = spec.config
    return step_key(config.device.name or config.device.type or "", config.versions.get("torch", ""),
                    [t.to_json() for t in config.techniques], shape, schedule.batch_size, config.speed.precision,
                    channels_last)


def _schedule_summary(schedule: Schedule) -> Protocol:
    return Protocol(
        batch_size=schedule.batch_size,
        phases=[PhaseSummary(p.name, round(p.fraction, 6), p.lrs(), p.image_size) for p in schedule.phases],
    )
