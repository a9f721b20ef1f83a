"""The ResNet34 techniques: "Resnet w/o pretrain" (resnet) and "Pretraining" (pretrained-resnet)."""
from __future__ import annotations

import re
import urllib.error
from dataclasses import replace

import pytest
import torch
from torchvision.models import resnet34

import aeframe_builtins.techniques.resnet_model as rm
import aeframe_builtins.techniques.resnet_weights as rw
from aeframe import ImageData, TechniqueUnavailable
from aeframe.contract.technique import Preparation
from aeframe.errors import CompositionError, SpecError
from aeframe.planning.plan import resolve_technique
from aeframe.training.train import _Phases
from aeframe_builtins.techniques.resnet import STUDY_CHECKPOINT, WEIGHTS_URL, is_path
from aeframe_builtins.datasets.shapes_generator import CLASSES, generate

from techniques import context, train_cell

IMAGENET_FILE = "resnet34-b627a593.pth"
STUDY_RATES = (1e-6, 2.783e-6, 7.743e-6, 2.154e-5, 5.995e-5, 1.668e-4, 4.642e-4, 1.292e-3, 3.594e-3, 1e-2)


def body_of(model) -> dict[str, torch.Tensor]:
    return rm.find_body(model).state_dict()


def same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def fake_imagenet(tmp_path_factory):
    """A hub cache holding a random (but not the model's own) resnet34 under the ImageNet file's name."""
    cache = tmp_path_factory.mktemp("hub") / "checkpoints"
    cache.mkdir()
    torch.manual_seed(123)
    state = resnet34(weights=None).state_dict()
    torch.save(state, cache / IMAGENET_FILE)
    return cache, state


@pytest.fixture
def hub(monkeypatch, fake_imagenet):
    monkeypatch.setattr("aeframe_builtins.techniques.pretrained.hub_checkpoints", lambda: fake_imagenet[0])
    return fake_imagenet


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """An empty hub cache and no network: the ImageNet weights cannot be had."""
    def no_network(*args, **kwargs):
        raise urllib.error.URLError("no network in tests")

    monkeypatch.setattr("aeframe_builtins.techniques.pretrained.hub_checkpoints", lambda: tmp_path)
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_network)
    return tmp_path


def build(technique: str, registry, **ctx_fields):
    """Model, loss and schedule of ``technique`` (a ``-t`` text), built from seed 0."""
    torch.manual_seed(0)
    built = resolve_technique(technique, registry).build(replace(context(), **ctx_fields))
    return built.model, built.loss, built.schedule


def test_model_has_the_studys_parameter_counts_and_shapes():
    model = rm.resnet_autoencoder((3, 32, 32))
    assert sum(p.numel() for p in rm.find_body(model).parameters()) == 21_284_672
    assert sum(p.numel() for p in model.decoder.parameters()) == 1_577_433
    assert model.decoder[0].in_features == 1024
    x = torch.rand(4, 3, 32, 32)
    assert model.encoder(model.normalize(x)).shape == (4, 1024)
    out = model(x)
    assert out.shape == (4, 3, 32, 32) and out.min() >= 0 and out.max() <= 1


def test_native_grey_view_repeats_the_channel_for_the_body():
    model = rm.resnet_autoencoder((1, 28, 28))
    assert isinstance(model.encoder[0], rm.GreyToRGB)
    assert model(torch.rand(2, 1, 28, 28)).shape == (2, 1, 28, 28)


def test_other_channel_counts_skip_the_cell(registry):
    for technique in ("resnet", "pretrained-resnet"):
        with pytest.raises(TechniqueUnavailable, match="grey or RGB images, not 2 channels"):
            build(technique, registry, shape=(2, 32, 32))


@pytest.mark.parametrize("dataset, rate", [("mnist", 1e-4), ("fashion-mnist", 1e-4), ("shapes", 1e-3), ("cifar10", 1e-3)])
def test_resnet_trains_everything_in_one_group_at_the_studys_rates(registry, dataset, rate):
    model, _, schedule = build("resnet", registry, dataset=dataset)
    assert all(p.requires_grad for p in model.parameters())
    assert [p.lrs() for p in schedule.phases] == [[3e-3], [rate]]
    assert schedule.phases[1].param_groups is None and not schedule.phases[1].fresh_optimizer


