"""Speed settings chosen by measurement (issue 12): the memory layout per technique and shape, the
precision per device, both cached; and every cell's one-time preparation kept off its clock."""
from __future__ import annotations

import json
import os
import sqlite3
import time
from pathlib import Path

import pytest
import torch
from torch import nn

import aeframe.data.splits
from aeframe import Technique
from aeframe.speed.layout import CACHED, FORCED, MEASURED, layout_key
from aeframe.registry.plugins import Registry
from aeframe.speed.precision_probe import (FORWARD_TOLERANCE, MIN_GAIN, TRAINED_TOLERANCE, Measurement, candidates,
                                     choose_precision, pick)
from aeframe.speed.cache import SpeedCache

SMALL = "shapes[train=256,test=64]"
CPU = torch.device("cpu")


class _SlowInLayout(nn.Module):
    """A one-convolution model whose forward is slow in one memory layout, as some kernels are (a sleep
    stands for the slow kernel, long against the convolution even on a loaded machine)."""

    def __init__(self, channels: int, slow: str):
        super().__init__()
        self.conv, self.slow = nn.Conv2d(channels, channels, 3, padding=1), slow

    def forward(self, x):
        # (The study's augmentation transposes some batches: a view that is in neither layout.)
        cl = x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
        layout = "channels_last" if cl else "contiguous"
        if layout == self.slow:
            time.sleep(0.05)
        return self.conv(x)


def _slow_in(layout: str) -> Technique:
    class SlowIn(Technique):
        name, title, base = f"slow-in-{layout.replace('_', '-')}", f"Slow In {layout}", "baseline"
        description = f"a one-convolution model that is slow in {layout} memory, with the Baseline's loss and schedule"

        def build_model(self, ctx):
            return _SlowInLayout(ctx.shape[0], layout)

    return SlowIn()


# Shapes this process has "set up kernels" for: the first forward at a new input shape pays a set-up,
# as oneDNN's primitive creation or cuDNN's algorithm search does once per process and shape. Each
# set-up records whether a training clock was running then.
_SET_UP: dict[tuple[int, ...], bool] = {}
SET_UP_SECONDS = 0.3


class _FirstShapeCost(nn.Module):
    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        if tuple(x.shape) not in _SET_UP:
            _SET_UP[tuple(x.shape)] = _CLOCKS.running
            time.sleep(SET_UP_SECONDS)
        return self.inner(x)


class _Clocks:
    """Whether a cell's training clock is running now (patched onto aeframe's Clock by ``clock_watch``)."""

    running = False


_CLOCKS = _Clocks()


@pytest.fixture
def clock_watch(monkeypatch):
    """Training clocks that say whether they run, so that a test sees what happened on a clock without
    timing anything (a timed bound fails on a loaded machine)."""
    from aeframe.training.clock import Clock

    start, stop = Clock.start, Clock.stop

    def started(self):
        start(self)
        _CLOCKS.running = True

    def stopped(self):
        _CLOCKS.running = False
        stop(self)

    monkeypatch.setattr(Clock, "start", started)
    monkeypatch.setattr(Clock, "stop", stopped)
    yield _CLOCKS
    _CLOCKS.running = False


class FirstShapeCost(Technique):
    name, title, base = "first-shape-cost", "First Shape Cost", "baseline"
    description = "the Baseline, paying a one-off set-up the first time the process sees an input shape"

    def wrap_model(self, model, ctx):
        return _FirstShapeCost(model)


def _registry(registry, *techniques: Technique) -> Registry:
    """The built-ins plus ``techniques``, without the classifier metric (its reference classifier costs more than the cells)."""
    return Registry(executors=registry.executors,
                    techniques={**registry.techniques, **{t.name: t for t in techniques}}, datasets=registry.datasets,
                    metrics={k: m for k, m in registry.metrics.items() if k != "classifier_accuracy"},
                    plugins=registry.plugins, owners=registry.owners)


