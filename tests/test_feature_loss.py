"""The feature-loss technique: the loss against a hand computation, its VGG, weights, composition, a real cell."""
from __future__ import annotations

import copy
import json
import urllib.error
from pathlib import Path

import pytest
import torch
import torchvision
from torch import nn

from aeframe import CellContext, TechniqueUnavailable
from aeframe.cells.budget import Budget
from aeframe.training.cell import run_cell
from aeframe.execution.environment import device_info, versions
from aeframe.errors import SpecError
from conftest import TINY_SHAPES, cell_data, metric_set
from aeframe.planning.plan import plan_cells, resolve_dataset, resolve_technique
from aeframe_builtins.techniques import pretrained
from aeframe_builtins.techniques.feature_loss import RELUS
from aeframe_builtins.techniques.vgg_loss import VGGFeatureLoss, gram_matrix, vgg16_bn_features

CPU = torch.device("cpu")
CHECKPOINT = "vgg16_bn-6c64b313.pth"
SMALL_SHAPES = "shapes[train=256,test=64]"


def context(dataset: str = "shapes", shape=(3, 32, 32), seed: int = 0) -> CellContext:
    return CellContext(shape=shape, dataset=dataset, num_classes=10, seed=seed, device=CPU, data_dir=Path("."),
                       cache_dir=Path("."), load_dataset=lambda text: None)


def with_random_batchnorm(features: nn.Sequential, seed: int) -> nn.Sequential:
    """Give every BatchNorm non-trivial statistics and affine values, so eval and train mode differ."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in features:
            if isinstance(module, nn.BatchNorm2d):
                n = module.num_features
                module.running_mean.copy_(0.2 * torch.randn(n, generator=gen))
                module.running_var.copy_(0.5 + torch.rand(n, generator=gen))
                module.weight.copy_(0.5 + torch.rand(n, generator=gen))
                module.bias.copy_(0.1 * torch.randn(n, generator=gen))
    return features


def expected_loss(features, output, target, layers, weights, gram, pixel) -> float:
    """The study's formula, computed independently in float64, one VGG layer at a time."""
    vgg = copy.deepcopy(features).double().eval()

    def activations(x: torch.Tensor) -> dict[int, torch.Tensor]:
        x = x.double()
        if x.shape[1] == 1:
            x = torch.cat([x, x, x], dim=1)
        seen = {}
        with torch.no_grad():
            for index, layer in enumerate(vgg):
                x = layer(x)
                seen[index] = x.clone()  # torchvision's ReLUs are in-place: keep each layer's own output
        return seen

    def mse(a, b):
        return ((a - b) ** 2).sum() / a.numel()

    def gram_of(f):
        c, h, w = f.shape[1:]
        return torch.einsum("bchw,bdhw->bcd", f, f) / (c * h * w)

    out_acts, target_acts = activations(output), activations(target)
    total = pixel * mse(output.double(), target.double())
    for index, w in zip(layers, weights):
        a, b = out_acts[index], target_acts[index]
        total = total + w * mse(a, b) + gram * w**2 * mse(gram_of(a), gram_of(b))
    return float(total)


@pytest.fixture(scope="module")
def random_vgg():
    """vgg16_bn features up to relu3_3 from seed 7, with random BatchNorm statistics."""
    return with_random_batchnorm(vgg16_bn_features("random", "", seed=7, depth=23), seed=1)


def tiny_pair(channels=3, side=8, seed=3):
    gen = torch.Generator().manual_seed(seed)
    target = torch.rand(2, channels, side, side, generator=gen)
    output = (target + 0.2 * torch.randn(2, channels, side, side, generator=gen)).clamp(0, 1)
    return output, target


def test_relu_indices_are_those_of_torchvision_vgg16_bn():
    with torch.device("meta"):
        features = torchvision.models.vgg16_bn().features
    assert list(RELUS) == [i for i, m in enumerate(features) if isinstance(m, nn.ReLU)]
    assert [RELUS[i] for i in (5, 12, 22)] == ["relu1_2", "relu2_2", "relu3_3"]