def test_resnet_declares_its_rate_and_takes_the_baselines_schedule(registry):
    resnet = registry.techniques["resnet"]
    assert resnet.provides("model") and not resnet.provides("schedule") and not resnet.wraps("schedule")
    assert resnet.learning_rates["run 2"].on("mnist") == 1e-4
    assert registry.techniques["pretrained-resnet"].learning_rates["run 2"].on("mnist") == pytest.approx(
        STUDY_RATES, rel=1e-3)


def test_pretrained_body_is_frozen_then_unfrozen_with_ten_groups(registry, hub):
    _, imagenet = hub
    model, _, schedule = build("pretrained-resnet", registry)
    body = rm.find_body(model)
    assert same_weights(body.state_dict(), {k: v for k, v in imagenet.items() if not k.startswith("fc.")})
    assert not any(p.requires_grad for p in body.parameters())
    assert all(p.requires_grad for p in model.decoder.parameters())

    state = _Phases(schedule, model)
    state.enter(0)
    first = state.optimizer
    state.set_rates(0.3)
    assert [g["lr"] for g in first.param_groups] == [pytest.approx(3e-3)]

    state.enter(1)
    assert state.optimizer is not first
    assert all(p.requires_grad for p in model.parameters())
    groups = state.optimizer.param_groups
    expected = [list(getattr(body, name).parameters()) for name in rm.BODY_LAYERS]
    expected += [[], list(model.decoder.parameters())]
    assert [[id(p) for p in g["params"]] for g in groups] == [[id(p) for p in g] for g in expected]
    assert [len(g["params"]) for g in groups] == [1, 2, 0, 0, 18, 27, 39, 21, 0, 14]
    state.set_rates(0.3)
    assert [g["lr"] for g in groups] == pytest.approx(STUDY_RATES, rel=1e-3)


def test_frozen_body_keeps_its_weights_but_batchnorm_statistics_follow_the_data(registry, hub):
    model, loss_fn, schedule = build("pretrained-resnet", registry)
    body = rm.find_body(model)
    before = {k: v.clone() for k, v in body.state_dict().items()}
    decoder_before = model.decoder[0].weight.detach().clone()
    state = _Phases(schedule, model)
    state.enter(0)
    state.set_rates(0.1)
    images = generate(16, 0, "train").images.float() / 255
    model.train()
    loss = loss_fn(model(images), images)
    loss.backward()
    state.optimizer.step()
    after = body.state_dict()
    assert not torch.equal(after["bn1.running_mean"], before["bn1.running_mean"])
    assert not torch.equal(after["layer4.2.bn2.running_var"], before["layer4.2.bn2.running_var"])
    assert all(torch.equal(after[k], before[k]) for k in before if "running" not in k and "num_batches" not in k)
    assert not torch.equal(model.decoder[0].weight, decoder_before)


def test_the_studys_older_imagenet_checkpoint_is_accepted(registry, monkeypatch, tmp_path, fake_imagenet):
    (tmp_path / STUDY_CHECKPOINT).symlink_to(fake_imagenet[0] / IMAGENET_FILE)
    monkeypatch.setattr("aeframe_builtins.techniques.pretrained.hub_checkpoints", lambda: tmp_path)
    model, _, _ = build("pretrained-resnet", registry)
    assert torch.equal(body_of(model)["conv1.weight"], fake_imagenet[1]["conv1.weight"])


def test_missing_imagenet_weights_skip_the_cell_with_the_offline_recipe(registry, workspace, offline):
    record = train_cell("pretrained-resnet", registry, workspace)
    assert record.status == "skipped"
    for needed in (IMAGENET_FILE, str(offline), "weights=PATH", "weights=DATASET", "weights=shapes"):
        assert needed in record.error


def test_pretrained_cell_trains_through_both_runs(registry, workspace, hub):
    record = train_cell("pretrained-resnet", registry, workspace)
    assert record.status == "done", record.error
    assert [e["phase"] for e in record.curve] == ["run 1", "run 2", "run 2"]
    assert record.config.protocol.phases[1].max_lr == pytest.approx(STUDY_RATES, rel=1e-3)
    assert record.config.label == "Pretraining"


def test_resnet_cell_reduces_the_training_loss(registry, workspace):
    record = train_cell("resnet", registry, workspace)
    assert record.status == "done", record.error
    assert record.stats["params"] == 21_284_672 + 1_577_433
    losses = [e["train_loss"] for e in record.curve]
    assert len(losses) == 3 and losses[-1] < losses[0]


