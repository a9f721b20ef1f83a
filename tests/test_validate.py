"""``aeframe validate``: the built-ins pass, and deliberately broken techniques fail with the right reason."""
from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest

from aeframe.registry.plugins import Registry
from aeframe.validate.checks import FAIL, PASS, SKIP, Setting, checks_for, resolve_names

# A third-party plugin with one defect per technique, each built on the Baseline.
BROKEN = '''
import torch
from torch import nn

from aeframe import Param, Technique, hookimpl


class Cropping(nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model(x)[..., 1:-1, 1:-1]


class Spare(nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model
        self.spare = nn.Parameter(torch.zeros(4))

    def forward(self, x):
        return self.model(x)


class Jitter(nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model
        self.gen = torch.Generator()
        self.gen.seed()  # seeded from the OS: differs from run to run

    def forward(self, x):
        if self.training:
            x = x + 0.01 * torch.randn(x.shape, generator=self.gen)
        return self.model(x)


class _Broken(Technique):
    base = "baseline"
    description = "deliberately broken"


class WrongShape(_Broken):
    name, title = "wrong-shape", "Wrong Shape"

    def wrap_model(self, model, ctx):
        return Cropping(model)


class DeadParam(_Broken):
    name, title = "dead-param", "Dead Param"

    def wrap_model(self, model, ctx):
        return Spare(model)


class NoLearning(_Broken):
    name, title = "no-learning", "No Learning"

    def wrap_schedule(self, schedule, ctx):
        for phase in schedule.phases:
            phase.max_lr = 0.0
        return schedule


class Unseeded(_Broken):
    name, title = "unseeded", "Unseeded"

    def wrap_model(self, model, ctx):
        return Jitter(model)


class NoHelp(_Broken):
    name, title = "no-help", "No Help"
    params = (Param("width", int, 3, " "),)

    def wrap_loss(self, loss, ctx):
        return loss


@hookimpl
def register_techniques(register):
    for technique in (WrongShape(), DeadParam(), NoLearning(), Unseeded(), NoHelp()):
        register(technique)
'''


@pytest.fixture(scope="module")
def setting(registry, tmp_path_factory):
    namespace: dict = {}
    exec(compile(textwrap.dedent(BROKEN), "broken_plugin", "exec"), namespace)
    broken = []
    namespace["register_techniques"](broken.append)
    techniques = {**registry.techniques, **{t.name: t for t in broken}}
    both = Registry(executors=registry.executors,
                    techniques=techniques, datasets=registry.datasets, metrics=registry.metrics)
    root = tmp_path_factory.mktemp("validate")
    return Setting(both, root / "data", Path(os.environ["AEFRAME_CACHE"]))  # the run's: its classifier is shared


def _checks(setting, *names):
    return list(checks_for(resolve_names(list(names), setting), setting))


def _failed(setting, name):
    return [c.line for c in _checks(setting, name) if c.status == FAIL]


def test_every_builtin_technique_passes_or_skips_for_missing_weights(registry, setting):
    for name in sorted(registry.techniques):
        checks = _checks(setting, name)
        assert [c.line for c in checks if c.status == FAIL] == []
        if name in ("pretrained-resnet", "feature-loss") and any(c.status == SKIP for c in checks):
            skip = next(c for c in checks if c.status == SKIP)
            assert "ImageNet weights" in skip.reason and ".pth" in skip.reason
        else:
            assert [c.status for c in checks] == [PASS] * 7, name
            fell = next(c for c in checks if "lowers the loss" in c.what)
            before, after = (float(v) for v in fell.what.rsplit(": ", 1)[1].split(" -> "))
            assert after < 0.99 * before


def test_every_builtin_dataset_and_metric_passes_or_skips_when_absent(registry, setting):
    checks = _checks(setting, *sorted(registry.datasets), *registry.metrics)
    assert [c.line for c in checks if c.status == FAIL] == []
    shapes = [c.line for c in checks if c.name == "shapes"]
    assert "PASS dataset shapes: load() matches shape() (3x32x32)" in shapes
    assert "PASS dataset shapes: train and test splits are non-empty (20,000 train, 2,000 test)" in shapes
    # Nothing in the empty data directory: cifar10 is skipped with its own recipe.
    cifar = [c for c in checks if c.name == "cifar10" and c.status == SKIP]
    assert len(cifar) == 1 and "data_batch_1" in cifar[0].reason
    ordered = [c.line for c in checks if c.kind == "metric" and "reconstruction scores" in c.what]
    assert len(ordered) == len(registry.metrics) and all(line.startswith("PASS") for line in ordered)