def test_random_net_has_torchvisions_init_drawn_from_the_seed():
    state = torch.get_rng_state()
    a = vgg16_bn_features("random", "", seed=7, depth=23)
    assert torch.equal(torch.get_rng_state(), state)  # the cell's own random stream is left alone
    assert torch.equal(vgg16_bn_features("random", "", seed=7, depth=6)[3].weight, a[3].weight)
    assert not torch.equal(vgg16_bn_features("random", "", seed=8, depth=6)[3].weight, a[3].weight)
    conv = a[20]  # 256 x 256 x 3 x 3: Kaiming normal with fan_out = 256 * 9, zero bias
    assert float(conv.weight.detach().std()) == pytest.approx((2 / (256 * 9)) ** 0.5, rel=0.02)
    assert float(conv.weight.detach().mean()) == pytest.approx(0.0, abs=1e-3)
    assert not conv.bias.any()
    bn = a[21]
    assert bn.weight.eq(1).all() and not bn.bias.any() and not bn.running_mean.any() and bn.running_var.eq(1).all()


def test_loss_matches_a_hand_computation_with_the_study_defaults(random_vgg):
    output, target = tiny_pair()
    loss = VGGFeatureLoss(random_vgg, (5, 12, 22), (30.0, 20.0, 10.0))
    want = expected_loss(random_vgg, output, target, (5, 12, 22), (30.0, 20.0, 10.0), gram=5000.0, pixel=1.0)
    assert float(loss(output, target)) == pytest.approx(want, rel=1e-4)


def test_loss_honours_its_parameters_and_layer_order(random_vgg):
    output, target = tiny_pair(seed=4)
    loss = VGGFeatureLoss(random_vgg, (22, 2), (0.5, 2.0), gram=10.0, pixel=3.0)
    want = expected_loss(random_vgg, output, target, (22, 2), (0.5, 2.0), gram=10.0, pixel=3.0)
    assert float(loss(output, target)) == pytest.approx(want, rel=1e-4)
    assert float(loss(target, target)) == 0.0


def test_grey_images_are_compared_as_three_equal_channels(random_vgg):
    output, target = tiny_pair(channels=1)
    loss = VGGFeatureLoss(random_vgg, (5, 12, 22), (30.0, 20.0, 10.0))
    grey = float(loss(output, target))
    assert grey == pytest.approx(float(loss(output.repeat(1, 3, 1, 1), target.repeat(1, 3, 1, 1))), rel=1e-6)
    assert grey == pytest.approx(
        expected_loss(random_vgg, output, target, (5, 12, 22), (30.0, 20.0, 10.0), gram=5000.0, pixel=1.0), rel=1e-4
    )


def test_gradient_reaches_the_output_only(random_vgg):
    loss = VGGFeatureLoss(random_vgg, (5, 12, 22), (30.0, 20.0, 10.0))
    seen = []
    taps = loss.taps
    loss.taps = lambda images: seen.append([f.requires_grad for f in taps(images)]) or taps(images)
    output, target = tiny_pair()
    output.requires_grad_(True)
    loss(output, target).backward()
    assert seen == [[False] * 3, [True] * 3]  # the target's features first, without a graph
    assert output.grad is not None and output.grad.abs().sum() > 0
    assert all(p.grad is None and not p.requires_grad for p in loss.parameters())


def test_vgg_stays_frozen_and_in_eval_mode(random_vgg):
    loss = VGGFeatureLoss(random_vgg, (5, 12, 22), (30.0, 20.0, 10.0))
    loss.train()
    assert loss.training
    assert not any(m.training for m in loss.features.modules())
    before = loss.features[21].running_mean.clone()
    output, target = tiny_pair()
    loss(output, target)
    assert torch.equal(loss.features[21].running_mean, before)
    assert len(loss.features) == 23  # nothing past relu3_3 is run
    assert not any(p.requires_grad for p in loss.features.parameters())


def test_composition_label_model_and_loss(registry):
    comp = resolve_technique("feature-loss[net=random]", registry)
    assert comp.label == "Feature Loss [net=random]"
    assert resolve_technique("feature-loss", registry).label == "Feature Loss"
    assert comp.providers["model"].technique.name == "baseline"
    torch.manual_seed(0)
    built = comp.build(context())
    assert sum(p.numel() for p in built.model.parameters()) == 3_080_629
    assert isinstance(built.loss, VGGFeatureLoss)
    assert (built.loss.layers, built.loss.layer_weights) == ((5, 12, 22), (30.0, 20.0, 10.0))
    assert (built.loss.gram, built.loss.pixel) == (5000.0, 1.0)


