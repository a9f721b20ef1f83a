"""The CUDA paths on a real GPU: autocast, the fp16 gradient scaler, cuDNN autotuning, torch.compile,
the clock's synchronisation, the time budget, NaN detection and a whole ``aeframe bench --device cuda``.

Every test here is marked ``cuda``: skipped without a GPU, and failing instead of skipping under
``AEFRAME_REQUIRE_CUDA=1``, which the GPU check (benchmarks/gpu-check.sh) sets (see conftest.py).
Cells go through the real CLI and the real store; a probe technique wraps the Baseline to see
from inside what a training step ran under.
"""
from __future__ import annotations

import importlib.util
import json
import math
import sqlite3
import time

import pytest
import torch
from torch import nn

from aeframe import Technique
from aeframe.training.clock import Clock
from aeframe.registry.plugins import Registry
from aeframe.store.sqlite_store import Store

pytestmark = pytest.mark.cuda

GPU = torch.device("cuda")
TINY = "shapes[train=512,test=128]"
# GPU cycles a probe step spins for: about 10 ms at an H200's 1.98 GHz, longer at lower clocks. Steps
# that long make "within one step" and "within 0.25 s" measurable; the asserts use measured times.
SPIN_CYCLES = 20_000_000


class _Probing(nn.Module):
    """The wrapped model, noting in training steps what they ran under; optionally slow, or NaN from a step on."""

    def __init__(self, inner: nn.Module, probe: Probe):
        super().__init__()
        self.inner, self.probe = inner, probe
        first_conv = next(m for m in inner.modules() if isinstance(m, nn.Conv2d))
        first_conv.register_forward_hook(self._note_conv)

    def _note_conv(self, module, args, out) -> None:
        if self.training:
            self.probe.conv_dtypes.add(out.dtype)

    def forward(self, x):
        out = self.inner(x)
        if not self.training:
            return out
        probe = self.probe
        probe.steps += 1
        probe.cudnn_benchmark.add(torch.backends.cudnn.benchmark)
        probe.input_devices.add(x.device.type)
        if probe.spin_cycles:
            torch.cuda._sleep(probe.spin_cycles)
        if probe.nan_from is not None and probe.steps >= probe.nan_from:
            return out * float("nan")
        return out


class Probe(Technique):
    """The Baseline, wrapped to record what its training steps see (a test's own instance)."""

    name, title, base = "probe", "Probe", "baseline"
    description = "the Baseline, noting what each training step ran under"

    def __init__(self, spin_cycles: int = 0, nan_from: int | None = None):
        self.spin_cycles, self.nan_from = spin_cycles, nan_from
        self.steps = 0
        self.conv_dtypes: set[torch.dtype] = set()
        self.cudnn_benchmark: set[bool] = set()
        self.input_devices: set[str] = set()
        self.loss_inputs: set[torch.dtype] = set()
        self.losses: list[torch.Tensor] = []

    def wrap_model(self, model, ctx):
        return _Probing(model, self)

    def wrap_loss(self, loss, ctx):
        def probed(output, target):
            value = loss(output, target)
            if torch.is_grad_enabled():  # training steps, not the pre-training check of the parts
                self.loss_inputs.add(output.dtype)
                self.losses.append(value.detach())
            return value

        return probed


def _with(registry, probe: Probe, classifier: bool = False) -> Registry:
    """The built-ins plus ``probe``; without the classifier metric unless asked (its reference
    classifier costs more than these cells)."""
    metrics = registry.metrics if classifier else {k: m for k, m in registry.metrics.items() if k != "classifier_accuracy"}
    return Registry(executors=registry.executors,
                    techniques={**registry.techniques, probe.name: probe}, datasets=registry.datasets, metrics=metrics,
                    plugins=registry.plugins, owners=registry.owners)


def _records(path) -> list:
    with Store(path, write=False) as store:
        return store.records()


def _only_record(path):
    [record] = _records(path)
    return record


def _spin_seconds(cycles: int) -> float:
    """How long ``torch.cuda._sleep(cycles)`` keeps this GPU busy: the least a probe step takes."""
    torch.cuda._sleep(cycles)
    began, ended = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    began.record()
    torch.cuda._sleep(cycles)
    ended.record()
    ended.synchronize()
    return began.elapsed_time(ended) / 1000


