"""Techniques that act during training (events), the optimizer and the learning-rate curve as parts,
relative rates, diagnostics, and the built-ins that use them (ema, grad-clip, cosine): real cells on the
generated shapes dataset, through the real CLI where the user's view matters."""
from __future__ import annotations

import json
import math

import pytest
import torch

import event_techniques
from aeframe.cells.budget import Budget
from aeframe.errors import CompositionError
from aeframe.planning.plan import resolve_technique
from aeframe.store.sqlite_store import Store
from conftest import registry_with
from techniques import context, train_cell

TINY = "shapes[train=256,test=64]"


@pytest.fixture(scope="module")
def events_registry():
    """The built-ins and tests/event_techniques.py, found through an entry point as an installed plugin is."""
    return registry_with("event_techniques")


def _records(path):
    with Store(path, write=False) as store:
        return {r.config.label: r for r in store.records()}


# ---------------------------------------------------------------- events: when, in what order, what state


def test_events_come_in_the_documented_order_with_the_state_of_that_moment(events_registry, workspace):
    event_techniques.LOG.clear()
    record = train_cell("logger-a", events_registry, workspace, budget=Budget(epochs=2))
    assert record.status == "done", record.error
    log = [(event, step, epoch, phase, has_optimizer) for _, event, step, epoch, phase, has_optimizer
           in event_techniques.LOG]
    steps = record.stats.steps  # 256 images in batches of 128: 2 steps an epoch, 4 in all
    assert steps == 4
    # The Baseline's schedule: "run 1" for the first third of the budget (step 0 and 1), then "run 2".
    assert log[0] == ("train_start", 0, 0, "", False)
    assert log[1] == ("phase_start", 0, 0, "run 1", True)
    assert [e for e in log if e[0] == "after_backward"] == [
        ("after_backward", n, 0 if n < 2 else 1, "run 1" if n < 2 else "run 2", True) for n in range(steps)]
    # after_step counts the step it follows.
    assert [e[1] for e in log if e[0] == "after_step"] == [1, 2, 3, 4]
    names = [e[0] for e in log]
    assert names == ["train_start", "phase_start", "after_backward", "after_step", "after_backward", "after_step",
                     "epoch_end", "phase_end", "phase_start", "after_backward", "after_step", "after_backward",
                     "after_step", "epoch_end", "phase_end", "train_end"]
    assert log[names.index("epoch_end")][2] == 1 and log[-1][1:3] == (4, 2)


def test_two_techniques_on_one_event_are_called_in_name_order_whatever_the_order_typed(events_registry, workspace):
    orders = []
    for typed in ("logger-b+logger-a", "logger-a+logger-b"):
        event_techniques.LOG.clear()
        assert train_cell(typed, events_registry, workspace, budget=Budget(epochs=1)).status == "done"
        orders.append([(who, event) for who, event, *_ in event_techniques.LOG])
    assert orders[0] == orders[1]
    assert orders[0][:4] == [("logger-a", "train_start"), ("logger-b", "train_start"),
                             ("logger-a", "phase_start"), ("logger-b", "phase_start")]


def test_around_evaluation_changes_what_every_evaluation_sees_and_training_goes_on_with_the_live_weights(
        events_registry, workspace):
    plain = train_cell("baseline", events_registry, workspace, budget=Budget(epochs=2))
    zeroed = train_cell("zeroing", events_registry, workspace, budget=Budget(epochs=2))
    # Training is the baseline's exactly (same seed, live weights put back after each evaluation)...
    assert [p["train_loss"] for p in zeroed.curve] == [p["train_loss"] for p in plain.curve]
    # ...but each epoch's test loss and the final metrics are those of an all-zero model: a constant output.
    assert all(p["test_mse"] != q["test_mse"] for p, q in zip(zeroed.curve, plain.curve))
    assert zeroed.metrics["mse"] == pytest.approx(zeroed.curve[-1]["test_mse"], rel=1e-6)
    assert zeroed.metrics["mse"] != pytest.approx(plain.metrics["mse"], rel=1e-3)


def test_two_techniques_that_change_the_evaluated_weights_are_refused_at_planning(cli, tmp_path, events_registry):
    ran = cli("bench", "-t", "zeroing-2+zeroing", "-d", TINY, "--epochs", "1", "--store", "r.sqlite", cwd=tmp_path,
              registry=events_registry)
    assert ran.returncode == 2
    assert ran.stderr.strip().splitlines()[-1] == (
        "Error: cannot combine zeroing and zeroing-2: both change the weights that are evaluated "
        "(around_evaluation); each would evaluate its own, so the row would measure neither")
    assert not (tmp_path / "r.sqlite").exists()


