"""The study's techniques alone and combined, through the composition rule alone: the rates each
trains with, which combinations work, and which are refused until ``lr=`` or ``--lr find`` settles them."""
import json

import pytest
import torch

from aeframe import study_schedule
from aeframe.errors import CompositionError
from aeframe.planning.plan import resolve_technique
from aeframe_builtins.techniques.study_rates import SECOND_RUN, SECOND_RUN_RATES

from conftest import TINY_SHAPES
from techniques import build, context

MNIST_FAMILY, OTHERS = ("mnist", "fashion-mnist"), ("cifar10", "shapes")
# The study's second-run rates (seed-protocol.md section 4), written out rather than read from the plugins.
STUDY = {
    "baseline": (1e-3, 1e-3),
    "pixel-shuffle": (1e-3, 1e-3),
    "progressive-resizing": (1.74e-4, 1e-3),
    "feature-loss[net=random]": (1e-4, 1e-3),
    "resnet": (1e-4, 1e-3),
}
DISCRIMINATIVE = (1e-6, 2.783e-6, 7.743e-6, 2.154e-5, 5.995e-5, 1.668e-4, 4.642e-4, 1.292e-3, 3.594e-3, 1e-2)
# Pairs that both declare the second run's rate: refused whichever comes first.
BOTH_DECLARE = [
    ("progressive-resizing", "feature-loss"),
    ("resnet", "feature-loss"),
    ("progressive-resizing", "resnet"),
    ("pretrained-resnet", "feature-loss"),
    ("progressive-resizing", "pretrained-resnet"),
]


def params(model) -> int:
    return sum(p.numel() for p in model.parameters())


def second_run(text, registry, dataset="shapes", lr="study"):
    torch.manual_seed(0)
    return resolve_technique(text, registry, lr).build(context(dataset=dataset)).schedule.phases[1]


@pytest.fixture(scope="module")
def body_file(tmp_path_factory):
    """A state dict of a random ResNet34 body, so that pretrained-resnet builds offline."""
    from aeframe_builtins.techniques.resnet_model import resnet34_body

    path = tmp_path_factory.mktemp("weights") / "body.pt"
    torch.manual_seed(5)
    torch.save(resnet34_body().state_dict(), path)
    return path


def test_all_six_study_rows_are_registered(registry):
    titles = {name: t.title for name, t in registry.techniques.items()}
    study = {
        "baseline": "Baseline",
        "pixel-shuffle": "Pixel Shuffle",
        "progressive-resizing": "Progressive Resizing",
        "pretrained-resnet": "Pretraining",
        "resnet": "Resnet w/o pretrain",
        "feature-loss": "Feature Loss",
    }
    # Beside them, techniques the study did not try (tests/test_modern_techniques.py and others).
    assert {name: titles.get(name) for name in study} == study


# -- every technique alone trains with the study's rates -----------------------------------------


@pytest.mark.parametrize("dataset", MNIST_FAMILY + OTHERS)
@pytest.mark.parametrize("technique", sorted(STUDY))
def test_each_technique_trains_with_the_studys_rates(registry, technique, dataset):
    built = build(technique, registry, dataset=dataset)
    mnist, cifar10 = STUDY[technique]
    assert [p.lrs() for p in built.schedule.phases] == [[3e-3], [mnist if dataset in MNIST_FAMILY else cifar10]]


@pytest.mark.parametrize("dataset", MNIST_FAMILY + OTHERS)
def test_pretraining_trains_its_ten_groups_at_the_studys_rates(registry, body_file, dataset):
    phases = build(f"pretrained-resnet[weights={body_file}]", registry, dataset=dataset).schedule.phases
    assert phases[0].lrs() == [3e-3]
    assert phases[1].lrs() == pytest.approx(DISCRIMINATIVE, rel=1e-3)


def test_rates_are_declared_data_and_the_baselines_is_the_schedules_own(registry):
    declaring = {name for name, t in registry.techniques.items() if t.learning_rates}
    assert declaring == {"progressive-resizing", "feature-loss", "resnet", "pretrained-resnet"}
    assert not any(registry.techniques[name].wraps("schedule") for name in ("feature-loss", "resnet"))
    own = study_schedule().phases[1]
    assert own.name == SECOND_RUN
    for name in ("baseline", "pixel-shuffle"):  # they declare nothing because the schedule's rate is theirs
        assert all(SECOND_RUN_RATES[name].on(d) == own.max_lr for d in MNIST_FAMILY + OTHERS)


# -- combinations ---------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["pixel-shuffle+feature-loss[net=random]", "feature-loss[net=random]+pixel-shuffle"])
def test_pixel_shuffle_with_feature_loss(registry, text):
    built = build(text, registry, dataset="mnist")
    assert params(built.model) == 3_079_042
    assert type(built.loss).__name__ == "VGGFeatureLoss"
    assert built.schedule.phases[1].lrs() == [1e-4]  # feature loss's MNIST rate
    assert resolve_technique("pixel-shuffle+feature-loss[net=random]", registry).label == (
        "Pixel Shuffle + Feature Loss [net=random]"
    )


@pytest.mark.parametrize("text", ["progressive-resizing+pixel-shuffle", "pixel-shuffle+progressive-resizing"])
def test_progressive_resizing_with_pixel_shuffle(registry, text):
    built = build(text, registry, dataset="mnist")
    assert params(built.model) == 3_079_042
    assert [p.image_size for p in built.schedule.phases] == [16, None]
    assert built.schedule.phases[1].lrs() == [1.74e-4]  # progressive resizing's MNIST rate