def _bench(cli, tmp_path, registry, *args: str, graphs: bool = False):
    # The probe counts steps and switches to NaN from Python: a CUDA graph replays its first step's
    # kernels without calling Python, so the probe's cells step eagerly unless a test is about graphs.
    eager = () if graphs else ("--no-cuda-graphs",)
    return cli("bench", "--device", "cuda", "--store", "r.sqlite", *eager, *args, cwd=tmp_path, registry=registry)


@pytest.mark.parametrize("precision, dtype", [("bf16", torch.bfloat16), ("fp16", torch.float16)])
def test_autocast_runs_convolutions_in_the_lower_precision_and_the_loss_in_fp32(tmp_path, cli, registry, precision,
                                                                               dtype, monkeypatch):
    updates = []
    real_update = torch.amp.GradScaler.update

    def counted_update(self, *args, **kwargs):
        updates.append(self)
        return real_update(self, *args, **kwargs)

    monkeypatch.setattr(torch.amp.GradScaler, "update", counted_update)
    probe = Probe()
    result = _bench(cli, tmp_path, _with(registry, probe), "-t", "probe", "-d", TINY, "--epochs", "2",
                    "--precision", precision)
    assert result.returncode == 0, result.stderr
    record = _only_record(tmp_path / "r.sqlite")
    assert record.status == "done" and record.config.speed.precision == precision
    assert probe.input_devices == {GPU.type}
    assert probe.conv_dtypes == {dtype}
    # The model's output reaches the loss in fp32, and the loss is fp32 and finite at every step.
    assert probe.loss_inputs == {torch.float32}
    # At least the cell's own steps (anything measured on the side before its clock starts comes on top).
    assert record.stats["steps"] == 8 and len(probe.losses) >= 8
    assert all(loss.dtype == torch.float32 and bool(torch.isfinite(loss)) for loss in probe.losses)
    assert all(math.isfinite(value) for value in record.metrics.values())
    if precision == "fp16":
        # The gradient scaler ran every step, and its scale stayed a usable number.
        assert len(updates) >= 8
        scale = updates[-1].get_scale()
        assert math.isfinite(scale) and scale > 0
    else:
        assert updates == []  # bf16 has fp32's range: no scaler


def test_cudnn_autotuning_is_on_while_cells_train(tmp_path, cli, registry):
    torch.backends.cudnn.benchmark = False
    probe = Probe()
    result = _bench(cli, tmp_path, _with(registry, probe), "-t", "probe", "-d", TINY, "--epochs", "1")
    assert result.returncode == 0, result.stderr
    assert probe.steps >= 4 and probe.cudnn_benchmark == {True}


def test_compiled_cell_trains_on_the_gpu_with_compile_time_off_the_clock(tmp_path, cli, registry):
    if importlib.util.find_spec("triton") is None:
        pytest.skip("torch.compile on CUDA needs triton, which is not importable here (pip install triton)")
    result = cli("bench", "-t", "baseline", "-d", TINY, "--epochs", "2", "--device", "cuda", "--compile",
                 "--store", "r.sqlite", cwd=tmp_path, registry=_with(registry, Probe()))
    assert result.returncode == 0, result.stderr
    record = _only_record(tmp_path / "r.sqlite")
    assert record.status == "done", record.error
    assert record.config.speed.compile is True
    stats = record.stats
    # Inductor takes seconds to compile; those are reported apart, and the training steps are far quicker.
    assert stats["compile_seconds"] > 0.5
    assert 0 < stats["train_seconds"] < stats["compile_seconds"]
    assert all(math.isfinite(value) for value in record.metrics.values())
    assert 0 < record.metrics["mse"] < 0.5


