"""Caches are checked, not trusted, through the real CLI: a damaged or foreign entry is a warning and a
rebuild, never a failed cell; a cache that cannot be written (a full disk) is a warning, the run keeps
what it derived in memory; and a full disk met by a cell anywhere is the environment's failure, naming
the file, never the technique's (issue 26, cases 9 and 10)."""
from __future__ import annotations

import json
import math
import sqlite3
from pathlib import Path

import pytest
import torch

import aeframe_builtins.metrics.reference_classifier as rc
import aeframe_builtins.techniques.resnet_weights as rw
from aeframe.data.directories import environment_failure, is_full_disk, write_atomically
from aeframe.planning.plan import resolve_dataset
from aeframe.speed import cache as speed_cache
from aeframe.speed.cache import SpeedCache, entry_key
from aeframe.speed.layout import layout_problem
from aeframe.speed.step_mode import step_problem
from aeframe_builtins.datasets.shapes_generator import CLASSES, generate
from aeframe import ImageData
from conftest import TINY_SHAPES, installed_registry
from techniques import context

FAST = ("-d", TINY_SHAPES, "--epochs", "1", "--precision", "fp32", "--no-channels-last", "--store", "r.sqlite")
FULL = Path("/dev/full")  # every write to it fails with ENOSPC: a full disk without root or a small file system
needs_dev_full = pytest.mark.skipif(not FULL.exists(), reason="needs /dev/full (Linux) to fill a disk")


@pytest.fixture
def trainings(monkeypatch) -> list[str]:
    """The reference classifier trains in a few steps (what it scores is not the point here); each
    training is listed by dataset."""
    real, trained = rc.train_reference, []

    def counted(data, device, name):
        trained.append(name)
        return real(data, device, name)

    monkeypatch.setattr(rc, "training_steps", lambda images: (min(rc.RECIPE["batch"], images), 3))
    monkeypatch.setattr(rc, "train_reference", counted)
    return trained


def _bench(cli, tmp_path: Path, cache: Path, *techniques: str, registry=None, seeds: int = 1):
    chosen = [arg for name in techniques or ("baseline",) for arg in ("-t", name)]
    return cli("bench", *chosen, *FAST, "--seeds", str(seeds), cwd=tmp_path, env={"AEFRAME_CACHE": str(cache)},
               registry=registry)


def _cells(tmp_path: Path) -> list[tuple[str, str | None, dict]]:
    with sqlite3.connect(tmp_path / "r.sqlite") as db:
        return [(status, error, json.loads(stats)) for status, error, stats in
                db.execute("SELECT status, error, stats FROM cells")]


def _reference(stats: dict) -> object:
    return stats.get("metric_details", {}).get("classifier_accuracy", {}).get("reference")


def _entry(cache: Path, registry) -> tuple[Path, Path]:
    """The weights and facts files the tests' dataset's reference classifier is cached in under ``cache``."""
    choice = resolve_dataset(TINY_SHAPES, registry)
    return rc.cache_paths(cache, TINY_SHAPES, choice.plugin.load(Path("."), choice.params))


GOOD_FACTS = {"reference_accuracy": 0.5, "train_seconds": 2.0, "steps": 3, "batch": 256, "epochs": 3.0,
              "chance": 0.1, "chance_p": 1e-9, "at_chance": False, "recipe": rc.RECIPE}


def _cache_entry(cache: Path, registry, facts: object = GOOD_FACTS) -> tuple[Path, Path]:
    weights, facts_file = _entry(cache, registry)
    weights.parent.mkdir(parents=True)
    torch.save(rc.reference_classifier(3, 10).state_dict(), weights)
    facts_file.write_text(json.dumps(facts))
    return weights, facts_file


def _truncated(weights: Path, facts_file: Path) -> None:
    weights.write_bytes(weights.read_bytes()[:300])


def _nan_weights(weights: Path, facts_file: Path) -> None:
    state = torch.load(weights, weights_only=True)
    state["0.weight"].fill_(math.nan)
    torch.save(state, weights)


def _facts(value: object):
    return lambda weights, facts_file: facts_file.write_text(json.dumps(value))


# Each: how the entry is spoiled, which file the warning names, and what it says of it. The cases;
# the other ways facts can be wrong are checked below, without a run each.
SPOILED = {
    "facts []": (_facts([]), "json", "holds a JSON list, not an object of facts"),
    "facts {}": (_facts({}), "json", "has no recipe"),
    "accuracy high": (_facts({**GOOD_FACTS, "reference_accuracy": "high"}), "json",
                      'has reference_accuracy "high", not a number in [0, 1]'),
    "weights truncated": (_truncated, "pt", "cannot be read"),
}


