"""aeframe's default speed settings against the best setting measured on this machine, per technique.

The defaults are measured choices (docs/speed.md): ``--precision auto`` (a probe, once per device)
and the memory layout each cell rehearses. Both are measured afresh here (not read from the user's
cache), as a new machine would. Then aeframe's own ``train()`` trains fresh copies of the technique
under every (precision, layout) pair the device offers, interleaved round by round; the ratio of the
default pair's images/s to the best pair's is the figure, with the goal of issue 12: at least 0.95.
"""
from __future__ import annotations

from itertools import count

import pytest
import torch

from aeframe.contract.dataset import DatasetUnavailable
from aeframe.execution.environment import device_info
from aeframe.speed.layout import choose_layout, layout_key
from aeframe.planning.plan import resolve_technique
from aeframe.registry.plugins import build_registry
from aeframe.speed.precision_probe import candidates, choose_precision
from aeframe.cells.settings import Speed
from aeframe.speed.cache import SpeedCache
from aeframe.contract.technique import TechniqueUnavailable

from speed_cells import build_fresh, cell_context
from speed_config import DATASET, ROUNDS, STEPS, WARMUP_ROUNDS, technique_texts
from speed_loops import aeframe_loop
from speed_summary import SettingsComparison, setting_name

TECHNIQUES = technique_texts(list(build_registry(autoload=False).techniques))


@pytest.fixture(scope="session")
def measured_precision(device) -> str:
    return choose_precision(device, device_info(device)["name"], SpeedCache(None)).precision


@pytest.mark.parametrize("technique", TECHNIQUES)
def test_default_settings(benchmark, technique, registry, choice, workspace, bench_data, measured_precision,
                          speed_report):
    device = bench_data.device
    composition = resolve_technique(technique, registry)
    context = cell_context(bench_data, choice, workspace)
    try:
        probe = build_fresh(composition, context, Speed(measured_precision, None))
    except (TechniqueUnavailable, DatasetUnavailable) as exc:
        speed_report.skipped.append((technique, str(exc)))
        pytest.skip(f"{technique} cannot run here: {exc}")
    key = layout_key(device_info(device)["name"], torch.__version__, [], context.shape, probe.schedule.batch_size,
                     measured_precision)
    layout = choose_layout(probe.model, probe.loss, probe.schedule, probe.speed, device, bench_data.cells.train,
                           SpeedCache(None), key)
    default = Speed(measured_precision, layout.channels_last)
    settings = [Speed(p, cl) for p in candidates(device) for cl in (False, True)]
    names = [setting_name(s) for s in settings]
    rates: dict[str, list[float]] = {name: [] for name in names}
    rounds = count()

    def fresh_cells():
        return ({setting_name(s): build_fresh(composition, context, s) for s in settings},), {}

    def one_round(cells) -> None:
        shift = next(rounds) % len(names)
        for name in names[shift:] + names[:shift]:
            rates[name].append(aeframe_loop(cells[name], bench_data).images_per_second)

    benchmark.pedantic(one_round, setup=fresh_cells, rounds=ROUNDS, warmup_rounds=WARMUP_ROUNDS)

    comparison = SettingsComparison(technique, setting_name(default), {n: r[-ROUNDS:] for n, r in rates.items()})
    speed_report.settings.append(comparison)
    benchmark.extra_info.update({
        "technique": technique,
        "dataset": DATASET,
        "device": device_info(device)["name"],
        "torch": torch.__version__,
        "steps": STEPS,
        "rounds": ROUNDS,
        "layout_measured_images_per_second": layout.images_per_second,
        **comparison.extra_info(),
    })