def _rows(store) -> list[tuple[dict, dict]]:
    with sqlite3.connect(store) as db:
        rows = db.execute("SELECT config, stats FROM cells ORDER BY rowid").fetchall()
    return [(json.loads(c), json.loads(s)) for c, s in rows]


@pytest.fixture(autouse=True)
def idle_machine(monkeypatch):
    """Whether the machine was busy during a measurement is tested on its own below; elsewhere a busy
    test machine must not turn a cached choice into a fresh measurement."""
    from aeframe.speed import layout as layout_tuning

    monkeypatch.setattr(layout_tuning, "busy_share", lambda share: False)


def _bench(cli, tmp_path, registry, *args, cache=None):
    env = {"AEFRAME_CACHE": str(cache or tmp_path / "cache")}
    result = cli("bench", *args, "--store", "r.sqlite", cwd=tmp_path, env=env, registry=registry)
    assert result.returncode == 0, result.stderr
    return result


# --- the memory layout ------------------------------------------------------------------------------

@pytest.mark.parametrize("slow, expected", [("channels_last", "contiguous"), ("contiguous", "channels_last")])
def test_the_layout_is_the_one_measured_faster_for_this_model_not_a_fixed_default(tmp_path, cli, registry, slow,
                                                                                 expected):
    # Before: every CPU cell trained in channels_last, the default hard-coded for CPUs, even where
    # that layout was the slow one (a Xeon with AMX ran the Baseline at half speed).
    technique = _slow_in(slow)
    _bench(cli, tmp_path, _registry(registry, technique), "-t", technique.name, "-d", SMALL, "--epochs", "1",
           "--precision", "fp32")
    [(config, stats)] = _rows(tmp_path / "r.sqlite")
    assert config["channels_last"] is None  # measured per cell, not fixed for the run
    assert stats["memory_format"] == expected, stats and stats["layout_source"] == MEASURED
    rates = stats["layout_images_per_second"]
    assert rates[expected] > 2 * rates[slow]


def test_the_choice_is_cached_per_technique_and_shape_and_reused_by_later_cells_and_runs(tmp_path, cli, registry):
    technique = _slow_in("channels_last")
    reg = _registry(registry, technique)
    _bench(cli, tmp_path, reg, "-t", technique.name, "-d", SMALL, "--epochs", "1", "--seeds", "2",
           "--precision", "fp32")
    first, second = (stats for _, stats in _rows(tmp_path / "r.sqlite"))
    assert (first["layout_source"], second["layout_source"]) == (MEASURED, CACHED)
    assert second["memory_format"] == first["memory_format"] == "contiguous"
    assert second["layout_images_per_second"] == first["layout_images_per_second"]
    # The cache says what the measurement depended on: device, torch, technique, shape, batch, precision.
    entries = json.loads((tmp_path / "cache" / "speed-choices.json").read_text())["entries"]
    [key] = [k for k in entries if json.loads(k)["kind"] == "layout"]
    assert json.loads(key) | {"techniques": None} == {
        "kind": "layout", "device": json.loads(key)["device"], "torch": torch.__version__.split("+")[0],
        "techniques": None, "shape": [3, 32, 32], "batch_size": 128, "precision": "fp32"}
    assert json.loads(key)["techniques"][0]["name"] == technique.name
    # Another technique, or other parameters (another model), is measured again.
    _bench(cli, tmp_path, reg, "-t", "baseline", "-t", "baseline[latent=64]", "-d", SMALL, "--epochs", "1",
           "--precision", "fp32")
    assert [stats["layout_source"] for _, stats in _rows(tmp_path / "r.sqlite")[2:]] == [MEASURED, MEASURED]