@pytest.mark.parametrize("dataset, rate", [("fashion-mnist", 1e-4), ("mnist", 1e-4), ("cifar10", 1e-3), ("shapes", 1e-3)])
def test_second_run_uses_the_studys_rate(registry, dataset, rate):
    torch.manual_seed(0)
    built = resolve_technique("feature-loss[net=random]", registry).build(context(dataset))
    assert [p.max_lr for p in built.schedule.phases] == [3e-3, rate]


def test_the_rate_is_declared_not_set_by_a_schedule_wrapper(registry):
    technique = registry.techniques["feature-loss"]
    assert not technique.wraps("schedule") and not technique.provides("schedule")
    assert technique.learning_rates["run 2"].on("mnist") == 1e-4
    chosen = resolve_technique("feature-loss[net=random,lr=3e-4]", registry).build(context("mnist"))
    assert chosen.schedule.phases[1].max_lr == 3e-4


def test_native_grey_mnist_builds_and_trains_through_vgg(registry):
    torch.manual_seed(0)
    built = resolve_technique("feature-loss[net=random]", registry).build(context("mnist", shape=(1, 28, 28)))
    images = torch.rand(2, 1, 28, 28)
    out = built.model(images)
    built.loss(out, images).backward()
    assert all(p.grad is not None for p in built.model.parameters() if p.requires_grad)


@pytest.mark.parametrize("text, message", [
    ("feature-loss[layers=5,12]", "layers has 2 entries but layer_weights has 3; give one weight per layer"),
    ("feature-loss[layers=5,13,23]", r"layers 13, 23 are not a ReLU of vgg16_bn.features; choose from 2 \(relu1_1\)"),
    ("feature-loss[net=random,weights=vgg.pth]", "weights=PATH gives trained VGG weights and net=random an untrained"),
    ("feature-loss[net=alexnet]", "net=alexnet is not allowed; choose one of imagenet, random"),
])
def test_inconsistent_parameters_are_refused(registry, text, message):
    with pytest.raises(SpecError, match=f"technique feature-loss: {message}"):
        resolve_technique(text, registry)


@pytest.fixture
def empty_hub(tmp_path, monkeypatch):
    """A hub cache with nothing in it, and downloads that fail at once without touching the network."""
    cache = tmp_path / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(pretrained, "hub_checkpoints", lambda: cache)

    def offline(url, *args, **kwargs):
        raise urllib.error.URLError("no network in tests")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    return cache


def run_one_cell(registry, workspace, technique, dataset=SMALL_SHAPES, budget=Budget(epochs=1)):
    comp = resolve_technique(technique, registry)
    choice = resolve_dataset(dataset, registry)
    cell = plan_cells([comp], [choice], 1, budget, device_info(CPU), versions(), registry)[0]
    data = cell_data(choice.label, registry)
    return run_cell(cell, data, metric_set(registry), CPU, workspace, registry)


def test_missing_imagenet_weights_skip_the_cell_with_the_way_out(registry, workspace, empty_hub):
    record = run_one_cell(registry, workspace, "feature-loss")
    assert record.status == "skipped"
    for needed in (CHECKPOINT, str(empty_hub), "weights=PATH", "feature-loss[net=random]", "URLError"):
        assert needed in record.error


def saved_features(seed: int) -> nn.Sequential:
    return with_random_batchnorm(vgg16_bn_features("random", "", seed=seed), seed=seed)


def test_checkpoint_in_the_hub_cache_is_loaded(registry, empty_hub):
    features = saved_features(seed=11)
    # As torchvision saves a whole model; this checkpoint's era also had no num_batches_tracked.
    state = {f"features.{k}": v for k, v in features.state_dict().items() if not k.endswith("num_batches_tracked")}
    state["classifier.0.weight"] = torch.zeros(2, 2)
    torch.save(state, empty_hub / CHECKPOINT)
    loss = resolve_technique("feature-loss", registry).build(context()).loss
    assert torch.equal(loss.features[0].weight, features[0].weight)
    assert torch.equal(loss.features[21].running_var, features[21].running_var)
    assert not any(t.is_meta for t in [*loss.features.parameters(), *loss.features.buffers()])