def test_builds_are_tried_for_every_registered_shape(setting):
    build = next(c for c in _checks(setting, "baseline[latent=64]") if c.what.startswith("model builds"))
    assert build.line == ("PASS technique baseline[latent=64]: model builds for shapes[train=256,test=64] (3x32x32) "
                          "and fashion-mnist[view=native] (1x28x28)")


def test_a_wrong_output_shape_fails_for_every_shape(setting):
    failed = _failed(setting, "wrong-shape")
    assert failed[0] == (
        "FAIL technique wrong-shape: output has the input's shape and is finite, within [-1, 2] for inputs in "
        "[0, 1]: shapes[train=256,test=64] (3x32x32): output has shape (3, 30, 30) for input (3, 32, 32); "
        "fashion-mnist[view=native] (1x28x28): output has shape (1, 26, 26) for input (1, 28, 28)"
    )
    # The checks that need a working model say why they did not run.
    assert len(failed) == 5
    assert all(line.endswith(": not run: the model gives wrong outputs for shapes[train=256,test=64]")
               for line in failed[1:])


def test_a_parameter_without_gradient_is_named(setting):
    assert _failed(setting, "dead-param") == [
        "FAIL technique dead-param: gradients reach every trainable parameter: 1 of 27 parameters got no gradient "
        "(spare)"
    ]


def test_a_loss_that_does_not_fall_fails(setting):
    failed = _failed(setting, "no-learning")
    assert len(failed) == 1
    assert failed[0].startswith("FAIL technique no-learning: a short training lowers the loss (16 steps of 16 on "
                                "shapes[train=256,test=64]): the loss on a fixed batch went from 0.2363 to 0.2363; "
                                "it must fall by at least 1%")


def test_unseeded_randomness_fails_the_determinism_check(setting):
    failed = _failed(setting, "unseeded")
    assert len(failed) == 1
    assert failed[0].startswith("FAIL technique unseeded: same seed gives the same numbers: two runs with seed 0 gave "
                                "losses 0.23")
    assert failed[0].endswith("draw every random number from torch's seeded generators")


def test_a_parameter_without_help_fails(setting):
    assert _failed(setting, "no-help") == [
        "FAIL technique no-help: parameters have help and valid defaults: parameter 'width' has no help text; "
        "say what it changes and its unit"
    ]


def test_cli_exits_1_on_a_broken_plugin_and_0_when_all_pass(cli, setting, tmp_path):
    # In process: what is checked and printed does not depend on how the plugin was found.
    broken = cli("validate", "dead-param", "no-help", cwd=tmp_path, registry=setting.registry)
    assert broken.returncode == 1, broken.stderr
    lines = broken.stdout.splitlines()
    assert len(lines) == 14 and all(line.split(" ", 1)[0] in ("PASS", "FAIL") for line in lines)
    assert "FAIL technique no-help: parameters have help and valid defaults: parameter 'width' has no help text" \
        in broken.stdout
    assert "FAIL technique dead-param: gradients reach every trainable parameter: 1 of 27" in broken.stdout
    assert broken.stderr.endswith("aeframe: 12 passed, 2 failed, 0 skipped\n")
    assert "Traceback" not in broken.stderr

    good = cli("validate", "baseline[latent=64]", "mse", "shapes[train=32,test=8]", cwd=tmp_path,
               registry=setting.registry)
    assert good.returncode == 0, good.stdout
    assert good.stdout.count("PASS ") == 7 + 3 + 6 and "FAIL" not in good.stdout


@pytest.mark.parametrize("name, message", [
    ("baselin", "'baselin' is not a registered technique, dataset or metric; did you mean baseline?"),
    ("shape", "did you mean shapes"),
    ("baseline[latnt=3]", "technique baseline: unknown parameter 'latnt'; did you mean latent?"),
    ("resnet+pretrained-resnet", "cannot combine resnet and pretrained-resnet: both provide the model"),
])
def test_cli_unknown_names_exit_2_with_close_matches(cli, tmp_path, name, message):
    result = cli("validate", name, cwd=tmp_path)
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr
    assert result.stdout == ""
