"""Metrics per cell: fresh copies, ``prepare`` once per dataset, running state on the batch's device,
and metrics written against the 0.1 contract (state on ``self``) still working unchanged."""
from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from aeframe import CellContext, MeanMetric, Metric, RunningMean
from aeframe.training.metric_set import MetricSet
from aeframe.registry.plugins import Registry
from aeframe.store.sqlite_store import Store
from conftest import TINY_SHAPES

CPU = torch.device("cpu")
META = torch.device("meta")


def batches(seed: int, n: int = 3, size: int = 12) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """``n`` fixed (recon, target, labels) batches of 3x32x32 images in [0, 1], 10 classes."""
    gen = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        target = torch.rand(size, 3, 32, 32, generator=gen)
        recon = (target + 0.1 * torch.randn(target.shape, generator=gen)).clamp(0, 1)
        out.append((recon, target, torch.randint(0, 10, (size,), generator=gen)))
    return out


def one_cell(metric: Metric, data, context=None) -> float:
    metric.start(context)
    for recon, target, labels in data:
        metric.update(recon, target, labels)
    return metric.result()


def bare_context(device: torch.device = CPU, spec: str = "toy") -> CellContext:
    return CellContext(shape=(3, 32, 32), dataset="toy", num_classes=10, seed=0, device=device, data_dir=Path("."),
                       cache_dir=Path("."), load_dataset=lambda text: None, dataset_spec=spec)


# Written exactly as docs/metrics.md told third parties to write metrics in aeframe 0.1: the base's
# running `_sum` / `_count`, moved to the batch's device by hand, and state prepared on `self`.
class LegacyMAE(Metric):
    name, title, better, format = "legacy-mae", "Legacy MAE", "lower", ".6f"
    prepared_for: list[str] = []  # class-level: every copy appends to the same list

    def prepare(self, context):
        LegacyMAE.prepared_for.append(context.dataset_spec)
        self._dataset = context.dataset_spec

    def update(self, recon, target, labels):
        self._sum = self._sum.to(recon.device) + (recon - target).abs().sum(dtype=torch.float64)
        self._count += recon.numel()

    def details(self):
        return {"about": f"prepared for {self._dataset}"}


# docs/metrics.md's example in aeframe 0.1, verbatim: its own start/result.
class WorstImageMSE(Metric):
    """The largest per-image MSE on the test split."""

    name, title, better, format = "worst-mse", "Worst MSE", "lower", ".6f"

    def start(self, context):
        self._worst = torch.zeros((), dtype=torch.float64)

    def update(self, recon, target, labels):
        per_image = (recon.double() - target.double()).square().flatten(1).mean(1)
        self._worst = torch.maximum(self._worst.to(per_image.device), per_image.max())

    def result(self):
        return float(self._worst)


@pytest.fixture(autouse=True)
def _fresh_legacy_log():
    LegacyMAE.prepared_for = []


# ---------------------------------------------------------------- the helpers


def test_running_mean_keeps_a_float64_sum_on_the_device_of_its_values():
    running = RunningMean()
    assert running.read() == 0.0 and running.total is None
    running.add(torch.tensor([1.0, 2.0], device=META))
    assert running.total.device == META and running.total.dtype == torch.float64 and running.count == 2

    running = RunningMean()
    running.add(torch.tensor([[1.0, 2.0], [3.0, 4.0]]))
    running.add(torch.tensor([True, False]))  # booleans count as 0 and 1: a running rate
    assert running.total.device == CPU and running.count == 6
    assert running.read() == 11 / 6 and isinstance(running.read(), float)


def test_a_mean_metric_needs_only_values():
    class MeanRecon(MeanMetric):
        name, title, better, format = "mean-recon", "Mean", "lower", ".3f"

        def values(self, recon, target, labels):
            return recon.flatten(1).mean(1)  # one entry per image: images weigh the same

    metric = MeanRecon()
    metric.start(None)
    metric.update(torch.zeros(3, 1, 2, 2), None, None)
    metric.update(torch.ones(1, 1, 4, 4), None, None)
    assert metric.result() == 0.25


@pytest.mark.parametrize("name", ["mae", "mse", "psnr", "ssim"])
def test_builtin_running_state_stays_on_the_batch_device(registry, name):
    [metric] = MetricSet([registry.metrics[name]]).for_cell(bare_context(META))
    metric.start(bare_context(META))
    target = torch.empty(2, 3, 32, 32, device=META)
    metric.update(target, target, torch.empty(2, dtype=torch.long, device=META))
    assert metric.running.total.device == META  # nothing was moved to the host, so nothing waited


def test_the_legacy_running_sum_starts_on_the_cells_device():
    metric = LegacyMAE()
    metric.start(bare_context(META))
    assert metric._sum.device == META and metric._sum.dtype == torch.float64 and metric._count == 0
    metric.start(None)  # called by hand, as 0.1's docs did in tests
    assert metric._sum.device == CPU


# ---------------------------------------------------------------- same numbers as before