def test_weights_from_a_file(registry, tmp_path):
    torch.manual_seed(7)
    source = rm.resnet_autoencoder((3, 32, 32))
    body_file, whole_file = tmp_path / "body.pt", tmp_path / "autoencoder.pth"
    torch.save(rm.find_body(source).state_dict(), body_file)
    torch.save(source.state_dict(), whole_file)  # keys under encoder.body.
    for path in (body_file, whole_file):
        comp = resolve_technique(f"pretrained-resnet[weights={path}]", registry)
        assert comp.label == f"Pretraining [weights={path}]"
        model = comp.build(context()).model
        assert same_weights(body_of(model), rm.find_body(source).state_dict())


def test_missing_or_foreign_weights_file_is_named(registry, tmp_path):
    with pytest.raises(TechniqueUnavailable, match=r"no weights file at .*nothing\.pt.*weights=PATH"):
        build(f"pretrained-resnet[weights={tmp_path}/nothing.pt]", registry)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weight": torch.zeros(3)}, foreign)
    with pytest.raises(TechniqueUnavailable, match=re.escape(f"{foreign} holds no ResNet34 weights")):
        build(f"pretrained-resnet[weights={foreign}]", registry)
    wrong = tmp_path / "resnet18.pt"
    torch.save({k: v for k, v in rm.resnet34_body().state_dict().items() if not k.startswith("layer4.2.")}, wrong)
    with pytest.raises(TechniqueUnavailable, match=re.escape(f"{wrong} does not fit ResNet34") + ".*layer4.2"):
        build(f"pretrained-resnet[weights={wrong}]", registry)


def tiny_shapes(calls: list[str]):
    def load_dataset(text: str) -> ImageData:
        calls.append(text)
        return ImageData(train=generate(256, 0, "train"), test=generate(64, 0, "test"), classes=list(CLASSES))

    return load_dataset


def test_pretraining_on_a_dataset_is_cached_and_reused(registry, tmp_path, capsys, monkeypatch):
    spelled = "pretrained-resnet[weights=shapes,pretrain_epochs=1]"
    assert resolve_technique(spelled, registry).label == "Pretraining [weights=shapes, pretrain_epochs=1]"
    calls: list[str] = []
    first, _, _ = build(spelled, registry, cache_dir=tmp_path, load_dataset=tiny_shapes(calls))
    err = capsys.readouterr().err
    assert calls == ["shapes"]
    assert "epoch 1/1 loss" in err and "train accuracy" in err and "test accuracy" in err
    [cached] = (tmp_path / "pretrained-resnet").glob("*.pt")  # beside it, what it cost (.cost.json)
    assert cached.name.startswith("resnet34-body-shapes-3x32x32-1ep-") and cached.suffix == ".pt"
    assert not any(p.requires_grad for p in rm.find_body(first).parameters())

    def must_not_train(*args, **kwargs):
        raise AssertionError("pretrained again despite the cache")

    monkeypatch.setattr(rw, "train_classifier_body", must_not_train)
    second, _, _ = build(spelled, registry, cache_dir=tmp_path, load_dataset=tiny_shapes(calls))
    assert f"using cached {cached}" in capsys.readouterr().err
    # Loaded again (a run loads it once, through its workspace): its fingerprint is part of the cache key.
    assert calls == ["shapes", "shapes"]
    assert same_weights(body_of(first), body_of(second))
    # Pretraining ran on its own random stream: the cell's decoder init is the same either way.
    assert torch.equal(first.decoder[0].weight, second.decoder[0].weight)
    # Another length, cell shape or data (even under the same name) is another cache entry.
    fingerprint = tiny_shapes([])("shapes").fingerprint()
    assert rw.pretrain_cache_file(tmp_path, "shapes", fingerprint, (3, 32, 32), 1) == cached
    assert rw.pretrain_cache_file(tmp_path, "shapes", fingerprint, (3, 32, 32), 2) != cached
    assert rw.pretrain_cache_file(tmp_path, "shapes", fingerprint, (1, 28, 28), 1) != cached
    other = ImageData(train=generate(256, 1, "train"), test=generate(64, 1, "test"), classes=list(CLASSES))
    assert rw.pretrain_cache_file(tmp_path, "shapes", other.fingerprint(), (3, 32, 32), 1) != cached


