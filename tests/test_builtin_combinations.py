"""The study's techniques combined with each other, through the composition rule alone."""
import pytest

from aeframe.errors import CompositionError
from aeframe.plan import resolve_technique

from techniques import build


def params(model) -> int:
    return sum(p.numel() for p in model.parameters())


def test_all_six_study_rows_are_registered(registry):
    titles = {name: t.title for name, t in registry.techniques.items()}
    assert titles == {
        "baseline": "Baseline",
        "pixel-shuffle": "Pixel Shuffle",
        "progressive-resizing": "Progressive Resizing",
        "pretrained-resnet": "Pretraining",
        "resnet": "Resnet w/o pretrain",
        "feature-loss": "Feature Loss",
    }


def test_pixel_shuffle_with_feature_loss(registry):
    built = build("pixel-shuffle+feature-loss[net=random]", registry, dataset="mnist")
    assert params(built.model) == 3_079_042
    assert type(built.loss).__name__ == "VGGFeatureLoss"
    assert built.schedule.phases[1].lrs() == [1e-4]  # feature loss's MNIST rate
    assert resolve_technique("pixel-shuffle+feature-loss[net=random]", registry).label == (
        "Pixel Shuffle + Feature Loss [net=random]"
    )


def test_resnet_with_feature_loss(registry):
    built = build("resnet+feature-loss[net=random]", registry)
    assert params(built.model) == 21_284_672 + 1_577_433
    assert type(built.loss).__name__ == "VGGFeatureLoss"


def test_progressive_resizing_with_resnet_trains_small_first(registry):
    built = build("progressive-resizing+resnet", registry)
    assert [p.image_size for p in built.schedule.phases] == [16, None]


@pytest.mark.parametrize(
    "text, part",
    [("resnet+pretrained-resnet", "model"), ("baseline+pixel-shuffle", "model"), ("baseline+feature-loss", "loss")],
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