def _old_style(per_batch_sum, per_batch_count):
    """A metric accumulated the way aeframe 0.1's built-ins did (base `_sum` moved per batch)."""

    class Old(Metric):
        name, title, better, format = "old", "Old", "lower", ".6f"

        def update(self, recon, target, labels):
            self._sum = self._sum.to(recon.device) + per_batch_sum(recon, target)
            self._count += per_batch_count(recon)

    return Old()


def test_builtin_values_are_exactly_those_of_the_old_accumulation(registry):
    from aeframe_builtins.metrics.image_metrics import ssim_per_image

    def psnr(r, t):
        mse = (r.double() - t.double()).square().flatten(1).mean(1)
        return -10.0 * torch.log10(mse.clamp_min(1e-10))

    old = {
        "mae": _old_style(lambda r, t: (r - t).abs().sum(dtype=torch.float64), lambda r: r.numel()),
        "mse": _old_style(lambda r, t: (r - t).square().sum(dtype=torch.float64), lambda r: r.numel()),
        "psnr": _old_style(lambda r, t: psnr(r, t).sum(), lambda r: r.shape[0]),
        "ssim": _old_style(lambda r, t: ssim_per_image(r, t).sum(), lambda r: r.shape[0]),
    }
    data = batches(0)
    for name, reference in old.items():
        [metric] = MetricSet([registry.metrics[name]]).for_cell(bare_context())
        assert one_cell(metric, data) == one_cell(reference, data), name


# ---------------------------------------------------------------- cells never share state


def _interleaved(metrics_a: list[Metric], metrics_b: list[Metric], data_a, data_b, context) -> tuple[dict, dict]:
    """Two cells evaluated at once: start A, start B, then A's and B's batches alternately."""
    for metric in (*metrics_a, *metrics_b):
        metric.start(context)
    for (ra, ta, la), (rb, tb, lb) in zip(data_a, data_b):
        for metric in metrics_a:
            metric.update(ra, ta, la)
        for metric in metrics_b:
            metric.update(rb, tb, lb)
    return {m.name: m.result() for m in metrics_a}, {m.name: m.result() for m in metrics_b}


def test_two_cells_evaluated_at_once_get_the_values_of_two_cells_in_turn(registry, workspace):
    data = workspace.load_dataset(TINY_SHAPES)
    context = replace(bare_context(), shape=data.shape, load_dataset=workspace.load_dataset, dataset_spec=TINY_SHAPES,
                      cache_dir=workspace.cache_dir)
    metrics = MetricSet([*registry.metrics.values(), LegacyMAE(), WorstImageMSE()])
    images = data.test.images[:48].float() / 255
    labels = data.test.labels[:48]
    data_a = [(images[i:i + 16], images[i:i + 16], labels[i:i + 16]) for i in range(0, 48, 16)]
    blurred = torch.nn.functional.avg_pool2d(images, 3, stride=1, padding=1)
    data_b = [(blurred[i:i + 16], images[i:i + 16], labels[i:i + 16]) for i in range(0, 48, 16)]

    in_turn_a = {m.name: one_cell(m, data_a, context) for m in metrics.for_cell(context)}
    in_turn_b = {m.name: one_cell(m, data_b, context) for m in metrics.for_cell(context)}
    together_a, together_b = _interleaved(metrics.for_cell(context), metrics.for_cell(context), data_a, data_b, context)

    assert together_a == in_turn_a and together_b == in_turn_b
    assert in_turn_a != in_turn_b  # the two cells really differ, so mixing them up would show
    assert LegacyMAE.prepared_for == [TINY_SHAPES]  # once for the four cells of this dataset


def test_prepare_runs_once_per_dataset_and_device_and_its_result_is_shared():
    class Prepared(MeanMetric):
        name, title, better, format = "prepared", "Prepared", "lower", ".3f"
        calls: list[tuple[str, str]] = []

        def prepare(self, context):
            Prepared.calls.append((context.dataset_spec, str(context.device)))
            return {"offset": len(Prepared.calls)}

        def values(self, recon, target, labels):
            return recon.flatten() + self.prepared["offset"]

    prototype = Prepared()
    metrics = MetricSet([prototype])
    a, b = bare_context(spec="a"), bare_context(spec="b")
    cells = [metrics.for_cell(context)[0] for context in (a, a, b, a, b, bare_context(META, spec="a"))]
    assert Prepared.calls == [("a", "cpu"), ("b", "cpu"), ("a", "meta")]
    assert len({id(m) for m in cells}) == 6 and prototype not in cells
    assert cells[0].prepared is cells[1].prepared is cells[3].prepared  # shared, not copied
    assert cells[2].prepared == {"offset": 2}
    assert prototype.prepared is None and not hasattr(prototype, "running")


def test_a_legacy_metric_keeps_each_datasets_prepared_state_apart():
    metrics = MetricSet([LegacyMAE()])
    first, second = metrics.for_cell(bare_context(spec="a"))[0], metrics.for_cell(bare_context(spec="b"))[0]
    third = metrics.for_cell(bare_context(spec="a"))[0]
    assert [first._dataset, second._dataset, third._dataset] == ["a", "b", "a"]
    assert LegacyMAE.prepared_for == ["a", "b"]


