"""Speed settings: --precision, --channels-last, --compile; their resolution, records, keys and costs."""
from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from aeframe.cells.budget import Budget
from aeframe.training.cell import run_cell
from aeframe.execution.environment import device_info, versions
from aeframe.errors import UsageProblem
from aeframe.speed.numerics import SpeedModel, speed_model
from aeframe.cells.spec import cell_key
from aeframe.planning.plan import plan_cells, resolve_dataset, resolve_technique
from aeframe.cells.record import CellConfig
from aeframe.cells.settings import MEASURED, Speed
from aeframe.speed.resolve import compile_requirement, resolve_speed

from conftest import cell_data, metric_set

CPU = torch.device("cpu")
TINY = "shapes[train=256,test=64]"


@pytest.fixture(scope="module")
def tiny_data(registry):
    return cell_data(TINY, registry)


def one_cell(registry, speed=None, technique="baseline"):
    comp = resolve_technique(technique, registry)
    dataset = resolve_dataset(TINY, registry)
    return plan_cells([comp], [dataset], 1, Budget(epochs=1), device_info(CPU), versions(), registry, speed=speed)[0]


def test_auto_asks_the_measurement_and_leaves_the_layout_to_each_cell():
    asked = []
    speed = resolve_speed("auto", None, False, CPU, lambda device: asked.append(device) or "bf16")
    assert asked == [CPU]
    assert speed == Speed("bf16", None, False, MEASURED) and speed.tuned_layout
    # Explicit choices are taken as given: nothing is measured.
    assert resolve_speed("fp32", True, False, CPU, lambda device: pytest.fail("measured")) == Speed("fp32", True)


def test_bf16_on_a_gpu_without_it_is_refused(monkeypatch):
    # A V100 (compute capability 7.0): torch.cuda.is_bf16_supported() says yes there (emulation).
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda *a, **k: SimpleNamespace(major=7, minor=0))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a, **k: "an old GPU")
    with pytest.raises(UsageProblem, match="an old GPU has no bf16 support; use --precision fp16 or fp32"):
        resolve_speed("bf16", None, False, torch.device("cuda", 0))


def test_explicit_choices_are_kept_and_unknown_ones_refused():
    assert resolve_speed("fp16", False, False, CPU) == Speed("fp16", False, False)
    with pytest.raises(UsageProblem, match="unknown precision 'fp8'"):
        resolve_speed("fp8", None, False, CPU)


def test_compile_without_a_compiler_is_refused_with_what_is_missing(monkeypatch):
    monkeypatch.delenv("CXX", raising=False)
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(UsageProblem, match=r"--compile needs a C\+\+ compiler \(g\+\+ or clang\+\+ or c\+\+ on PATH"):
        resolve_speed("fp32", False, True, CPU)


def test_compile_for_a_gpu_needs_triton_and_a_c_compiler_for_its_launchers(monkeypatch):
    import torch.utils._triton

    monkeypatch.setattr(torch.utils._triton, "has_triton", lambda: True)
    monkeypatch.delenv("CC", raising=False)
    monkeypatch.setenv("PATH", "/nonexistent")
    assert compile_requirement(torch.device("cuda", 0)) == (
        "a C compiler for Triton's launchers (gcc or clang or cc on PATH, e.g. `apt-get install gcc`)")
    monkeypatch.setattr(torch.utils._triton, "has_triton", lambda: False)
    assert compile_requirement(torch.device("cuda", 0)) == "Triton (the `triton` package) to compile for the GPU"


@pytest.mark.parametrize(
    "args, message",
    [
        (["--precision", "fp8"], "Invalid value for '--precision': 'fp8' is not one of 'auto', 'fp32', 'bf16', 'fp16'"),
        (["--compile"], "--compile needs a C++ compiler"),
    ],
)
def test_bad_speed_options_exit_2_with_one_line(tmp_path, cli, args, message):
    # An empty PATH leaves no compiler to find; the first case fails before it matters.
    result = cli("bench", "-t", "baseline", "-d", TINY, *args, "--store", "r.sqlite", cwd=tmp_path,
                 env={"PATH": str(tmp_path), "CXX": ""})
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "r.sqlite").exists()