def test_the_clock_waits_for_queued_gpu_work():
    # 30 products of 8192x8192 fp32 matrices: about 35 TFLOP, 0.1 s with TF32 to 0.6 s without on an H200.
    a = torch.randn(8192, 8192, device=GPU)
    a @ a  # kernel choice and memory, out of the measurement
    torch.cuda.synchronize()
    clock = Clock(GPU)
    began, ended = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    clock.start()
    began.record()
    queued_at = time.perf_counter()
    for _ in range(30):
        a @ a
    queued = time.perf_counter() - queued_at
    ended.record()
    read = clock.read()
    gpu = began.elapsed_time(ended) / 1000
    # The loop is queued in a fraction of the time the GPU takes to run it; the clock includes all of it.
    assert gpu > 0.05 and queued < gpu / 2, (queued, gpu)
    assert read >= gpu * 0.98, (read, gpu)
    clock.stop()
    stopped = clock.read()
    a @ a
    assert clock.read() == stopped


def test_time_budget_stops_within_about_one_step_of_the_limit(tmp_path, cli, registry):
    probe = Probe(spin_cycles=SPIN_CYCLES)
    result = _bench(cli, tmp_path, _with(registry, probe), "-t", "probe", "-d", "shapes[train=2048,test=64]",
                    "--epochs", "100000", "--time-budget", "2s")
    assert result.returncode == 0, result.stderr
    stats = _only_record(tmp_path / "r.sqlite").stats
    step = stats["train_seconds"] / stats["steps"]
    assert step > 0.004, stats  # the spin made steps long enough for the bound below to mean something
    assert 2.0 <= stats["train_seconds"] <= 2.0 + 2 * step, stats
    assert stats["epochs"] < 100000


def test_nan_on_the_gpu_stops_the_cell_at_the_next_clock_read(tmp_path, cli, registry):
    probe = Probe(spin_cycles=2 * SPIN_CYCLES, nan_from=4)
    spin = _spin_seconds(probe.spin_cycles)
    # 40 steps per epoch of at least `spin` each: an end-of-epoch check would stop at step 40.
    result = _bench(cli, tmp_path, _with(registry, probe), "-t", "probe", "-d", "shapes[train=5120,test=64]",
                    "--epochs", "1")
    assert "Traceback" not in result.stderr
    assert result.returncode == 1
    with sqlite3.connect(tmp_path / "r.sqlite") as db:
        [(status, error, stats)] = db.execute("SELECT status, error, stats FROM cells").fetchall()
    stats = json.loads(stats)
    steps = stats["steps"]
    assert status == "diverged"
    assert error == f"training loss became nan by step {steps} (epoch 1)"
    # On a GPU the loss is checked where the budget reads the clock, about every 0.25 s: so within
    # 0.25 s of steps (each one at least `spin` long) of the first NaN; 0.3 s and two steps of slack, in
    # case the GPU's clock was lower during the measurement than in training.
    assert steps <= 4 + math.ceil(0.3 / spin) + 2 and steps < 40, (steps, spin)


def test_a_whole_bench_cell_on_the_gpu_through_the_cli(tmp_path, cli, registry):
    result = _bench(cli, tmp_path, _with(registry, Probe(), classifier=True), "-t", "baseline", "-d", TINY,
                    "--epochs", "1", "--precision", "auto")
    assert result.returncode == 0, result.stderr
    record = _only_record(tmp_path / "r.sqlite")
    assert record.status == "done", record.error
    name = torch.cuda.get_device_name(GPU)
    assert record.config.device.type == "cuda" and record.config.device.name == name
    assert record.config.speed.precision in ("bf16", "fp16", "fp32")
    assert set(record.metrics) >= {"mse", "classifier_accuracy"}
    assert all(math.isfinite(value) for value in record.metrics.values())
    for stat in ("train_seconds", "eval_seconds", "images_per_second"):
        assert math.isfinite(record.stats[stat]) and record.stats[stat] > 0, stat
    assert record.stats["epochs"] == 1
    assert name in result.stdout