def test_a_misspelt_event_method_is_refused_when_the_plugin_loads():
    from aeframe import Technique
    from aeframe.registry.checks import technique_problems

    class Typo(Technique):
        name, title, base = "typo", "Typo", "baseline"

        def on_after_stpe(self, state):
            pass

    assert technique_problems(Typo()) == [
        "technique 'typo' defines 'on_after_stpe', which is not an event method; did you mean 'on_after_step'?",
        "technique 'typo' provides, wraps, declares and acts on nothing, so it would train its base 'baseline' "
        "under another name; define build_*/wrap_*/on_* methods"]


# ---------------------------------------------------------------- the optimizer and the rates


def test_a_technique_provides_the_optimizer_and_its_relative_rates_scale_whatever_the_phase_has(events_registry):
    built = resolve_technique("sgd", events_registry).build(context())
    assert [p.lrs() for p in built.schedule.phases] == [[pytest.approx(3e-2)], [pytest.approx(1e-2)]]
    optimizer = built.schedule.make_optimizer([{"params": list(built.model.parameters()), "lr": 1e-2}])
    assert isinstance(optimizer, torch.optim.SGD) and optimizer.defaults["nesterov"]
    # With progressive resizing's own rates: ten times them, the phases kept.
    resized = resolve_technique("progressive-resizing", events_registry).build(context())
    both = resolve_technique("sgd+progressive-resizing", events_registry).build(context())
    assert [p.lrs() for p in both.schedule.phases] == [
        [pytest.approx(10 * r) for r in p.lrs()] for p in resized.schedule.phases]
    assert [p.image_size for p in both.schedule.phases] == [p.image_size for p in resized.schedule.phases]


def test_relative_rates_multiply_in_either_order_and_an_explicit_rate_replaces_them(events_registry):
    for typed in ("sgd+half-rate", "half-rate+sgd"):
        built = resolve_technique(typed, events_registry).build(context())
        assert [p.lrs() for p in built.schedule.phases] == [[pytest.approx(1.5e-2)], [pytest.approx(5e-3)]]
    built = resolve_technique("sgd[lr=0.2]+half-rate", events_registry).build(context())
    assert [p.lrs() for p in built.schedule.phases] == [[pytest.approx(0.1)], [pytest.approx(0.1)]]


def test_a_factor_for_a_named_phase_takes_the_place_of_the_same_techniques_factor_for_every_phase(events_registry):
    from aeframe import RelativeRate, Technique
    from aeframe.planning.composition import Composition, Member

    class Mixed(Technique):
        name, title, base = "mixed", "Mixed", "baseline"
        learning_rates = {"*": RelativeRate(10), "run 2": RelativeRate(2)}

    composition = Composition([Member(Mixed(), {"lr": "own"})], events_registry.techniques.get,
                              reference=events_registry.reference)
    assert [p.lrs() for p in composition.build(context()).schedule.phases] == [[pytest.approx(3e-2)],
                                                                                [pytest.approx(2e-3)]]


def test_an_absolute_rate_for_every_phase_conflicts_with_one_for_a_named_phase(events_registry):
    with pytest.raises(CompositionError, match="cannot combine progressive-resizing and every-phase: both set the "
                                               "peak learning rate of phase 'run 2'"):
        resolve_technique("every-phase+progressive-resizing", events_registry)
    built = resolve_technique("every-phase", events_registry).build(context())
    assert [p.lrs() for p in built.schedule.phases] == [[5e-4], [5e-4]]


def test_an_optimizer_wrapper_wraps_whichever_optimizer_the_cell_has(events_registry):
    for typed, kind in (("no-decay", torch.optim.AdamW), ("sgd+no-decay", torch.optim.SGD)):
        built = resolve_technique(typed, events_registry).build(context())
        optimizer = built.schedule.make_optimizer([{"params": list(built.model.parameters()), "lr": 1e-3}])
        assert isinstance(optimizer, kind) and optimizer.param_groups[0]["weight_decay"] == 0.0


def test_two_techniques_that_provide_the_optimizer_or_the_curve_are_refused_naming_both(events_registry):
    with pytest.raises(CompositionError, match="cannot combine constant and cosine: both provide the lr_curve"):
        resolve_technique("constant+cosine", events_registry)