def test_a_failed_prepare_is_tried_again_by_the_next_cell():
    class Flaky(LegacyMAE):
        name = "flaky"
        tries = 0

        def prepare(self, context):
            Flaky.tries += 1
            if Flaky.tries == 1:
                raise OSError("disk full")

    metrics = MetricSet([Flaky()])
    with pytest.raises(OSError):
        metrics.for_cell(bare_context())
    assert metrics.for_cell(bare_context())[0].name == "flaky" and Flaky.tries == 2


# ---------------------------------------------------------------- through aeframe bench


def test_old_style_third_party_metrics_work_through_bench(registry, cli, tmp_path):
    legacy = Registry(executors=registry.executors, techniques=registry.techniques, datasets=registry.datasets,
                      metrics={"mae": registry.metrics["mae"], "legacy-mae": LegacyMAE(), "worst-mse": WorstImageMSE()})
    datasets = ["-d", "shapes[train=256,test=64]", "-d", "shapes[train=256,test=64,seed=1]"]
    result = cli("bench", "-t", "baseline", *datasets, "--seeds", "2", "--epochs", "1", "--no-channels-last",
                 "--store", "r.sqlite", cwd=tmp_path, registry=legacy)
    assert result.returncode == 0, result.stderr
    header = next(line for line in result.stdout.splitlines() if line.startswith("| Method"))
    assert [c.strip() for c in header.split("|")[2:5]] == ["MAE", "Legacy MAE", "Worst MSE"]
    # Four cells, two datasets: prepared twice, each cell with its own dataset's state.
    assert LegacyMAE.prepared_for == ["shapes[train=256,test=64]", "shapes[train=256,test=64,seed=1]"]
    with Store(tmp_path / "r.sqlite", write=False) as store:
        records = store.records()
    assert [r.status for r in records] == ["done"] * 4
    for record in records:
        assert record.metrics["legacy-mae"] == record.metrics["mae"] > 0  # the same sum, kept the old way
        assert record.metrics["worst-mse"] > 0
        seeded = str(record.config.dataset.params["seed"]) == "1"
        spec = "shapes[train=256,test=64,seed=1]" if seeded else "shapes[train=256,test=64]"
        assert record.stats["metric_details"]["legacy-mae"]["about"] == f"prepared for {spec}"


# ---------------------------------------------------------------- imports


def test_metric_modules_import_without_torch():
    modules = ["aeframe.contract.metric", "aeframe.training.metric_set", "aeframe_builtins.metrics.pixel_metrics",
               "aeframe_builtins.metrics.image_metrics", "aeframe_builtins.metrics.classifier_accuracy"]
    code = (f"import sys\nfor m in {modules!r}:\n    __import__(m)\n"
            "loaded = sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.'))\n"
            "assert not loaded, loaded\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


# ---------------------------------------------------------------- the documented examples


def _doc_metrics(page: str, section: str) -> list[Metric]:
    """The metrics registered by the python blocks of ``section`` of ``docs/page``, executed as written."""
    import re

    text = (Path(__file__).resolve().parent.parent / "docs" / page).read_text()
    start = text.index(section)
    level = len(section) - len(section.lstrip("#"))
    # The section ends at the next heading of its level or higher ("# " is left out: it also starts
    # comment lines in the code blocks, and a page has only one such heading, its title).
    after = re.search(rf"^#{{2,{level}}} ", text[start + len(section):], re.M)
    body = text[start:start + len(section) + after.start()] if after else text[start:]
    found: list[Metric] = []
    for source in re.findall(r"```python\n(.*?)```", body, re.S):
        namespace: dict = {}
        exec(compile(source, f"docs/{page}", "exec"), namespace)
        if "register_metrics" in namespace:
            namespace["register_metrics"](found.append)
    return found


def test_the_documented_metrics_work(registry, workspace):
    documented = (_doc_metrics("plugins.md", "### register_metrics(register)")
                  + _doc_metrics("metrics.md", "## Adding a metric"))
    assert [m.name for m in documented] == ["relative-mse", "edge-mse", "worst-mse"]
    data = workspace.load_dataset(TINY_SHAPES)
    context = replace(bare_context(), shape=data.shape, load_dataset=workspace.load_dataset, dataset_spec=TINY_SHAPES)
    target = data.test.images[:32].float() / 255
    recon = (target + 0.05).clamp(0, 1)
    metrics = MetricSet([*documented, registry.metrics["mse"]])
    values = {m.name: one_cell(m, [(recon[:20], target[:20], None), (recon[20:], target[20:], None)], context)
              for m in metrics.for_cell(context)}
    variance = float(data.test.images.double().div(255).var())
    assert values["relative-mse"] == pytest.approx(values["mse"] / variance, rel=1e-6)
    assert values["worst-mse"] >= values["mse"] > 0 and values["edge-mse"] > 0
