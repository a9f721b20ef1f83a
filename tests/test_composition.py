"""The composition rule, checked with toy techniques that record what they did."""
from pathlib import Path

import pytest
import torch
from torch import nn

from aeframe import CellContext, Param, Technique
from aeframe.errors import CompositionError
from aeframe.planning.plan import resolve_technique
from aeframe.registry.plugins import Registry
from aeframe.contract.protocol import study_schedule
from aeframe.planning.composition import Composition, Member

CTX = CellContext(shape=(3, 8, 8), dataset="toy", num_classes=2, seed=0, device=torch.device("cpu"), data_dir=Path("."),
                  cache_dir=Path("."), load_dataset=lambda text: None)


class Tagged(nn.Module):
    def __init__(self, tags):
        super().__init__()
        self.tags = list(tags)


class Full(Technique):
    name, title = "full", "Full"
    params = (Param("width", int, 4, "toy width"),)

    def build_model(self, ctx):
        return Tagged([f"full(width={ctx.params['width']})"])

    def build_loss(self, ctx):
        return "mse"

    def build_schedule(self, ctx):
        return study_schedule()


class OtherModel(Technique):
    name, title, base = "other-model", "Other Model", "full"

    def build_model(self, ctx):
        return Tagged(["other"])


class LossOnly(Technique):
    name, title, base = "loss-only", "Loss Only", "full"

    def build_loss(self, ctx):
        return "feature"


class WrapA(Technique):
    name, title, base = "wrap-a", "Wrap A", "full"
    params = (Param("tag", str, "a", "what to append"),)

    def wrap_model(self, model, ctx):
        model.tags.append(ctx.params["tag"])
        return model

    def wrap_schedule(self, schedule, ctx):
        schedule.batch_size = 7
        return schedule


class WrapB(Technique):
    name, title, base = "wrap-b", "Wrap B", "full"

    def wrap_model(self, model, ctx):
        model.tags.append("b")
        return model


class Orphan(Technique):
    name, title = "orphan", "Orphan"

    def build_loss(self, ctx):
        return "l1"


@pytest.fixture
def toys():
    registry = Registry()
    for tech in (Full(), OtherModel(), LossOnly(), WrapA(), WrapB(), Orphan()):
        registry.techniques[tech.name] = tech
    return registry


def test_single_technique_builds_all_parts_with_its_params(toys):
    built = resolve_technique("full[width=9]", toys).build(CTX)
    assert built.model.tags == ["full(width=9)"]
    assert built.loss == "mse"
    assert built.schedule.batch_size == 128


def test_missing_parts_come_from_the_base(toys):
    comp = resolve_technique("loss-only", toys)
    built = comp.build(CTX)
    assert built.loss == "feature"
    assert built.model.tags == ["full(width=4)"]
    assert comp.providers["schedule"].technique.name == "full"


def test_providers_from_different_members_combine(toys):
    built = resolve_technique("other-model+loss-only", toys).build(CTX)
    assert built.model.tags == ["other"] and built.loss == "feature"


def test_wrappers_apply_left_to_right_in_the_order_given(toys):
    assert resolve_technique("wrap-a+wrap-b", toys).build(CTX).model.tags == ["full(width=4)", "a", "b"]
    assert resolve_technique("wrap-b+wrap-a[tag=z]", toys).build(CTX).model.tags == ["full(width=4)", "b", "z"]


def test_wrapper_sees_its_own_params_and_changes_the_schedule(toys):
    built = resolve_technique("wrap-a[tag=q]+full", toys).build(CTX)
    assert built.model.tags == ["full(width=4)", "q"]
    assert built.schedule.batch_size == 7


def test_two_providers_of_one_part_is_an_error_naming_both(toys):
    with pytest.raises(CompositionError, match="cannot combine full and other-model: both provide the model"):
        resolve_technique("full+other-model", toys)


def test_no_provider_and_no_base_is_an_error(toys):
    with pytest.raises(CompositionError, match="orphan: no technique provides the model"):
        resolve_technique("orphan", toys)


def test_same_technique_twice_is_refused(toys):
    with pytest.raises(CompositionError, match="same technique twice"):
        resolve_technique("wrap-a+wrap-a", toys)


def test_missing_base_is_named():
    registry = Registry()
    registry.techniques["loss-only"] = LossOnly()
    with pytest.raises(CompositionError, match="builds on 'full', which is not installed"):
        resolve_technique("loss-only", registry)


def test_row_label_joins_titles_and_shows_non_default_params(toys):
    assert resolve_technique("other-model+loss-only", toys).label == "Other Model + Loss Only"
    assert resolve_technique("full[width=4]", toys).label == "Full"
    assert resolve_technique("wrap-a[tag=x]+wrap-b", toys).label == "Wrap A [tag=x] + Wrap B"


def test_unknown_technique_suggests_close_names(toys):
    from aeframe.errors import SpecError

    with pytest.raises(SpecError, match=r"unknown technique 'wrap-c'; did you mean wrap-[ab], wrap-[ab]\?"):
        resolve_technique("wrap-c", toys)


def test_composition_can_be_built_directly():
    comp = Composition([Member(Full(), {"width": 2})], lookup=lambda name: None)
    assert comp.build(CTX).model.tags == ["full(width=2)"]