@pytest.mark.parametrize("a, b", BOTH_DECLARE)
@pytest.mark.parametrize("flip", [False, True], ids=["as-listed", "reversed"])
def test_two_declared_rates_are_refused_in_either_order_before_anything_is_built(registry, a, b, flip):
    first, second = (b, a) if flip else (a, b)
    with pytest.raises(CompositionError) as caught:
        resolve_technique(f"{first}+{second}", registry)
    message = str(caught.value)
    assert message.startswith(f"cannot combine {first} and {second}: both set the peak learning rate of phase 'run 2'")
    assert "lr=RATE on one of them" in message and "--lr find" in message and "\n" not in message


@pytest.mark.parametrize("text", ["progressive-resizing[lr=2e-4]+feature-loss[net=random]",
                                  "feature-loss[net=random]+progressive-resizing[lr=2e-4]",
                                  "progressive-resizing+feature-loss[net=random,lr=2e-4]",
                                  "feature-loss[net=random,lr=2e-4]+progressive-resizing"])
def test_lr_on_either_technique_settles_the_rate_whatever_the_order(registry, text):
    built = build(text, registry, dataset="mnist")
    assert built.schedule.phases[1].lrs() == [2e-4]
    assert [p.image_size for p in built.schedule.phases] == [16, None]
    assert type(built.loss).__name__ == "VGGFeatureLoss"
    assert "lr=2e-4" in resolve_technique(text, registry).label  # the row says which rate settled it


def test_resnet_with_feature_loss_at_a_chosen_rate(registry):
    built = build("resnet[lr=1e-4]+feature-loss[net=random]", registry, dataset="cifar10")
    assert params(built.model) == 21_284_672 + 1_577_433
    assert type(built.loss).__name__ == "VGGFeatureLoss"
    assert built.schedule.phases[1].lrs() == [1e-4]


@pytest.mark.parametrize("text", ["progressive-resizing+resnet[lr=1e-4]", "resnet[lr=1e-4]+progressive-resizing"])
def test_progressive_resizing_with_resnet_trains_small_first(registry, text):
    built = build(text, registry)
    assert [p.image_size for p in built.schedule.phases] == [16, None]
    assert built.schedule.phases[1].lrs() == [1e-4]


@pytest.mark.parametrize("order", ["{p}+feature-loss[net=random,lr=1e-3]", "feature-loss[net=random,lr=1e-3]+{p}"])
def test_an_lr_for_the_pretrained_groups_keeps_their_ratios(registry, body_file, order):
    phase = build(order.format(p=f"pretrained-resnet[weights={body_file}]"), registry).schedule.phases[1]
    assert phase.lrs() == pytest.approx([r / 10 for r in DISCRIMINATIVE], rel=1e-3)  # the top group at 1e-3


@pytest.mark.parametrize("a, b", BOTH_DECLARE[:3])
def test_lr_find_settles_the_rate_with_its_range_test(registry, a, b):
    for text in (f"{a}+{b}", f"{b}+{a}"):
        text = text.replace("feature-loss", "feature-loss[net=random]")
        assert second_run(text, registry, lr="find").find_lr


@pytest.mark.parametrize(
    "text, part",
    [("resnet+pretrained-resnet", "model"), ("pixel-shuffle+vae", "model"), ("l1-loss+feature-loss", "loss")],
)
def test_conflicting_combinations_are_refused_with_the_reason(registry, text, part):
    a, b = text.split("+")
    with pytest.raises(CompositionError, match=f"cannot combine {a} and {b}: both provide the {part}"):
        resolve_technique(text, registry)


@pytest.mark.parametrize(
    "text, reference",
    [("baseline", True), ("baseline[latent=1000]", True), ("baseline[latent=512]", False),
     ("pixel-shuffle", False), ("progressive-resizing", False)],
)
def test_the_report_compares_with_the_baseline_alone_at_its_defaults(registry, text, reference):
    assert resolve_technique(text, registry).is_reference is reference


def test_combinations_2_trains_every_pair_that_combines_and_lists_the_others(tmp_path, cli):
    # The usual layout: which one each pair trains faster in is measured (and tested) elsewhere.
    result = cli("bench", "-t", "baseline", "-t", "pixel-shuffle", "-t", "progressive-resizing", "--combinations", "2",
                 "-d", TINY_SHAPES, "--epochs", "1", "--no-channels-last", "--store", "c.sqlite", "--format", "json",
                 cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "--combinations 2: 1 pair of the 3 techniques, 2 refused (not run)" in result.stderr
    # Every technique builds on the Baseline: a pair with it is the other technique, which is its own row. The
    # leaderboard once showed Baseline + Progressive Resizing as a row of its own, "significantly worse than the
    # Baseline" by time-budget noise.
    for other in ("Pixel Shuffle", "Progressive Resizing"):
        name = other.lower().replace(" ", "-")
        assert (f"not combined: baseline+{name}: it trains exactly as {other} alone, which is its own row"
                in result.stderr)
    [table] = json.loads(result.stdout)["datasets"][0]["tables"]
    assert [row["label"] for row in table["rows"]] == [
        "Baseline", "Pixel Shuffle", "Progressive Resizing", "Pixel Shuffle + Progressive Resizing"]
    pairs = {c["label"]: c for c in table["combinations"]}
    assert set(pairs) == {"Pixel Shuffle + Progressive Resizing"}
    shuffle = pairs["Pixel Shuffle + Progressive Resizing"]
    assert shuffle["parts"] == ["Pixel Shuffle", "Progressive Resizing"] and shuffle["against"] in shuffle["parts"]
    assert shuffle["vs_better_single"]["mse"]["pairs"] == 1