def test_weights_path_loads_that_file(registry, tmp_path, empty_hub):
    features = saved_features(seed=12)
    path = tmp_path / "my_vgg.pth"
    torch.save(features[:23].state_dict(), path)  # the features alone, cut after relu3_3
    loss = resolve_technique(f"feature-loss[weights={path}]", registry).build(context()).loss
    assert torch.equal(loss.features[20].weight, features[20].weight)
    assert resolve_technique(f"feature-loss[weights={path}]", registry).label == f"Feature Loss [weights={path}]"


def test_missing_or_foreign_weights_file_is_a_clear_skip(registry, tmp_path, workspace):
    missing = tmp_path / "nowhere.pth"
    with pytest.raises(TechniqueUnavailable, match=f"feature-loss: no weights file at {missing}; .* weights=PATH"):
        resolve_technique(f"feature-loss[weights={missing}]", registry).build(context())
    foreign = tmp_path / "resnet.pth"
    torch.save({"conv1.weight": torch.zeros(1)}, foreign)
    with pytest.raises(TechniqueUnavailable, match=f"{foreign} is not a vgg16_bn state dict"):
        resolve_technique(f"feature-loss[weights={foreign}]", registry).build(context())
    record = run_one_cell(registry, workspace, f"feature-loss[weights={missing}]")
    assert record.status == "skipped" and str(missing) in record.error


def test_a_few_steps_on_shapes_reduce_the_loss(registry, workspace):
    record = run_one_cell(registry, workspace, "feature-loss[net=random]", budget=Budget(epochs=2))
    assert record.status == "done", record.error
    assert record.config.protocol.phases[1].max_lr == [1e-3]
    losses = [e["train_loss"] for e in record.curve]
    assert len(losses) == 2 and losses[-1] < losses[0]


def test_gram_matrices_stay_fp32_under_autocast():
    features = torch.randn(2, 8, 4, 4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        found = gram_matrix(features)
    assert found.dtype == torch.float32
    assert torch.equal(found, gram_matrix(features))


def test_stand_ins_train_the_offline_form_in_place_of_a_technique_that_cannot_run(tmp_path, cli, empty_hub):
    # Without ImageNet weights, feature-loss is skipped; --stand-ins trains feature-loss[net=random] in its
    # place, marked as such, and the run counts as complete.
    # The usual layout: measuring VGG16's in both would cost more than the cells.
    args = ("bench", "-t", "feature-loss", "-t", "baseline", "-d", TINY_SHAPES, "--epochs", "1", "--no-channels-last",
            "--store", "s.sqlite")
    plain = cli(*args, cwd=tmp_path)
    assert plain.returncode == 1 and "Feature Loss [net=random]" not in plain.stdout
    result = cli(*args, "--stand-ins", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "--stand-ins: 1 cells stand in for cells whose techniques cannot run here" in result.stderr
    lines = result.stdout.splitlines()
    assert any(line.startswith("| Feature Loss [net=random] § |") for line in lines)
    note = next(line for line in lines if line.startswith("§ an offline stand-in"))
    assert "Feature Loss [net=random]: its features come from an untrained VGG16-bn, standing in for the " \
           "ImageNet-trained one" in note
    assert "- Feature Loss: skipped (feature-loss needs the ImageNet weights" in result.stdout
    data = json.loads(cli("report", "--store", "s.sqlite", "--format", "json", cwd=tmp_path).stdout)
    # Every table: a loaded machine can measure another speed setting for the second run, which is another table.
    rows = {row["label"]: row for table in data["datasets"][0]["tables"] for row in table["rows"]}
    assert rows["Feature Loss [net=random]"]["stand_in"].startswith("its features come from an untrained VGG16-bn")
    assert "stand_in" not in rows["Baseline"]
    # The stand-in is stored like any cell: the same command takes it from the store.
    again = cli(*args, "--stand-ins", cwd=tmp_path)
    assert again.returncode == 0 and "1 of 1 cells already done in s.sqlite" in again.stderr