def test_sgd_with_a_cosine_curve_trains_and_beta1_is_left_alone(cli, tmp_path, events_registry):
    ran = cli("bench", "-t", "sgd+cosine+rate-probe", "-d", TINY, "--epochs", "2", "--no-channels-last",
              "--store", "r.sqlite", cwd=tmp_path, registry=events_registry)
    assert ran.returncode == 0, ran.stderr
    record = _records(tmp_path / "r.sqlite")["SGD + Cosine Schedule + Rate Probe"]
    assert record.status == "done" and math.isfinite(record.metrics["mse"])
    # The rate in effect at each step is the cosine's (5% warm-up) at ten times the Baseline's peaks.
    from aeframe_builtins.techniques.cosine import warm_cosine

    built = resolve_technique("sgd+cosine", events_registry).build(context())
    expected = []
    for step in range(4):
        index, q = built.schedule.locate(step / 4)
        expected.append(warm_cosine(q, built.schedule.phases[index].lrs()[0], warmup=0.05, final=0.0))
    assert [p["diagnostics"]["lr"] for p in record.curve] == [
        pytest.approx(sum(expected[:2]) / 2), pytest.approx(sum(expected[2:]) / 2)]


# ---------------------------------------------------------------- diagnostics


def test_diagnostics_reach_the_curve_the_json_and_the_csv(cli, tmp_path):
    ran = cli("bench", "-t", "ema+grad-clip[max_norm=1e-6]", "-d", TINY, "--epochs", "2", "--no-channels-last",
              "--store", "r.sqlite", cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    record = _records(tmp_path / "r.sqlite")["EMA + Gradient Clipping [max_norm=1e-06]"]
    for point in record.curve:
        found = point["diagnostics"]
        # A norm of 1e-6 clips every step; the average trails the live weights by a little.
        assert found["clipped_fraction"] == 1.0 and found["grad_norm"] > 1e-6
        assert 0 < found["ema_distance"] < 1
    as_json = json.loads(cli("report", "--store", "r.sqlite", "--format", "json", cwd=tmp_path).stdout)
    assert json.dumps(record.curve[-1]["diagnostics"], sort_keys=True) in json.dumps(as_json, sort_keys=True)
    lines = cli("report", "--store", "r.sqlite", "--format", "csv", cwd=tmp_path).stdout.splitlines()
    header, row = lines[0].split(","), lines[1].split(",")
    assert header[-3:] == ["diagnostic_clipped_fraction", "diagnostic_ema_distance", "diagnostic_grad_norm"]
    assert float(row[-3]) == 1.0 and float(row[-2]) == pytest.approx(record.curve[-1]["diagnostics"]["ema_distance"])


def test_two_techniques_recording_one_name_fail_the_cell_naming_both(events_registry, workspace):
    record = train_cell("echo+rate-probe", events_registry, workspace, budget=Budget(epochs=1))
    assert record.status == "failed"
    assert record.error.splitlines()[0].endswith(
        "techniques rate-probe and echo both record the diagnostic 'lr'; each technique records names of its own")


# ---------------------------------------------------------------- the built-ins that use them


def test_grad_clip_with_a_norm_never_reached_trains_exactly_as_the_baseline(events_registry, workspace):
    plain = train_cell("baseline", events_registry, workspace, budget=Budget(epochs=2))
    loose = train_cell("grad-clip[max_norm=1e9]", events_registry, workspace, budget=Budget(epochs=2))
    assert [p["train_loss"] for p in loose.curve] == [p["train_loss"] for p in plain.curve]
    assert loose.metrics["mse"] == plain.metrics["mse"]
    assert [p["diagnostics"]["clipped_fraction"] for p in loose.curve] == [0.0, 0.0]


def test_ema_evaluates_the_average_and_a_tiny_decay_is_the_live_weights(events_registry, workspace):
    plain = train_cell("baseline", events_registry, workspace, budget=Budget(epochs=2))
    averaged = train_cell("ema", events_registry, workspace, budget=Budget(epochs=2))
    instant = train_cell("ema[decay=1e-9]", events_registry, workspace, budget=Budget(epochs=2))
    # Training is untouched; only what is evaluated changes.
    for record in (averaged, instant):
        assert [p["train_loss"] for p in record.curve] == [p["train_loss"] for p in plain.curve]
    assert averaged.metrics["mse"] != pytest.approx(plain.metrics["mse"], rel=1e-4)
    assert instant.metrics["mse"] == pytest.approx(plain.metrics["mse"], rel=1e-5)
    assert instant.curve[-1]["diagnostics"]["ema_distance"] < 1e-6 < averaged.curve[-1]["diagnostics"]["ema_distance"]


def test_the_average_ema_evaluates_is_the_documented_one(events_registry):
    """EMA's update, step by step, against the formula docs/techniques.md gives."""
    from aeframe.training.events import CellEvents

    built = resolve_technique("ema[decay=0.9]", events_registry).build(context())
    events = CellEvents(built.actors, built.model, torch.device("cpu"))
    events.fire("on_train_start")
    weight = next(built.model.parameters())
    expected = weight.detach().clone()
    for n in range(1, 30):
        with torch.no_grad():
            weight.add_(0.01 * n)
        decay = min(0.9, (1 + n) / (10 + n))
        expected = decay * expected + (1 - decay) * weight.detach()
        events.after_step()
    live = weight.detach().clone()
    with events.evaluating():
        assert torch.allclose(weight, expected, atol=1e-6)
    assert torch.equal(weight, live)


def test_the_cosine_curve_warms_up_then_decays_to_its_final_share():
    from aeframe_builtins.techniques.cosine import warm_cosine

    assert warm_cosine(0.0, 1e-2, warmup=0.1, final=0.0) == 0.0
    assert warm_cosine(0.05, 1e-2, warmup=0.1, final=0.0) == pytest.approx(5e-3)
    assert warm_cosine(0.1, 1e-2, warmup=0.1, final=0.0) == pytest.approx(1e-2)
    assert warm_cosine(0.55, 1e-2, warmup=0.1, final=0.0) == pytest.approx(5e-3)
    assert warm_cosine(1.0, 1e-2, warmup=0.1, final=0.1) == pytest.approx(1e-3)


def test_the_issue_commands_train(cli, tmp_path):
    ran = cli("bench", "-t", "ema+grad-clip+cosine", "-t", "cosine+progressive-resizing", "-t", "baseline+l1-loss",
              "-t", "l1-loss", "-d", TINY, "--epochs", "2", "--no-channels-last", "--store", "r.sqlite", cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    assert "note: baseline+l1-loss is planned as l1-loss: every technique builds on Baseline (baseline), so listing " \
           "it adds nothing" in ran.stderr
    records = _records(tmp_path / "r.sqlite")
    assert sorted(records) == ["Cosine Schedule + Progressive Resizing", "EMA + Gradient Clipping + Cosine Schedule",
                               "L1 Loss"]
    assert all(r.status == "done" for r in records.values())
    # Progressive resizing's phases (half size, then full size) with cosine's curve.
    resized = records["Cosine Schedule + Progressive Resizing"]
    assert [p.image_size for p in resized.config.protocol.phases] == [16, None]


# ---------------------------------------------------------------- what is refused at planning


def test_a_rate_for_a_phase_the_schedule_lacks_is_refused_at_planning_before_any_training(cli, tmp_path,
                                                                                         events_registry):
    ran = cli("bench", "-t", "baseline", "-t", "wrong-phase", "-d", TINY, "--epochs", "1", "--store", "r.sqlite",
              cwd=tmp_path, registry=events_registry)
    assert ran.returncode == 2
    assert ran.stderr.strip().splitlines()[-1] == (
        "Error: technique wrong-phase declares a learning rate for phase 'run 3', but the schedule of "
        "baseline has the phases 'run 1', 'run 2' (found when planning; nothing was trained)")
    assert not (tmp_path / "r.sqlite").exists()


def test_validate_reports_a_composition_error_once(cli, tmp_path, events_registry):
    ran = cli("validate", "wrong-phase", cwd=tmp_path, registry=events_registry)
    assert ran.returncode == 1
    failed = [line for line in ran.stdout.splitlines() if "FAIL" in line]
    assert len(failed) == 1 and "its techniques combine" in failed[0] and "'run 3'" in failed[0]


def test_baseline_in_a_pair_is_never_planned_as_a_row_of_its_own(cli, tmp_path):
    ran = cli("bench", "-t", "baseline", "-t", "l1-loss", "-t", "cosine", "--combinations", "2", "-d", TINY,
              "--epochs", "1", "--no-channels-last", "--store", "r.sqlite", cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    assert sorted(_records(tmp_path / "r.sqlite")) == ["Baseline", "Cosine Schedule", "L1 Loss",
                                                       "L1 Loss + Cosine Schedule"]


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_step_events_are_captured_in_the_graph_and_agree_with_eager_steps(cli, tmp_path):
    for mode in ("--cuda-graphs", "--no-cuda-graphs"):
        ran = cli("bench", "-t", "ema+grad-clip[max_norm=0.05]", "-d", TINY, "--epochs", "2", "--device", "cuda",
                  "--precision", "fp32", mode, "--store", f"{mode}.sqlite", cwd=tmp_path)
        assert ran.returncode == 0, ran.stderr
    graphed = next(iter(_records(tmp_path / "--cuda-graphs.sqlite").values()))
    eager = next(iter(_records(tmp_path / "--no-cuda-graphs.sqlite").values()))
    assert graphed.stats.step_mode == "graphed" and eager.stats.step_mode == "eager"
    assert graphed.metrics["mse"] == pytest.approx(eager.metrics["mse"], rel=1e-3)
    for g, e in zip(graphed.curve, eager.curve):
        for name in ("clipped_fraction", "ema_distance", "grad_norm"):
            assert g["diagnostics"][name] == pytest.approx(e["diagnostics"][name], rel=1e-2, abs=1e-6)