@pytest.mark.parametrize("facts, said", [
    ({**GOOD_FACTS, "reference_accuracy": 7}, "has reference_accuracy 7, not a number in [0, 1]"),
    ({**GOOD_FACTS, "reference_accuracy": math.nan}, "has reference_accuracy NaN, not a number"),
    ({**GOOD_FACTS, "train_seconds": -1}, "has train_seconds -1, not a number in [0, inf]"),
    ({**GOOD_FACTS, "chance": True}, "has chance true, not a number"),
    ({**GOOD_FACTS, "steps": 2.5}, "has steps 2.5, not a whole number of at least 1"),
    ({**GOOD_FACTS, "at_chance": "no"}, 'has at_chance "no", not true or false'),
    ({**GOOD_FACTS, "recipe": {**rc.RECIPE, "version": 1}}, "has another recipe than this aeframe's"),
    ({k: v for k, v in GOOD_FACTS.items() if k != "batch"}, "has batch null, not a whole number"),
    (GOOD_FACTS, None),
])
def test_the_facts_of_a_cached_classifier_are_checked_field_by_field(facts, said):
    problem = rc.facts_problem(json.loads(json.dumps(facts)))
    assert problem == said if said is None else problem.startswith(said)


@pytest.mark.parametrize("spoil, said", [
    (_truncated, "cannot be read (RuntimeError)"),
    (_nan_weights, "holds weights that are not finite"),
    (lambda w, f: torch.save({"0.weight": torch.zeros(1)}, w), "does not fit this recipe's network"),
    (lambda w, f: torch.save([1, 2], w), "holds no state dict of tensors"),
    (lambda w, f: w.unlink(), "is missing"),
])
def test_the_weights_of_a_cached_classifier_are_checked(tmp_path, registry, spoil, said):
    weights, facts_file = _cache_entry(tmp_path, registry)
    spoil(weights, facts_file)
    facts, problem = rc._cached(weights, facts_file, rc.reference_classifier(3, 10))
    assert facts is None and problem == f"{weights} {said}"


@pytest.mark.parametrize("spoil", sorted(SPOILED))
def test_a_damaged_reference_classifier_cache_is_a_warning_and_a_rebuild_not_a_failed_cell(
        spoil, cli, tmp_path, registry, trainings):
    """Case 9: ``[]`` failed every cell with AttributeError, ``{}`` with KeyError after training, blamed on
    the technique; ``"high"`` silently dropped the Original Image row; damaged weights were trained
    again without a word."""
    cache = tmp_path / "cache"
    weights, facts_file = _cache_entry(cache, registry)
    how, named, said = SPOILED[spoil]
    how(weights, facts_file)
    result = _bench(cli, tmp_path, cache)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    [warning] = [line for line in result.stderr.splitlines() if "ignoring the cached reference classifier" in line]
    culprit = weights if named == "pt" else facts_file
    assert warning.startswith(f"warning: ignoring the cached reference classifier: {culprit} ")
    assert said in warning and warning.endswith("; training it again")
    assert trainings == [TINY_SHAPES]
    [(status, _, stats)] = _cells(tmp_path)
    reference = _reference(stats)
    assert status == "done" and isinstance(reference, float) and 0 <= reference <= 1  # the Original Image row
    # Rebuilt: the cache holds the new classifier, which the next run takes without a word.
    assert json.loads(facts_file.read_text())["reference_accuracy"] == reference
    assert rc._cached(weights, facts_file, rc.reference_classifier(3, 10)) == (json.loads(facts_file.read_text()), None)


def test_a_sound_cached_reference_classifier_is_used_as_it_is(cli, tmp_path, registry, trainings):
    cache = tmp_path / "cache"
    _cache_entry(cache, registry)
    result = _bench(cli, tmp_path, cache)
    assert result.returncode == 0, result.stderr
    assert "ignoring the cached" not in result.stderr and trainings == []
    [(status, _, stats)] = _cells(tmp_path)
    assert status == "done" and _reference(stats) == GOOD_FACTS["reference_accuracy"]
    # The report shows it as the Original Image row.
    report = cli("report", "--store", "r.sqlite", cwd=tmp_path)
    assert report.returncode == 0, report.stderr
    assert any(line.startswith("| Original Image |") for line in report.stdout.splitlines())