def test_keys_differ_by_speed_settings_and_plain_fp32_keeps_the_old_key(registry):
    def key(speed=None):
        return one_cell(registry, speed).keyed("0123456789abcdef").key

    plain = one_cell(registry).keyed("0123456789abcdef")
    keys = {plain.key} | {key(s) for s in (Speed("bf16"), Speed("fp16"), Speed("fp32", True), Speed("fp32", False, True),
                                           Speed("fp32", None))}
    assert len(keys) == 6
    # How the precision was decided does not change the numbers: the same key.
    assert key(Speed("bf16", precision_from=MEASURED)) == key(Speed("bf16"))
    # Cells stored before the settings existed have no such fields; their key must not change.
    old = {k: v for k, v in plain.config.to_json().items() if k not in ("precision", "channels_last", "compile")}
    assert cell_key(CellConfig.from_json(old)) == plain.key
    assert one_cell(registry, Speed("bf16", True)).config.speed.precision == "bf16"


def test_speed_model_takes_fp32_gives_fp32_in_the_usual_layout(registry):
    from techniques import build

    model = speed_model(build("baseline", registry).model, Speed("bf16", True), CPU)
    assert isinstance(model, SpeedModel)
    assert model.model.encoder[0][0].weight.is_contiguous(memory_format=torch.channels_last)
    out = model(torch.rand(2, 3, 32, 32))
    assert out.dtype == torch.float32 and out.is_contiguous() and out.shape == (2, 3, 32, 32)
    plain = build("baseline", registry).model
    assert speed_model(plain, Speed(), CPU) is plain


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_lower_precision_cells_train_to_finite_metrics(registry, tiny_data, workspace, precision):
    record = run_cell(one_cell(registry, Speed(precision, True)), tiny_data, metric_set(registry), CPU,
                      workspace, registry)
    assert record.status == "done", record.error
    assert record.config.speed == Speed(precision, channels_last=True)
    assert all(math.isfinite(v) for v in record.metrics.values())
    assert 0 < record.metrics["mse"] < 0.5
    assert record.samples.reconstructions.dtype == torch.uint8


def test_compiled_cell_trains_as_the_eager_one_and_keeps_compile_time_off_the_clock(
        registry, tiny_data, workspace, monkeypatch):
    import aeframe.training.clock
    import aeframe.speed.numerics
    import aeframe.training.train

    # A fake clock that moves 1 s per reading, and a warm-up that "takes" 1000 s of it: if the
    # warm-up were on the training clock, train_seconds would exceed 1000.
    now = [0.0]

    def tick():
        now[0] += 1.0
        return now[0]

    monkeypatch.setattr(aeframe.training.clock.time, "perf_counter", tick)
    real_warm_up = aeframe.training.train.warm_up

    def slow_warm_up(*args, **kwargs):
        real_warm_up(*args, **kwargs)
        now[0] += 1000.0
        return 1000.0

    monkeypatch.setattr(aeframe.training.train, "warm_up", slow_warm_up)
    # Dynamo's graph capture with the eager backend: the compile path without minutes of C++ builds.
    monkeypatch.setattr(aeframe.speed.numerics, "compiled", lambda model: torch.compile(model, backend="eager"))
    monkeypatch.setattr(aeframe.training.cell, "compiled", aeframe.speed.numerics.compiled)
    metrics = metric_set(registry)
    compiled = run_cell(one_cell(registry, Speed("fp32", False, True)), tiny_data, metrics, CPU, workspace, registry)
    assert compiled.status == "done", compiled.error
    assert compiled.stats["compile_seconds"] == 1000.0
    assert compiled.stats["train_seconds"] < 1000
    eager = run_cell(one_cell(registry), tiny_data, metrics, CPU, workspace, registry)
    assert "compile_seconds" not in eager.stats
    # The warm-up's forward and backward left no trace: weights, BatchNorm statistics, random draws.
    assert compiled.metrics == eager.metrics
    assert [e["train_loss"] for e in compiled.curve] == [e["train_loss"] for e in eager.curve]


def test_bf16_bench_shows_its_precision_in_the_report(tmp_path, cli):
    result = cli("bench", "-t", "baseline", "-d", TINY, "--epochs", "1", "--precision", "bf16",
                 "--no-channels-last", "--store", "r.sqlite", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    note = result.stdout.splitlines()[-1]
    assert note.startswith("Budget: 1 epoch per cell") and " · Precision: bf16 · " in note
    assert "precision bf16, channels_last off, compile off" in result.stderr


def test_the_versions_name_torchvision_without_importing_it():
    # Importing torchvision costs 1.5-2 s (it loads torch._dynamo): every run and every Ray worker paid
    # it just to read a version number, where no plugin of the run used torchvision.
    import subprocess
    import sys

    import torchvision

    code = ("import sys; from aeframe.execution.environment import versions; found = versions(); "
            "print(found['torchvision'], 'torchvision' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == [torchvision.__version__.split("+")[0], "False"]
    assert versions()["torchvision"] == torchvision.__version__.split("+")[0]
