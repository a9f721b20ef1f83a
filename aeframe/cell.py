"""Running one cell: seed, build the composed technique, train under the budget, evaluate, record."""
from __future__ import annotations

import random
import traceback
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Sequence

import torch
from torch import nn

from aeframe.batches import DeviceSplit, to_unit
from aeframe.dataset import DatasetUnavailable, ImageData
from aeframe.errors import AeframeError, describe
from aeframe.evaluate import timed_evaluate
from aeframe.metric import Metric
from aeframe.metric_set import MetricSet
from aeframe.numerics import compiled, prepare_device, speed_model
from aeframe.plan import Cell
from aeframe.record import DIVERGED, DONE, FAILED, SKIPPED, CellRecord
from aeframe.samples import capture_samples
from aeframe.speed import Speed
from aeframe.technique import CellContext, TechniqueUnavailable
from aeframe.train import ProgressSink, train


@dataclass
class Workspace:
    """Where cells read and write besides the store, and how they reach other datasets."""

    data_dir: Path
    cache_dir: Path
    load_dataset: Callable[[str], ImageData]


@dataclass
class CellData:
    """A dataset's splits on the training device, shared by all cells of that dataset."""

    train: DeviceSplit
    test: DeviceSplit
    num_classes: int


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


def _check_output(model: nn.Module, data: CellData, label: str) -> None:
    """A model whose output does not match its input is a plugin bug: say which one, before training."""
    sample = to_unit(data.test.view(None)[:2])
    was_training = model.training
    model.eval()
    with torch.no_grad():
        out = model(sample)
    model.train(was_training)
    if out.shape != sample.shape:
        raise AeframeError(
            f"technique {label!r} built a model whose output has shape {tuple(out.shape)[1:]} "
            f"for input {tuple(sample.shape)[1:]}; an autoencoder must return its input's shape"
        )


def _schedule_summary(schedule) -> dict:
    return {
        "batch_size": schedule.batch_size,
        "phases": [
            {"name": p.name, "fraction": round(p.fraction, 6), "max_lr": p.lrs(), "image_size": p.image_size}
            for p in schedule.phases
        ],
    }


def run_cell(
    cell: Cell,
    data: CellData,
    metrics: MetricSet | Sequence[Metric],
    device: torch.device,
    workspace: Workspace,
    progress: ProgressSink | None = None,
) -> CellRecord:
    """Train and evaluate one cell. Any exception becomes a failed record; Ctrl-C propagates.

    ``metrics`` is the run's :class:`MetricSet` (metrics prepared once per dataset for all cells),
    or registered metrics to be prepared for this cell alone.

    A technique that cannot run here (:class:`TechniqueUnavailable`, or another dataset it needs
    being unavailable) gives a skipped record with the reason.
    """
    record = CellRecord(key=cell.key, config=dict(cell.config), status=FAILED, started_at=now())
    try:
        context = CellContext(
            shape=tuple(data.train.images.shape[1:]),
            dataset=cell.dataset.plugin.name,
            num_classes=data.num_classes,
            seed=cell.seed,
            device=device,
            data_dir=workspace.data_dir,
            cache_dir=workspace.cache_dir,
            load_dataset=workspace.load_dataset,
            dataset_spec=cell.dataset.label,
        )
        if not isinstance(metrics, MetricSet):
            metrics = MetricSet(metrics)
        cell_metrics = metrics.for_cell(context)
        # Seeded after the metrics: only the first cell of a dataset prepares them, and whatever random
        # numbers that draws must not make its training differ from the next cell's with the same seed.
        seed_everything(cell.seed)
        built = cell.composition.build(context)
        speed = Speed.from_config(cell.config)
        prepare_device(device)
        model = speed_model(built.model.to(device), speed, device)
        loss_fn = built.loss.to(device) if isinstance(built.loss, nn.Module) else built.loss
        record.config["protocol"] = _schedule_summary(built.schedule)
        _check_output(model, data, cell.composition.label)
        if speed.compile:
            model = compiled(model)
        generator = torch.Generator(device=device).manual_seed(cell.seed)
        result = train(model, loss_fn, built.schedule, data.train, data.test, cell.budget, context, generator, progress,
                       find_lr=cell.config.get("lr") == "find", speed=speed)
        record.curve = result.curve
        record.stats = {
            "train_seconds": result.train_seconds,
            "eval_seconds": result.eval_seconds,
            "epochs": result.epochs,
            "steps": result.steps,
            "images_per_second": result.steps * built.schedule.batch_size / max(result.train_seconds, 1e-9),
            "params": sum(p.numel() for p in model.parameters()),
        }
        if result.compile_seconds is not None:
            record.stats["compile_seconds"] = result.compile_seconds
        if result.lr_tests:
            record.stats["lr_find_seconds"] = sum(t["seconds"] for t in result.lr_tests)
            record.stats["lr_found"] = [t["suggestion"] for t in result.lr_tests]
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
    except Exception as exc:  # a failing technique must not take the other cells down
        record.status = FAILED
        record.error = f"{describe(exc)}\n{traceback.format_exc()}"
    record.finished_at = now()
    return record