@needs_dev_full
def test_a_full_disk_under_the_reference_classifier_is_one_warning_and_the_run_goes_on(
        cli, tmp_path, monkeypatch, registry, trainings):
    """Case 10: torch.save's RuntimeError failed every cell, blamed on technique 'baseline', the classifier
    was trained again for every cell, and a partial ``*.tmp<PID>`` stayed in the cache."""
    real_save = torch.save
    cache = tmp_path / "cache"

    def full_disk(obj, f, *args, **kwargs):
        if not (isinstance(f, (str, Path)) and Path(f).is_relative_to(cache)):
            return real_save(obj, f, *args, **kwargs)
        Path(f).write_bytes(b"PK\x03\x04 what fitted")  # the start of the file, as a full disk leaves it
        real_save(obj, FULL, *args, **kwargs)  # torch's own error for it

    monkeypatch.setattr(torch, "save", full_disk)
    result = _bench(cli, tmp_path, cache, "baseline", "l1-loss")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert trainings == [TINY_SHAPES]  # once for the run, not once per cell
    warnings = [line for line in result.stderr.splitlines() if "cannot keep the reference classifier" in line]
    weights, _ = _entry(cache, registry)
    assert warnings == [
        f"warning: cannot keep the reference classifier in the cache: {weights}: the disk is full or failed (torch: "
        f"{_torch_error(real_save)}); this run uses it from memory and the next trains it again; free space there "
        "or point AEFRAME_CACHE at another directory"]
    cells = _cells(tmp_path)
    assert [status for status, _, _ in cells] == ["done"] * 2
    assert all(isinstance(_reference(stats), float) for _, _, stats in cells)
    assert sorted(p.name for p in (cache / "classifier").iterdir()) == [f"{weights.name}.lock"]  # no partial file


def _torch_error(save) -> str:
    with pytest.raises(RuntimeError) as caught:
        save(rc.reference_classifier(3, 10).state_dict(), FULL)
    return str(caught.value).strip()


KEEPS = '''
from aeframe import Param, Technique, hookimpl


class Keeps(Technique):
    """The Baseline, keeping its initial weights in the cache as it builds its model (torch.save, or a
    plain write of Python's)."""

    name, title, base = "keeps", "Keeps", "baseline"
    params = (Param("how", str, "torch", "torch or python"),)

    def wrap_model(self, model, ctx):
        import torch

        path = ctx.cache_dir / "keeps" / "state.pt"
        if ctx.params["how"] == "torch":
            torch.save(model.state_dict(), path)
        else:
            path.write_bytes(bytes(1 << 16))
        return model


@hookimpl
def register_techniques(register):
    register(Keeps())
'''


@pytest.fixture
def keeps_registry(tmp_path, monkeypatch):
    yield from installed_registry(tmp_path, monkeypatch, "aeframe-keeps", "keeps_techniques", KEEPS)


@pytest.mark.parametrize("how, disk", [("torch", "full"), ("python", "full"), ("python", "blocked")])
def test_a_full_disk_met_by_a_cell_is_the_environments_failure_not_the_techniques(
        how, disk, cli, tmp_path, keeps_registry, trainings):
    """Case 10: a write that fails for want of space fails its cell as the environment's, naming the file
    where it is known and saying what to do; the summary does not send the user to the plugin. So does
    a file in the cache that cannot be written (a file where its folder should be)."""
    if disk == "full" and not FULL.exists():
        pytest.skip("needs /dev/full (Linux) to fill a disk")
    cache = tmp_path / "cache"
    target = cache / "keeps" / "state.pt"
    cache.mkdir()
    if disk == "full":
        target.parent.mkdir()
        target.symlink_to(FULL)
    else:
        target.parent.write_text("where the folder should be")
    result = _bench(cli, tmp_path, cache, f"keeps[how={how}]", "baseline", registry=keeps_registry)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    [summary] = [line for line in result.stderr.splitlines() if line.startswith("aeframe: failed: ")]
    if disk == "blocked":
        line = f"environment: cannot use {target} (Not a directory); check AEFRAME_CACHE ({cache})"
    elif how == "torch":  # torch.save names no file; the line finds it
        line = (f"environment: no space left to write {target}; free space on that disk or point AEFRAME_CACHE at a "
                f"directory on another ({cache} now)")
    else:  # a plain write() names no file, and nothing tells which it was
        line = ("environment: a write failed for want of space (OSError: [Errno 28] No space left on device); free "
                f"space on the disk it wrote to (perhaps that of AEFRAME_CACHE ({cache}) or of --data-dir or "
                "AEFRAME_DATA")
    label = "Keeps" if how == "torch" else "Keeps [how=python]"
    assert summary.startswith(f"aeframe: failed: {label} on shapes (seed 0): {line}"), summary
    assert "from plugin" not in summary and "keeps_techniques" not in summary
    statuses = sorted((status, (error or "").split("\n")[0]) for status, error, _ in _cells(tmp_path))
    assert statuses[0] == ("done", "") and statuses[1][0] == "failed" and statuses[1][1].startswith(line)