def test_the_precision_probe_measures_every_precision_the_gpu_has(tmp_path):
    from aeframe.speed.precision_probe import candidates, choose_precision
    from aeframe.speed.cache import SpeedCache

    name = torch.cuda.get_device_name(GPU)
    choice = choose_precision(GPU, name, SpeedCache(tmp_path))
    expected = ["fp32", "bf16", "fp16"] if torch.cuda.get_device_properties(GPU).major >= 8 else ["fp32", "fp16"]
    assert candidates(GPU) == expected and list(choice.measurements) == expected
    assert choice.precision in expected
    for precision, found in choice.measurements.items():
        assert found.finite and found.images_per_second > 0, (precision, found)
    assert choice.measurements["fp32"].within_tolerance
    assert choose_precision(GPU, name, SpeedCache(tmp_path)).source == "cached"


def test_the_layout_is_measured_on_the_gpu_for_every_phase(tmp_path, cli, registry):
    result = _bench(cli, tmp_path, _with(registry, Probe()), "-t", "progressive-resizing", "-d", TINY,
                    "--epochs", "1", "--precision", "bf16")
    assert result.returncode == 0, result.stderr
    stats = _only_record(tmp_path / "r.sqlite").stats
    assert stats["layout_source"] in ("measured", "measured on a busy machine")
    rates = stats["layout_images_per_second"]
    assert set(rates) == {"contiguous", "channels_last"} and all(r > 0 and math.isfinite(r) for r in rates.values())
    assert stats["memory_format"] == max(rates, key=rates.get)
    assert stats["prepare_seconds"] > 0


def test_a_graphed_cell_computes_what_the_eager_cell_does_with_capture_off_the_clock(tmp_path, cli, registry):
    common = ("-t", "baseline", "-d", TINY, "--epochs", "2", "--precision", "fp32", "--no-channels-last")
    for flag in ("--cuda-graphs", "--no-cuda-graphs"):
        folder = tmp_path / flag.strip("-")
        folder.mkdir()
        result = _bench(cli, folder, registry, *common, flag, graphs=True)
        assert result.returncode == 0, result.stderr
    graphed = _only_record(tmp_path / "cuda-graphs" / "r.sqlite")
    eager = _only_record(tmp_path / "no-cuda-graphs" / "r.sqlite")
    assert graphed.stats["step_mode"] == "graphed", graphed.stats.get("step_reason")
    assert eager.stats["step_mode"] == "eager" and graphed.stats["capture_seconds"] > 0
    assert graphed.stats["steps"] == eager.stats["steps"]
    # Capturable AdamW rounds its bias corrections on the device: the same training up to rounding.
    assert graphed.metrics["mse"] == pytest.approx(eager.metrics["mse"], rel=0.02)
    for mine, theirs in zip(graphed.curve, eager.curve):
        assert mine["train_loss"] == pytest.approx(theirs["train_loss"], rel=0.02)


def test_progressive_resizing_replays_a_graph_at_each_image_size(tmp_path, cli, registry):
    result = _bench(cli, tmp_path, registry, "-t", "progressive-resizing", "-d", TINY, "--epochs", "2",
                    "--precision", "bf16", "--cuda-graphs", graphs=True)
    assert result.returncode == 0, result.stderr
    record = _only_record(tmp_path / "r.sqlite")
    assert record.status == "done" and record.stats["step_mode"] == "graphed", record.stats.get("step_reason")
    assert math.isfinite(record.metrics["mse"]) and record.stats["capture_seconds"] > 0
    assert record.stats["graphs_captured"] == 2  # one per image size, each captured once


def test_the_step_mode_is_measured_per_technique_then_cached(tmp_path, cli, registry):
    args = ("-t", "baseline", "-d", TINY, "--epochs", "1", "--precision", "bf16")
    assert _bench(cli, tmp_path, registry, *args, graphs=True).returncode == 0
    assert _bench(cli, tmp_path, registry, *args, "--seeds", "2", graphs=True).returncode == 0
    first, second = (r.stats for r in _records(tmp_path / "r.sqlite"))
    assert first["step_source"] in ("measured", "measured on a busy machine")
    rates = first["step_images_per_second"]
    assert set(rates) == {"eager", "graphed"} and all(r > 0 and math.isfinite(r) for r in rates.values())
    assert first["step_mode"] == ("graphed" if rates["graphed"] >= 1.05 * rates["eager"] else "eager")
    if first["step_source"] == "measured":
        assert second["step_source"] == "cached" and second["step_mode"] == first["step_mode"]
