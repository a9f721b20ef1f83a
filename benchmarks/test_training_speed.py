"""aeframe's training loop against a plain PyTorch loop and the study's DataLoader loop, per technique.

One benchmark per technique. A round trains three fresh copies of the technique's model (built
untimed, with the cell's seed) for ``STEPS`` steps each: (a) with aeframe's ``train()``, (b) with a
minimal hand-written loop, (c) with the study's DataLoader loop (see speed_loops.py). The order of
the three rotates from round to round. pytest-benchmark's own timing is of the whole round (three
loops plus aeframe's end-of-epoch evaluation); the images/s and ratios in ``extra_info`` come from
each loop's device-synchronised timer. Run: see docs/benchmarks.md.
"""
from __future__ import annotations

from dataclasses import replace
from itertools import count

import pytest
import torch

from aeframe.contract.dataset import DatasetUnavailable
from aeframe.execution.environment import device_info
from aeframe.speed.layout import choose_layout, layout_key
from aeframe.planning.plan import resolve_technique
from aeframe.registry.plugins import build_registry
from aeframe.speed.cache import SpeedCache
from aeframe.contract.technique import TechniqueUnavailable

from speed_cells import build_fresh, cell_context
from speed_config import DATASET, ROUNDS, STEPS, WARMUP_ROUNDS, WORKERS, technique_texts
from speed_loops import LOOPS, LoopRun
from speed_summary import LoopComparison

TECHNIQUES = technique_texts(list(build_registry(autoload=False).techniques))


@pytest.mark.parametrize("technique", TECHNIQUES)
def test_training_loops(benchmark, technique, registry, choice, workspace, bench_data, speed, speed_report):
    composition = resolve_technique(technique, registry)
    context = cell_context(bench_data, choice, workspace)
    try:
        # Also makes what a technique caches (a pretrained encoder) before anything is timed.
        build_fresh(composition, context, speed)
    except (TechniqueUnavailable, DatasetUnavailable) as exc:
        speed_report.skipped.append((technique, str(exc)))
        pytest.skip(f"{technique} cannot run here: {exc}")

    # The layout this technique's cells train in by default, measured as a cell measures it.
    if speed.tuned_layout:
        probe = build_fresh(composition, context, speed)
        key = layout_key(device_info(bench_data.device)["name"], torch.__version__.split("+")[0],
                         [m.describe() for m in composition.members], context.shape, probe.schedule.batch_size, speed.precision)
        layout = choose_layout(probe.model, probe.loss, probe.schedule, speed, bench_data.device,
                               bench_data.cells.train, SpeedCache(workspace.cache_dir), key)
        speed = replace(speed, channels_last=layout.channels_last)
    names = list(LOOPS)
    runs: dict[str, list[LoopRun]] = {name: [] for name in names}
    rounds = count()

    def fresh_cells():
        return ({name: build_fresh(composition, context, speed) for name in names},), {}

    def one_round(cells) -> None:
        shift = next(rounds) % len(names)
        for name in names[shift:] + names[:shift]:
            runs[name].append(LOOPS[name](cells[name], bench_data))

    benchmark.pedantic(one_round, setup=fresh_cells, rounds=ROUNDS, warmup_rounds=WARMUP_ROUNDS)

    timed = {name: found[-ROUNDS:] for name, found in runs.items()}
    for name, found in timed.items():
        assert all(run.steps == STEPS and run.images == bench_data.images for run in found), (name, found)
    comparison = LoopComparison(technique, {name: [r.images_per_second for r in found] for name, found in timed.items()})
    speed_report.comparisons.append(comparison)
    benchmark.extra_info.update({
        "technique": technique,
        "dataset": DATASET,
        "device": device_info(bench_data.device)["name"],
        "torch": torch.__version__,
        "steps": STEPS,
        "images_per_loop": bench_data.images,
        "rounds": ROUNDS,
        "warmup_rounds": WARMUP_ROUNDS,
        "dataloader_workers": WORKERS,
        **speed.to_json(),
        **comparison.extra_info(),
    })
