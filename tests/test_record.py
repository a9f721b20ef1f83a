"""Typed cell configurations: what the store writes, and every older form it still reads."""
from __future__ import annotations

import json
import sqlite3
from dataclasses import replace

import pytest

from aeframe.cells.record import (
    CELL,
    SKIPPED_DATASET,
    SKIPPED_TECHNIQUE,
    BudgetLimits,
    CellConfig,
    CellRecord,
    DatasetRef,
    DeviceRef,
    PhaseSummary,
    Protocol,
    Provenance,
    TechniqueRef,
)
from aeframe.cells.settings import Speed
from aeframe.store.sqlite_store import Store

# A done cell's config exactly as aeframe 0.1.0 stored it (tests/data/store-0.1.0.sqlite).
CELL_0_1_0 = {
    "budget": {"epochs": 1, "seconds": None}, "channels_last": True, "compile": False,
    "dataset": {"name": "shapes", "params": {"seed": "0", "test": "64", "train": "256"}, "title": "Shapes"},
    "device": {"name": "AMD EPYC (2 threads)", "type": "cpu"}, "label": "Baseline", "lr": "study",
    "plugins": {"baseline": "plugin 'baseline' (aeframe 0.1.0, built in)"}, "precision": "bf16",
    "protocol": {"batch_size": 128, "phases": [
        {"fraction": 0.333333, "image_size": None, "max_lr": [0.003], "name": "run 1"},
        {"fraction": 0.666667, "image_size": None, "max_lr": [0.001], "name": "run 2"}]},
    "provenance": {"command": "aeframe bench -t baseline -d shapes", "commit": "6b17315344cc"},
    "reference": True, "seed": 0,
    "techniques": [{"name": "baseline", "params": {"latent": "1000"}, "version": "0.1.0"}],
    "versions": {"aeframe": "0.1.0", "python": "3.11.7", "torch": "2.14.1", "torchvision": "0.29.1"},
}


def full_config(**changes) -> CellConfig:
    return replace(CellConfig(
        kind=CELL,
        label="Pixel Shuffle [icnr=true]",
        reference=False,
        techniques=[TechniqueRef("pixel-shuffle", {"icnr": "true"}, "0.1.0")],
        dataset=DatasetRef("shapes", "Shapes", {"train": "256"}),
        seed=2,
        budget=BudgetLimits(15, 60.0),
        lr="find",
        speed=Speed("bf16", True, True),
        device=DeviceRef("cuda", "NVIDIA H200"),
        versions={"aeframe": "0.2.0", "torch": "2.5.0"},
        provenance=Provenance("aeframe bench -t pixel-shuffle", "0123abcd"),
        plugins={"pixel-shuffle": "plugin 'pixel_shuffle' (aeframe 0.2.0, built in)"},
        protocol=Protocol(64, [PhaseSummary("run 1", 0.5, [0.003], 16), PhaseSummary("run 2", 0.5, [0.001, 0.002])]),
    ), **changes)


def test_a_config_survives_its_json_form_and_a_store():
    config = full_config()
    assert CellConfig.from_json(json.loads(json.dumps(config.to_json()))) == config


def test_the_json_form_has_the_keys_older_aeframes_read_plus_kind():
    written = CellConfig.from_json(CELL_0_1_0, "done").to_json()
    assert set(written) == set(CELL_0_1_0) | {"kind"}
    assert written["kind"] == CELL
    assert {k: v for k, v in written.items() if k != "kind"} == CELL_0_1_0


def test_a_0_1_0_cell_reads_into_typed_parts():
    config = CellConfig.from_json(CELL_0_1_0, "done")
    assert config.kind == CELL and config.reference and config.seed == 0
    assert config.techniques == [TechniqueRef("baseline", {"latent": "1000"}, "0.1.0")]
    assert config.dataset == DatasetRef("shapes", "Shapes", {"seed": "0", "test": "64", "train": "256"})
    assert config.budget == BudgetLimits(1, None) and config.speed == Speed("bf16", True, False)
    assert config.device.describe() == "AMD EPYC (2 threads) (cpu)"
    assert config.protocol.batch_size == 128 and config.protocol.phases[1].max_lr == [0.001]
    assert config.provenance == Provenance("aeframe bench -t baseline -d shapes", "6b17315344cc")


@pytest.mark.parametrize(
    "status, drop, kind",
    [
        ("done", (), CELL),
        ("failed", (), CELL),
        ("diverged", (), CELL),
        ("skipped", (), SKIPPED_TECHNIQUE),  # techniques given: one of them cannot run here
        ("skipped", ("techniques", "seed"), SKIPPED_DATASET),  # no techniques: the dataset could not be had
        (None, ("techniques", "seed"), SKIPPED_DATASET),
    ],
)
def test_a_config_without_kind_gets_the_kind_it_stands_for(status, drop, kind):
    old = {k: v for k, v in CELL_0_1_0.items() if k not in drop}
    assert CellConfig.from_json(old, status).kind == kind


def test_an_explicit_kind_wins_and_a_skipped_dataset_writes_no_techniques_or_seed():
    skipped = full_config(kind=SKIPPED_DATASET, techniques=[], seed=None)
    written = skipped.to_json()
    # An older aeframe tells a skipped dataset by its missing techniques.
    assert "techniques" not in written and "seed" not in written
    assert CellConfig.from_json(written, "skipped").kind == SKIPPED_DATASET
    assert CellConfig.from_json(full_config(kind=SKIPPED_TECHNIQUE).to_json(), "done").kind == SKIPPED_TECHNIQUE