def test_a_forced_layout_is_used_as_given_and_nothing_is_measured(tmp_path, cli, registry):
    technique = _slow_in("channels_last")
    _bench(cli, tmp_path, _registry(registry, technique), "-t", technique.name, "-d", SMALL, "--epochs", "1",
           "--precision", "fp32", "--channels-last")
    [(config, stats)] = _rows(tmp_path / "r.sqlite")
    assert config["channels_last"] is True
    assert stats["memory_format"] == "channels_last" and stats["layout_source"] == FORCED
    assert "layout_images_per_second" not in stats
    cache = tmp_path / "cache" / "speed-choices.json"
    assert not cache.exists() or all(json.loads(k)["kind"] != "layout" for k in json.loads(cache.read_text())["entries"])


def test_the_conditions_line_names_the_measured_layout_of_each_row(tmp_path, cli, registry):
    slow_cl, slow_nchw = _slow_in("channels_last"), _slow_in("contiguous")
    result = _bench(cli, tmp_path, _registry(registry, slow_cl, slow_nchw), "-t", slow_cl.name, "-t", slow_nchw.name,
                    "-d", SMALL, "--epochs", "1", "--precision", "fp32")
    note = next(line for line in result.stdout.splitlines() if line.startswith("Budget:"))
    assert ("Precision: fp32, memory layout measured per technique (channels_last for Slow In contiguous; "
            "contiguous for Slow In channels_last)") in note
    assert "Training time: device-synchronised, after the same untimed preparation for every cell" in note


def test_a_measurement_on_a_busy_machine_is_not_cached(tmp_path, registry, monkeypatch):
    from aeframe.speed import layout as layout_tuning
    from techniques import build

    built = build("baseline", registry)
    from conftest import cell_data

    data = cell_data(SMALL, registry)
    monkeypatch.setattr(layout_tuning, "busy_share", lambda share: True)
    cache = SpeedCache(tmp_path)
    key = layout_key("cpu", "x", [], (3, 32, 32), 128, "fp32")
    from aeframe.cells.settings import Speed

    choice = layout_tuning.choose_layout(built.model, built.loss, built.schedule, Speed("fp32", None), CPU,
                                         data.train, cache, key)
    assert choice.source == layout_tuning.MEASURED_BUSY
    assert cache.get(key) is None


# --- the precision ----------------------------------------------------------------------------------

def _m(rate: float, forward: float = 0.0, trained: float = 0.0, finite: bool = True) -> Measurement:
    return Measurement(rate, forward, trained, finite)


@pytest.mark.parametrize("measurements, expected", [
    ({"fp32": _m(1000), "bf16": _m(1800, 1e-3, 0.01)}, "bf16"),  # faster and within tolerance
    ({"fp32": _m(1000), "bf16": _m(1000 * MIN_GAIN * 0.99)}, "fp32"),  # a gain within the noise
    ({"fp32": _m(1000), "bf16": _m(1800, FORWARD_TOLERANCE * 2)}, "fp32"),  # reconstructions too far off
    ({"fp32": _m(1000), "bf16": _m(1800, 0, -TRAINED_TOLERANCE * 1.5)}, "fp32"),  # trains to other numbers
    ({"fp32": _m(1000), "bf16": _m(1800, finite=False)}, "fp32"),  # overflows
    ({"fp32": _m(1000), "bf16": _m(1800), "fp16": _m(1850)}, "bf16"),  # fp16 must beat bf16 by the margin too
    ({"fp32": _m(1000), "bf16": _m(500), "fp16": _m(1800)}, "fp16"),  # emulated bf16, native fp16
])
def test_auto_picks_the_fastest_precision_within_tolerance(measurements, expected):
    assert pick(measurements) == expected