def test_pretraining_is_reported_as_work_outside_the_budget_with_its_cost_when_reused(registry, tmp_path):
    spelled = "pretrained-resnet[weights=shapes,pretrain_epochs=1]"
    what = "pretrained the ResNet34 body as a classifier of shapes (256 images, 1 epoch)"
    first = replace(context(), cache_dir=tmp_path, load_dataset=tiny_shapes([]))
    resolve_technique(spelled, registry).build(first)
    [done] = first.preparations
    assert done.what == what and done.seconds > 0 and done.reused is False
    again = replace(context(), cache_dir=tmp_path, load_dataset=tiny_shapes([]))
    resolve_technique(spelled, registry).build(again)
    # Taken from the cache, at the cost it had when it was done.
    assert again.preparations == [Preparation(what, done.seconds, reused=True)]
    # A body cached before the cost was kept: reused, cost unknown.
    for cost in (tmp_path / "pretrained-resnet").glob("*.cost.json"):
        cost.unlink()
    older = replace(context(), cache_dir=tmp_path, load_dataset=tiny_shapes([]))
    resolve_technique(spelled, registry).build(older)
    assert older.preparations == [Preparation(what, None, reused=True)]


def test_pretraining_images_take_the_cells_shape():
    colour = generate(4, 0, "test").images
    grey = rw._as_cell_images(colour, (1, 28, 28))
    assert grey.shape == (4, 1, 28, 28) and grey.dtype == torch.uint8
    assert rw._as_cell_images(grey, (3, 32, 32)).shape == (4, 3, 32, 32)
    assert torch.equal(rw._as_cell_images(colour, (3, 32, 32)), colour)


def test_unknown_dataset_for_weights_is_explained(registry, workspace, tmp_path):
    with pytest.raises(TechniqueUnavailable) as caught:
        build("pretrained-resnet[weights=shapez]", registry, cache_dir=tmp_path, load_dataset=workspace.load_dataset)
    message = str(caught.value)
    assert "weights=shapez] cannot pretrain on dataset shapez: unknown dataset 'shapez'" in message
    assert "did you mean shapes" in message and "weights=PATH" in message


def test_parameters_are_checked_before_anything_runs(registry):
    with pytest.raises(SpecError, match="pretrain_epochs=0; give 1 or more"):
        resolve_technique("pretrained-resnet[weights=shapes,pretrain_epochs=0]", registry)
    with pytest.raises(SpecError, match="pretrain_epochs applies only to weights=DATASET"):
        resolve_technique("pretrained-resnet[pretrain_epochs=5]", registry)
    assert is_path("weights/r34.pth") and is_path("r34.pt") and not is_path("fashion-mnist")


def test_resnet_and_pretrained_resnet_both_provide_the_model(registry):
    with pytest.raises(CompositionError) as caught:
        resolve_technique("resnet+pretrained-resnet", registry)
    message = str(caught.value)
    assert "resnet" in message and "pretrained-resnet" in message and "both provide the model" in message


def test_both_techniques_are_registered_with_the_studys_row_names(registry):
    assert registry.techniques["resnet"].title == "Resnet w/o pretrain"
    assert registry.techniques["pretrained-resnet"].title == "Pretraining"
    assert registry.techniques["resnet"].base == registry.techniques["pretrained-resnet"].base == "baseline"


def test_weights_url_is_torchvisions_imagenet_checkpoint():
    from torchvision.models import ResNet34_Weights

    assert WEIGHTS_URL == ResNet34_Weights.IMAGENET1K_V1.url


def test_cells_sharing_a_cache_pretrain_the_body_once(tmp_path, monkeypatch):
    """Two processes (an executor's workers) building the same pretrained cell at once: one pretrains, the
    other waits for it (ctx.deriving) and reuses its body instead of pretraining it again."""
    import threading
    import time

    real, trained = rw.train_classifier_body, []

    def slow_train(*args, **kwargs):
        trained.append(args[1])
        time.sleep(0.5)  # long enough that the other one asks while this one trains
        return real(*args, **kwargs)

    monkeypatch.setattr(rw, "train_classifier_body", slow_train)
    contexts = [replace(context(), cache_dir=tmp_path, load_dataset=tiny_shapes([])) for _ in range(2)]
    runs = [threading.Thread(target=rw.pretrained_on_dataset, args=(ctx, "shapes", 1)) for ctx in contexts]
    for run in runs:
        run.start()
    for run in runs:
        run.join()
    assert trained == ["shapes"]
    assert sorted(ctx.preparations[0].reused for ctx in contexts) == [False, True]