# --- the pieces, one by one ------------------------------------------------------------------------


@needs_dev_full
def test_write_atomically_names_the_file_of_a_full_disk_and_leaves_no_partial_file(tmp_path):
    target = tmp_path / "kept.pt"
    target.write_bytes(b"the earlier, whole file")

    def torch_to_full(partial: Path) -> None:
        partial.write_bytes(b"PK")
        torch.save({"w": torch.zeros(10)}, FULL)

    def python_to_full(partial: Path) -> None:
        partial.write_bytes(b"PK")
        FULL.write_bytes(b"x")

    for write in (torch_to_full, python_to_full):
        with pytest.raises(OSError) as caught:
            write_atomically(target, write)
        assert caught.value.filename == str(target) and is_full_disk(caught.value)
        assert sorted(p.name for p in tmp_path.iterdir()) == ["kept.pt"]
        assert target.read_bytes() == b"the earlier, whole file"
        line = environment_failure(caught.value, {"AEFRAME_CACHE": tmp_path})
        assert line == (f"environment: no space left to write {target}; free space on that disk or point "
                        f"AEFRAME_CACHE at a directory on another ({tmp_path} now)")


def test_a_torch_read_error_is_no_full_disk():
    damaged = RuntimeError("PytorchStreamReader failed reading zip archive: failed finding central directory")
    assert not is_full_disk(damaged) and environment_failure(damaged, {}) is None


def test_a_damaged_speed_cache_is_one_warning_and_measured_again(tmp_path, capsys):
    (tmp_path / speed_cache.FILE_NAME).write_text('{"format": 1, "entries": [')
    cache = SpeedCache(tmp_path)
    assert cache.get("k") is None and SpeedCache(tmp_path).get("k") is None
    err = capsys.readouterr().err
    assert err.count("warning: ignoring the speed cache") == 1 and str(tmp_path / speed_cache.FILE_NAME) in err
    cache.put("k", {"memory_format": "contiguous"})  # the next write replaces the damaged file
    assert SpeedCache(tmp_path).get("k", layout_problem) == {"memory_format": "contiguous"}


@pytest.mark.parametrize("entry, check, said", [
    ({"memory_format": "sideways"}, layout_problem, 'memory_format is "sideways"'),
    ({"memory_format": ["channels_last"]}, layout_problem, "memory_format is"),
    ({"memory_format": "channels_last", "images_per_second": [1, 2]}, layout_problem, "is not a mapping"),
    ({"memory_format": "channels_last", "images_per_second": {"contiguous": "fast"}}, layout_problem, "not a rate"),
    ({"step_mode": "graphed", "images_per_second": {"eager": -1}}, step_problem, "not a rate"),
    ({"step_mode": "eager", "busy": 3}, step_problem, "busy is 3"),
    ({"step_mode": "eager", "reason": ["x"]}, step_problem, "reason is not text"),
    ("eager", step_problem, "it is not a mapping"),
])
def test_a_speed_choice_of_the_wrong_type_is_a_warning_and_measured_again(tmp_path, capsys, entry, check, said):
    key = entry_key("layout" if check is layout_problem else "step", device="cpu")
    (tmp_path / speed_cache.FILE_NAME).write_text(json.dumps({"format": 1, "entries": {key: entry}}))
    assert SpeedCache(tmp_path).get(key, check) is None
    err = capsys.readouterr().err
    assert f"warning: ignoring the cached {json.loads(key)['kind']} choice in {tmp_path}" in err and said in err


_MEASURED = {"images_per_second": 1000.0, "forward_error": 0.0, "trained_mse_change": 0.0, "finite": True,
             "graphed": False}