def test_the_precision_is_measured_once_per_device_and_torch_version_then_read_from_the_cache(tmp_path, monkeypatch):
    from aeframe.speed import precision_probe

    monkeypatch.setattr(precision_probe, "busy_share", lambda share: False)
    cache = SpeedCache(tmp_path)
    said = []
    first = choose_precision(CPU, "this CPU (2 threads)", cache, said.append)
    assert first.source == "measured" and first.precision in candidates(CPU)
    assert set(first.measurements) == set(candidates(CPU))
    assert first.measurements["fp32"].within_tolerance
    # On this CPU bf16 stays far inside the tolerances (forward error ~8e-4, trained MSE within 0.1 %).
    bf16 = first.measurements["bf16"]
    assert bf16.finite and bf16.forward_error < FORWARD_TOLERANCE and abs(bf16.trained_mse_change) < TRAINED_TOLERANCE
    assert said and "measuring which precision" in said[0]
    again = choose_precision(CPU, "this CPU (2 threads)", cache, said.append)
    assert again.source == "cached" and again.precision == first.precision
    assert again.measurements == first.measurements
    # Another device name (another machine, or another number of threads) measures again.
    measured = []
    monkeypatch.setattr(precision_probe, "measure", lambda device, names: measured.append(names) or first.measurements)
    assert choose_precision(CPU, "another CPU (2 threads)", cache).source == "measured" and len(measured) == 1


def test_precision_auto_is_shown_recorded_and_keyed_as_the_precision_it_chose(tmp_path, cli, registry):
    reg = _registry(registry)
    # The run's cache: how auto is measured is shown above; here, what a run does with its choice.
    cache = Path(os.environ["AEFRAME_CACHE"])
    result = _bench(cli, tmp_path, reg, "-t", "baseline", "-d", SMALL, "--epochs", "1", cache=cache)
    assert "--precision auto: precision " in result.stderr
    [(config, _)] = _rows(tmp_path / "r.sqlite")
    chosen = config["precision"]
    assert chosen in candidates(CPU) and config["precision_from"] == "measured"
    note = next(line for line in result.stdout.splitlines() if line.startswith("Budget:"))
    assert f"Precision: {chosen} (auto: the fastest within tolerance here, docs/speed.md)" in note
    # The same precision asked for by name is the same cell: precision decides the numbers, not how it was picked.
    again = _bench(cli, tmp_path, reg, "-t", "baseline", "-d", SMALL, "--epochs", "1", "--precision", chosen, cache=cache)
    assert "1 of 1 cells already done" in again.stderr


# --- equal treatment --------------------------------------------------------------------------------

def test_a_resized_copy_of_the_data_is_made_off_the_clock_even_in_the_first_cell(tmp_path, cli, registry, monkeypatch,
                                                                                   clock_watch):
    # Progressive resizing's 16-px copy of Fashion-MNIST took 1.9 s, on the clock of the first cell only.
    real = aeframe.data.splits.resize_uint8
    resized_on_the_clock = []

    def watched_resize(images, size, method):
        resized_on_the_clock.append(clock_watch.running)
        time.sleep(0.3)
        return real(images, size, method)

    monkeypatch.setattr(aeframe.data.splits, "resize_uint8", watched_resize)
    _bench(cli, tmp_path, _registry(registry), "-t", "progressive-resizing", "-d", SMALL, "--epochs", "1",
           "--seeds", "2", "--precision", "fp32", "--no-channels-last")
    first, second = (stats for _, stats in _rows(tmp_path / "r.sqlite"))
    assert resized_on_the_clock == [False, False]  # the training and test copies, made once, both off the clock
    assert first["prepare_seconds"] >= 0.6


def test_first_shape_set_up_is_paid_before_the_clock_of_every_cell(tmp_path, cli, registry, clock_watch):
    _SET_UP.clear()
    _bench(cli, tmp_path, _registry(registry, FirstShapeCost()), "-t", FirstShapeCost.name, "-d", SMALL,
           "--epochs", "1", "--seeds", "2", "--precision", "fp32", "--no-channels-last")
    first, _ = (stats for _, stats in _rows(tmp_path / "r.sqlite"))
    # Before: the first cell's clock held the set-up of every shape it met (training, evaluation, the last
    # partial batch), the second's did none.
    assert _SET_UP and not any(_SET_UP.values()), _SET_UP
    assert first["prepare_seconds"] >= SET_UP_SECONDS