def test_unknown_keys_are_kept_and_written_back():
    newer = {**CELL_0_1_0, "kind": "cell", "energy_joules": 12.5,
             "dataset": {**CELL_0_1_0["dataset"], "checksum": "abc"},
             "device": {**CELL_0_1_0["device"], "memory_gb": 141}}
    config = CellConfig.from_json(newer, "done")
    assert config.extra == {"energy_joules": 12.5}
    assert config.to_json() == newer


def test_missing_optional_keys_and_odd_values_do_not_fail():
    bare = CellConfig.from_json({}, "done")
    assert bare == CellConfig(kind=CELL)
    assert (bare.lr, bare.speed, bare.protocol, bare.provenance) == ("study", Speed(), None, None)
    # Early records described the protocol as text: kept as it was, not read as something else.
    text = CellConfig.from_json({"label": "Baseline", "techniques": [], "protocol": "adam lr=1e-3"}, "done")
    assert text.protocol is None and text.to_json()["protocol"] == "adam lr=1e-3"
    partial = CellConfig.from_json({"techniques": [{"name": "baseline"}], "protocol": {"phases": [{}]}}, "done")
    assert partial.techniques == [TechniqueRef("baseline")] and partial.protocol.phases == [PhaseSummary()]


def test_a_record_takes_a_typed_config_only():
    with pytest.raises(TypeError, match="CellConfig.from_json"):
        CellRecord("k", {"label": "Baseline"}, "done")


def test_the_store_writes_the_kind_and_reads_it_back(tmp_path):
    path = tmp_path / "r.sqlite"
    records = [CellRecord("a", full_config(), "done"),
               CellRecord("b", full_config(kind=SKIPPED_TECHNIQUE), "skipped", error="no weights"),
               CellRecord("c", full_config(kind=SKIPPED_DATASET, techniques=[], seed=None), "skipped", error="no files")]
    with Store(path) as store:
        for record in records:
            store.save(record)
        assert store.records() == records
    with sqlite3.connect(path) as db:
        stored = dict(db.execute("SELECT key, json_extract(config, '$.kind') FROM cells"))
        seeds = dict(db.execute("SELECT key, seed FROM cells"))
    assert stored == {"a": CELL, "b": SKIPPED_TECHNIQUE, "c": SKIPPED_DATASET}
    assert seeds == {"a": 2, "b": 2, "c": None}


def test_a_dataset_that_cannot_be_had_is_one_record_of_its_kind(registry):
    from aeframe.cells.budget import Budget
    from aeframe.execution.groups import skipped_record
    from aeframe.planning.plan import plan_cells, resolve_dataset, resolve_technique

    cell = plan_cells([resolve_technique("baseline", registry)], [resolve_dataset("shapes[train=256]", registry)], 2,
                      Budget(epochs=1), {"type": "cpu", "name": "Test CPU"}, {"aeframe": "0", "torch": "0"},
                      registry)[0]
    config = skipped_record(cell, "no files").config
    assert (config.kind, config.label, config.seed, config.techniques) == (SKIPPED_DATASET, "shapes[train=256]", None, [])
    assert config.dataset == cell.config.dataset and config.budget == cell.config.budget


def test_a_skip_fails_the_run_only_where_its_dataset_or_technique_was_named():
    from aeframe.execution.bench import BenchOutcome

    dataset = CellRecord("d", CellConfig(kind=SKIPPED_DATASET, dataset=DatasetRef("cifar10")), "skipped")
    technique = CellRecord("t", CellConfig(kind=SKIPPED_TECHNIQUE, dataset=DatasetRef("shapes")), "skipped")
    assert BenchOutcome([dataset], [], set()).exit_code == 0  # --all found it missing
    assert BenchOutcome([dataset], [], {"cifar10"}).exit_code == 1
    assert BenchOutcome([technique], [], {"shapes"}, named_techniques=False).exit_code == 0
    assert BenchOutcome([technique], [], set(), named_techniques=True).exit_code == 1


def test_the_commit_is_dirty_for_changed_code_but_not_for_the_runs_own_store_kept_in_the_checkout(tmp_path):
    # The leaderboard's store is kept in the repository: filling it named the commit "+dirty" though
    # the code was the commit's.
    import subprocess

    from aeframe.execution.environment import source_revision

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(tmp_path), *args], check=True, capture_output=True, text=True).stdout

    git("init", "-q")
    (tmp_path / "code.py").write_text("x = 1\n")
    (tmp_path / "docs").mkdir()
    store = tmp_path / "docs" / "store.sqlite"
    store.write_bytes(b"cells")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "first")
    commit = git("rev-parse", "--short=12", "HEAD").strip()
    store.write_bytes(b"more cells")
    assert source_revision(store, root=tmp_path) == commit
    assert source_revision(None, root=tmp_path) == commit + "+dirty"  # another run's store is a change
    (tmp_path / "code.py").write_text("x = 2\n")
    assert source_revision(store.parent / "other.sqlite", root=tmp_path) == commit + "+dirty"
