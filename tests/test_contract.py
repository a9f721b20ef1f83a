"""The plugin contract's rules: strict registration, provide/wrap/replace, and learning rates as
declared data settled the same way whatever order the techniques are typed in."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from aeframe import CellContext, DatasetPlugin, Metric, Param, PeakRate, Phase, Technique, study_schedule
from aeframe.errors import CompositionError, SpecError
from aeframe.planning.plan import resolve_technique
from aeframe.registry.plugins import InvalidPlugin, Registry, _validate

CTX = CellContext(shape=(3, 8, 8), dataset="mnist", num_classes=2, seed=0, device=torch.device("cpu"),
                  data_dir=Path("."), cache_dir=Path("."), load_dataset=lambda text: None)


class Full(Technique):
    name, title = "full", "Full"

    def build_model(self, ctx):
        return nn.Linear(2, 2)

    def build_loss(self, ctx):
        return nn.functional.mse_loss

    def build_schedule(self, ctx):
        return study_schedule(second_lr=1e-3)


class Slow(Technique):
    name, title, base = "slow", "Slow", "full"
    learning_rates = {"run 2": PeakRate(1e-3, {"mnist": 1e-4})}

    def wrap_model(self, model, ctx):
        return nn.Sequential(model)


class Small(Technique):
    name, title, base = "small", "Small", "full"
    learning_rates = {"run 2": 2e-4}

    def wrap_schedule(self, schedule, ctx):
        schedule.phases[0].image_size = 4
        return schedule


class Grouped(Technique):
    """Provides a schedule whose second run has one rate per parameter group, and declares them."""

    name, title, base = "grouped", "Grouped", "full"
    learning_rates = {"run 2": (1e-5, 1e-3)}

    def build_schedule(self, ctx):
        return study_schedule(second_lr=(1e-5, 1e-3), param_groups=lambda m: [[], list(m.parameters())])


class SneakyRate(Technique):
    """Sets a rate the old way, in wrap_schedule."""

    name, title, base = "sneaky", "Sneaky", "full"

    def wrap_schedule(self, schedule, ctx):
        schedule.phases[-1].max_lr = 5e-4
        return schedule


class DropsLoss(Technique):
    """The pattern the contract refuses: 'replacing' the loss by wrapping it and throwing it away."""

    name, title, base = "drops-loss", "Drops Loss", "full"

    def wrap_loss(self, loss, ctx):
        return nn.functional.l1_loss


class ReplacesModel(Technique):
    name, title, base = "replaces-model", "Replaces Model", "full"

    def wrap_model(self, model, ctx):
        return nn.Linear(2, 2)


@pytest.fixture
def toys():
    registry = Registry()
    for tech in (Full(), Slow(), Small(), Grouped(), SneakyRate(), DropsLoss(), ReplacesModel()):
        registry.techniques[tech.name] = tech
    return registry


def second_run(text, toys, lr="study"):
    schedule = resolve_technique(text, toys, lr).build(CTX).schedule
    return schedule.phases[1].max_lr


# -- learning rates ----------------------------------------------------------------------------


def test_a_declared_rate_replaces_the_schedules_own_per_dataset(toys):
    assert second_run("full", toys) == 1e-3
    assert second_run("slow", toys) == 1e-4  # CTX is mnist
    assert second_run("small", toys) == 2e-4


@pytest.mark.parametrize("text", ["slow+small", "small+slow"])
def test_two_techniques_declaring_one_phase_are_refused_in_either_order(toys, text):
    with pytest.raises(CompositionError, match=r"both set the peak learning rate of phase 'run 2'; choose it for "
                                               r"this row with lr=RATE on one of them .* or use --lr find"):
        resolve_technique(text, toys)


@pytest.mark.parametrize("text", ["slow[lr=3e-4]+small", "small+slow[lr=3e-4]"])
def test_an_explicit_lr_settles_the_combination_and_names_the_row(toys, text):
    assert second_run(text, toys) == 3e-4
    assert "Slow [lr=3e-4]" in resolve_technique(text, toys).label


def test_two_explicit_rates_are_refused(toys):
    with pytest.raises(CompositionError, match="give lr= to only one of them"):
        resolve_technique("slow[lr=3e-4]+small[lr=1e-4]", toys)


def test_lr_find_settles_a_phase_the_range_test_sets(toys):
    comp = resolve_technique("slow+small", toys, lr="find")
    assert comp.build(CTX).schedule.phases[1].find_lr  # the range test picks its rate when it begins


def test_an_explicit_rate_on_per_group_rates_keeps_their_ratios(toys):
    assert second_run("grouped", toys) == (1e-5, 1e-3)
    assert second_run("grouped[lr=1e-2]", toys) == pytest.approx((1e-4, 1e-2))


@pytest.mark.parametrize("text, message", [("slow[lr=fast]", "lr=fast is not a learning rate"),
                                           ("slow[lr=-1]", "lr=-1 is not a learning rate"),
                                           ("full[lr=1e-3]", "unknown parameter 'lr'")])
def test_bad_or_undeclared_lr_values_are_usage_errors(toys, text, message):
    with pytest.raises(SpecError, match=message):
        resolve_technique(text, toys)


@pytest.mark.parametrize("text", ["small+sneaky", "sneaky+small"])
def test_a_wrapper_that_changes_a_declared_rate_is_refused_in_either_order(toys, text):
    with pytest.raises(CompositionError, match="cannot combine (small and sneaky|sneaky and small): both set the "
                                               "peak learning rate of phase 'run 2'"):
        resolve_technique(text, toys).build(CTX)


def test_a_wrapper_may_set_a_rate_nothing_else_sets(toys):
    assert second_run("sneaky", toys) == 5e-4


# -- provide, wrap, replace --------------------------------------------------------------------


def test_a_loss_wrapper_that_drops_the_loss_it_wraps_is_found_before_training(toys):
    built = resolve_technique("drops-loss", toys).build(CTX)
    x = torch.zeros(2, 2)
    built.loss(x, x)
    assert built.unused_losses() == ["drops-loss"]


def test_a_model_wrapper_must_keep_the_model_it_wraps(toys):
    with pytest.raises(CompositionError, match="replaces-model's wrap_model returned a model that does not contain "
                                               "the model it was given; .* provides it \\(build_model\\) instead"):
        resolve_technique("replaces-model", toys).build(CTX)


class L1ByWrapping(DropsLoss):
    """The same mistake on the Baseline, to run it for real."""

    name, base = "l1-by-wrapping", "baseline"


def _with_l1_by_wrapping(registry) -> Registry:
    return Registry(executors=registry.executors,
                    techniques={**registry.techniques, "l1-by-wrapping": L1ByWrapping()}, datasets=registry.datasets,
                    metrics=registry.metrics)


def test_a_dropped_loss_fails_the_cell_with_the_rule(registry, workspace):
    from techniques import train_cell

    record = train_cell("l1-by-wrapping", _with_l1_by_wrapping(registry), workspace)
    assert record.status == "failed"
    assert record.error.splitlines()[0] == (
        "CompositionError: technique l1-by-wrapping's wrap_loss returned a loss that never calls the loss it wraps, "
        "so that loss would be dropped; a technique that replaces the loss provides it (build_loss) instead")


# -- strict registration -----------------------------------------------------------------------


class Typo(Technique):
    name, title, base = "typo", "Typo", "baseline"

    def wrap_modle(self, model, ctx):
        return model


class Misspelt(Technique):
    name, titel, base = "misspelt", "Misspelt", "baseline"
    title = "Misspelt"
    descripton = "one letter short"

    def wrap_model(self, model, ctx):
        return model


class Idle(Technique):
    name, title, base = "idle", "Idle", "baseline"

    def helper(self):  # a plugin's own helpers are fine
        return 1


class LrParam(Technique):
    name, title, base = "lr-param", "Lr Param", "baseline"
    learning_rates = {"run 2": 1e-4}
    params = (Param("lr", float, 1e-4, "clashes with the core's"),)


class BadRates(Technique):
    name, title, base = "bad-rates", "Bad Rates", "baseline"
    learning_rates = {"run 2": -1.0}


class NoTitleDataset(DatasetPlugin):
    name = "untitled"
    tilte = "Untitled"

    def shape(self, params):
        return (1, 4, 4)

    def missing(self, data_dir, params):
        return None

    def load(self, data_dir, params):
        raise AssertionError("not loaded")


class MisspeltMetric(Metric):
    name, title, better = "odd", "Odd", "lower"
    formt = ".3f"

    def update(self, recon, target, labels):
        pass


@pytest.mark.parametrize("kind, obj, message", [
    ("technique", Typo(), "technique 'typo' defines 'wrap_modle', which is not a part method; did you mean 'wrap_model'?"),
    ("technique", Misspelt(), "technique 'misspelt' defines 'descripton'; did you mean 'description'?; "
                              "technique 'misspelt' defines 'titel'; did you mean 'title'?"),
    ("technique", Idle(), "technique 'idle' provides, wraps, declares and acts on nothing, so it would train its "
                          "base 'baseline' under another name"),
    ("technique", LrParam(), "aeframe adds 'lr' itself to techniques that declare rates: rename the parameter"),
    ("technique", BadRates(), "learning_rates['run 2'] = -1.0; give a positive number"),
    ("dataset", NoTitleDataset(), "dataset 'untitled' defines 'tilte'; did you mean 'title'?"),
    ("metric", MisspeltMetric(), "metric 'odd' defines 'formt'; did you mean 'format'?"),
])
def test_contract_breaches_are_refused_at_registration_naming_the_closest_name(kind, obj, message):
    with pytest.raises(InvalidPlugin) as caught:
        _validate(kind, obj)
    assert message in str(caught.value)


def test_a_class_registered_instead_of_an_instance_is_told_so():
    with pytest.raises(InvalidPlugin, match=r"registered the class Full; register an instance: register\(Full\(\)\)"):
        _validate("technique", Full)


def test_every_builtin_keeps_the_strict_contract(registry):
    for kind in ("technique", "dataset", "metric"):
        for obj in registry.table(kind).values():
            _validate(kind, obj)


def test_phase_rates_are_data_a_plugin_can_read(toys):
    assert Slow().accepted_params()[-1].name == "lr"
    assert Phase(fraction=1.0, max_lr=(1e-4, 1e-3)).lrs() == [1e-4, 1e-3]


def test_validate_names_a_loss_wrapper_that_drops_the_loss(registry):
    from aeframe.testing import assert_valid_technique

    with pytest.raises(AssertionError, match="gradients reach every trainable parameter: l1-by-wrapping's wrap_loss "
                                             "never calls the loss it wraps"):
        assert_valid_technique("l1-by-wrapping", _with_l1_by_wrapping(registry))