@pytest.mark.parametrize("entry, said", [
    ({"precision": "fp64", "measurements": {}}, 'precision "fp64" is none of'),
    ({"precision": "bf16", "measurements": []}, "its measurements are not a mapping"),
    ({"precision": "bf16", "measurements": {"fp32": {**_MEASURED, "images_per_second": "fast"}}}, "not a finite"),
    ({"precision": "bf16", "measurements": {"fp32": {**_MEASURED, "forward_error": math.nan}}}, "not a finite"),
    ({"precision": "bf16", "measurements": {"fp32": {**_MEASURED, "images_per_second": -5.0}}}, "negative"),
    ({"precision": "bf16", "measurements": {"fp32": {"images_per_second": 1.0}}}, "has other fields"),
    ({"precision": "bf16", "measurements": {"fp32": {**_MEASURED, "finite": "yes"}}}, "other than true or false"),
])
def test_a_cached_precision_of_the_wrong_shape_is_a_warning_and_measured_again(tmp_path, capsys, monkeypatch, entry,
                                                                                said):
    # Seen: measurements as a list ended the bench with "unexpected AttributeError"; a rate "fast" with
    # ValueError from the line that describes the choice.
    from aeframe.speed import precision_probe

    monkeypatch.setattr(precision_probe, "measure", lambda device, names: {"fp32": precision_probe.Measurement(
        **_MEASURED)})
    monkeypatch.setattr(precision_probe, "busy_share", lambda share: False)
    key = precision_probe.precision_key("this CPU (2 threads)", torch.__version__.split("+")[0])
    (tmp_path / speed_cache.FILE_NAME).write_text(json.dumps({"format": 1, "entries": {key: entry}}))
    choice = precision_probe.choose_precision(torch.device("cpu"), "this CPU (2 threads)", SpeedCache(tmp_path))
    assert (choice.source, choice.precision) == ("measured", "fp32")
    assert choice.describe().startswith("precision fp32 (measured now")
    err = capsys.readouterr().err
    assert f"warning: ignoring the cached precision choice in {tmp_path}" in err and said in err


def test_a_speed_cache_that_cannot_be_written_warns_once_and_keeps_the_choices_for_the_run(tmp_path, capsys):
    blocked = tmp_path / "afile"
    blocked.write_text("in the way of the cache directory")
    SpeedCache(blocked).put("k", {"memory_format": "contiguous"})
    SpeedCache(blocked).put("j", {"memory_format": "contiguous"})
    # A later cell's cache (each cell makes its own) still finds both.
    assert SpeedCache(blocked).get("k") and SpeedCache(blocked).get("j")
    assert capsys.readouterr().err.count("warning: cannot keep speed choices in") == 1


# --- the pretrained ResNet body's cache (pretrained-resnet[weights=DATASET]) ------------------------


@pytest.fixture
def pretrainings(monkeypatch) -> list[str]:
    """Pretraining gives a body at once (its weights are not the point here); each is listed by dataset."""
    done = []

    def quick(data, name, shape, epochs, device):
        done.append(name)
        return {k: v.clone() for k, v in rw.resnet34_body().state_dict().items()}

    monkeypatch.setattr(rw, "train_classifier_body", quick)
    return done


def _pretrain(tmp_path: Path, cache: Path):
    from dataclasses import replace

    data = ImageData(train=generate(256, 0, "train"), test=generate(64, 0, "test"), classes=list(CLASSES))
    ctx = replace(context(), cache_dir=cache, load_dataset=lambda text: data)
    return rw.pretrained_on_dataset(ctx, "shapes", 1), ctx


@pytest.mark.parametrize("spoil", ["truncated", "foreign", "cost"])
def test_a_damaged_pretrained_body_is_a_warning_and_pretrained_again(tmp_path, capsys, pretrainings, spoil):
    cache = tmp_path / "cache"
    (_, where), _ = _pretrain(tmp_path, cache)
    path = Path(where)
    if spoil == "truncated":
        path.write_bytes(path.read_bytes()[:1000])
    elif spoil == "foreign":
        torch.save({"conv1.weight": torch.zeros(3)}, path)
    else:
        path.with_suffix(".cost.json").write_text('{"seconds": "a while"}')
    capsys.readouterr()
    _, ctx = _pretrain(tmp_path, cache)
    err = capsys.readouterr().err
    if spoil == "cost":  # the body is sound: reused, at an unknown cost rather than a wrong one
        assert pretrainings == ["shapes"] and ctx.preparations[0].seconds is None and "warning" not in err
        return
    assert f"warning: ignoring the cached {path}: it " in err and "; pretraining again" in err
    assert pretrainings == ["shapes", "shapes"]
    rw.load_body(rw.resnet34_body(), torch.load(path, weights_only=True), str(path))  # replaced by a sound one


def test_a_pretrained_body_the_cache_cannot_keep_is_one_warning_and_pretrained_once(tmp_path, capsys, pretrainings):
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / rw.PRETRAINED).write_text("in the way of the pretrained bodies")
    first, _ = _pretrain(tmp_path, cache)
    second, ctx = _pretrain(tmp_path, cache)
    assert pretrainings == ["shapes"] and ctx.preparations[0].reused
    assert first[0] is second[0]
    assert capsys.readouterr().err.count("warning: cannot keep the pretrained body in the cache") == 1
