from dataclasses import replace

import pytest
import torch

from aeframe.contract.output import reconstruction
from aeframe.errors import SpecError
from aeframe.planning.plan import pairs_of, resolve_dataset, resolve_technique
from aeframe.store.sqlite_store import Store
from aeframe.training.train import _Phases

from conftest import TINY_SHAPES, registry_with
from techniques import build, context, train_cell


def output_sizes(built, side=32):
    """The model's output side at the start of each phase, fed that phase's image size."""
    sizes = []
    state = _Phases(built.schedule, built.model)
    for i, phase in enumerate(built.schedule.phases):
        state.enter(i)
        size = phase.image_size or side
        sizes.append((size, reconstruction(built.model(torch.rand(2, 3, size, size))).shape[-1]))
    return sizes


def test_study_phases_train_at_16_then_32_with_the_last_upsample_as_identity(registry):
    built = build("progressive-resizing", registry)
    assert [p.image_size for p in built.schedule.phases] == [16, None]
    assert [p.fraction for p in built.schedule.phases] == pytest.approx([1 / 3, 2 / 3])
    assert output_sizes(built) == [(16, 16), (32, 32)]
    up1, up2 = built.model.decoder[2], built.model.decoder[3]
    assert (up1.scale, up2.scale) == (2, 2)
    assert sum(p.numel() for p in built.model.parameters()) == 3_080_629  # no new layer, no new parameter


def test_optimizer_is_kept_across_the_resize(registry):
    built = build("progressive-resizing", registry)
    state = _Phases(built.schedule, built.model)
    state.enter(0)
    first = state.optimizer
    state.enter(1)
    assert state.optimizer is first


@pytest.mark.parametrize("dataset, rate", [("mnist", 1.74e-4), ("fashion-mnist", 1.74e-4), ("cifar10", 1e-3), ("shapes", 1e-3)])
def test_second_run_rate_is_the_studys(registry, dataset, rate):
    assert build("progressive-resizing", registry, dataset=dataset).schedule.phases[1].lrs() == [rate]


def test_the_rate_is_declared_and_wrap_schedule_leaves_rates_alone(registry):
    from aeframe import study_schedule

    technique = registry.techniques["progressive-resizing"]
    assert technique.learning_rates["run 2"].on("mnist") == 1.74e-4
    ctx = replace(context(dataset="mnist"), params={"sizes": (16, 32)})
    schedule = technique.wrap_schedule(study_schedule(second_lr=5e-4), ctx)
    assert [p.lrs() for p in schedule.phases] == [[3e-3], [5e-4]]
    assert [p.image_size for p in schedule.phases] == [16, None]


def test_other_sizes_and_native_mnist(registry):
    built = build("progressive-resizing[sizes=8,32]", registry)
    assert output_sizes(built) == [(8, 8), (32, 32)]
    native = build("progressive-resizing", registry, shape=(1, 28, 28), dataset="mnist")
    assert [p.image_size for p in native.schedule.phases] == [14, None]


def test_composes_with_pixel_shuffle(registry):
    built = build("progressive-resizing+pixel-shuffle", registry)
    assert sum(p.numel() for p in built.model.parameters()) == 3_079_042
    assert output_sizes(built) == [(16, 16), (32, 32)]
    assert resolve_technique("progressive-resizing+pixel-shuffle", registry).label == "Progressive Resizing + Pixel Shuffle"


@pytest.mark.parametrize("sizes, message", [("32,16", "must be positive and increasing"), ("0,32", "must be positive")])
def test_bad_sizes_are_refused_before_running(registry, sizes, message):
    with pytest.raises(SpecError, match=f"technique progressive-resizing: sizes=.* {message}"):
        resolve_technique(f"progressive-resizing[sizes={sizes}]", registry)


def test_sizes_that_cannot_be_reached_fail_with_the_reason(registry):
    with pytest.raises(ValueError, match="progressive-resizing: the last of sizes=8,16 must be the images' side, 32"):
        build("progressive-resizing[sizes=8,16]", registry)
    with pytest.raises(ValueError, match="3 sizes for a schedule of 2 phases"):
        build("progressive-resizing[sizes=8,16,32]", registry)
    with pytest.raises(ValueError, match="size 12 of sizes=12,32 is not the side 32 halved"):
        build("progressive-resizing[sizes=12,32]", registry)


def test_training_records_the_small_phase_at_its_size_and_ends_at_full_size(registry, workspace):
    record = train_cell("progressive-resizing", registry, workspace)
    assert record.status == "done"
    assert record.config.protocol.phases[0].image_size == 16
    assert [e["phase"] for e in record.curve] == ["run 1", "run 2", "run 2"]
    assert record.curve[-1]["train_loss"] < record.curve[0]["train_loss"]
    assert record.metrics["mse"] == pytest.approx(record.curve[-1]["test_mse"], rel=1e-6)


# -- models whose output follows the input, and models it cannot shrink --------------------------------


@pytest.mark.parametrize("name", ["vae", "vq-vae"])
def test_a_fully_convolutional_model_is_fed_the_small_images_as_it_is(registry, name):
    # Their output follows the input's side, so nothing is shrunk (they have no settable scale to shrink).
    built = build(f"{name}+progressive-resizing", registry)
    assert [p.image_size for p in built.schedule.phases] == [16, None]
    assert output_sizes(built) == [(16, 16), (32, 32)]


def test_the_probe_leaves_batchnorm_statistics_and_the_training_mode_alone(registry):
    built = build("progressive-resizing", registry)
    before = {k: v.clone() for k, v in built.model.state_dict().items()}
    built.model.train()
    _Phases(built.schedule, built.model).enter(0)
    assert built.model.training
    assert all(torch.equal(before[k], v) for k, v in built.model.state_dict().items())


@pytest.mark.parametrize("name", ["vae", "vq-vae"])
def test_bench_trains_the_vaes_with_progressive_resizing(cli, tmp_path, name):
    result = cli("bench", "-t", f"{name}+progressive-resizing", "-d", TINY_SHAPES, "--epochs", "3",
                 "--no-channels-last", "--precision", "fp32", "--store", "r.sqlite", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    with Store(tmp_path / "r.sqlite", write=False) as store:
        (record,) = store.records()
    assert record.status == "done", record.error
    assert record.config.protocol.phases[0].image_size == 16
    assert [e["phase"] for e in record.curve] == ["run 1", "run 2", "run 2"] and 0 < record.metrics["mse"] < 1


def test_a_model_whose_output_cannot_be_made_small_is_refused_at_planning_naming_both(cli, tmp_path):
    # 28x28 images: the first phase's 14x14 come out of the VAE's quarter grid as 12x12.
    result = cli("bench", "-t", "vae+progressive-resizing", "-d", "fashion-mnist[view=native]", "--epochs", "1",
                 "--store", "r.sqlite", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        "Error: cannot combine progressive-resizing and vae on fashion-mnist[view=native]: fed 14x14 images, the "
        "model's output is 12x12, which no number of halvings makes 14x14 (found when planning; nothing was trained)")
    assert not (tmp_path / "r.sqlite").exists()


def test_a_third_party_model_without_a_settable_scale_is_refused_at_planning(cli, tmp_path):
    registry = registry_with("resizing_techniques")
    result = cli("bench", "-t", "fixed-side+progressive-resizing", "-d", TINY_SHAPES, "--epochs", "1",
                 "--store", "r.sqlite", cwd=tmp_path, registry=registry)
    assert result.returncode == 2
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("Error: ")]
    assert line == (
        f"Error: cannot combine progressive-resizing and fixed-side on {TINY_SHAPES}: the model's output keeps its "
        "side whatever the input's; shrinking it 2x takes 1 upsampling block(s) with a settable integer `scale` "
        "attribute, and the model has 0 (found when planning; nothing was trained)")
    assert "Traceback" not in result.stderr and not (tmp_path / "r.sqlite").exists()
    # Alone it trains: the refusal is the combination's.
    alone = cli("bench", "-t", "fixed-side", "-d", TINY_SHAPES, "--epochs", "1", "--precision", "fp32",
                "--store", "r.sqlite", cwd=tmp_path, registry=registry)
    assert alone.returncode == 0, alone.stderr


IGNORED_SCALE = ("fed 16x16 images, the model's output is 32x32 with its last 1 upsampling block(s) at scale 1: "
                 "their `scale` attribute does not set their upsampling")


def test_a_scale_attribute_that_sets_nothing_stops_the_phase_not_the_loss():
    # The phase start checked nothing after setting the scales: the cell went on to fail in the loss, on
    # a 32x32 output against 16x16 images, where planning could not look (a model without meta kernels).
    registry = registry_with("resizing_techniques")
    built = build("ignored-scale+progressive-resizing", registry)
    with pytest.raises(ValueError) as stopped:
        _Phases(built.schedule, built.model).enter(0)
    assert str(stopped.value) == f"progressive-resizing: {IGNORED_SCALE}"


def test_a_scale_attribute_that_sets_nothing_is_refused_at_planning(cli, tmp_path):
    result = cli("bench", "-t", "ignored-scale+progressive-resizing", "-d", TINY_SHAPES, "--epochs", "1",
                 "--store", "r.sqlite", cwd=tmp_path, registry=registry_with("resizing_techniques"))
    assert result.returncode == 2
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("Error: ")]
    assert line == (f"Error: cannot combine progressive-resizing and ignored-scale on {TINY_SHAPES}: {IGNORED_SCALE} "
                    "(found when planning; nothing was trained)")


def test_combinations_leave_out_a_pair_that_cannot_work_on_a_dataset_of_the_run(registry):
    native = resolve_dataset("fashion-mnist[view=native]", registry)
    pairs, refused = pairs_of(["vae", "progressive-resizing", "pixel-shuffle"], registry, datasets=[native])
    assert [p.label for p in pairs] == ["Progressive Resizing + Pixel Shuffle"]
    reasons = dict(refused)
    assert "fed 14x14 images, the model's output is 12x12" in reasons["vae+progressive-resizing"]
    assert "both provide the model" in reasons["vae+pixel-shuffle"]


def test_validate_reports_the_refusal_once_as_a_composition_error(cli, tmp_path):
    result = cli("validate", "vae+progressive-resizing", cwd=tmp_path)
    assert result.returncode == 1
    lines = [line for line in result.stdout.splitlines() if line.startswith(("PASS ", "FAIL ", "SKIP "))]
    failed = [line for line in lines if line.startswith("FAIL ")]
    assert len(failed) == 1 and "its techniques combine" in failed[0]
    assert "fed 14x14 images, the model's output is 12x12" in result.stdout
