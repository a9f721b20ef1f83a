"""A name that plugins of two distributions register: both stay usable as ``DIST:name``, the bare name is
refused naming both, and names nobody else registers do not change (issue 25).

The third party is tests/name_clash_plugins.py, installed as the distribution ``aeframe-clash`` (a
dist-info folder, as pip leaves one) beside the built-ins: ``pixel-shuffle`` titled as the built-in is,
``halved-loss`` built on it, and, in a second registry, the dataset ``shapes`` and the executor ``local``.
"""
from __future__ import annotations

import json
from importlib.metadata import EntryPoint, distributions, entry_points
from pathlib import Path

import pytest

from aeframe.cells.spec import CellSpec
from aeframe.errors import SpecError
from aeframe.planning.rebuild import runnable
from aeframe.planning.syntax import parse_component
from aeframe.registry.plugins import BUILTIN_DIST, GROUP, Registry, build_registry
from aeframe.store.sqlite_store import Store

from conftest import TINY_SHAPES

DIST = "aeframe-clash"
# Speed settings fixed: measured on a machine that other work keeps busy, they may differ between runs,
# and with them the cell's key, when the resumption is what is tested.
BUDGET = ("--epochs", "1", "--no-channels-last", "--precision", "fp32", "--store", "r.sqlite")
OURS, THEIRS = "aeframe:pixel-shuffle", "aeframe-clash:pixel-shuffle"
REFUSED = ("technique 'pixel-shuffle' is registered by two plugins; say which: -t aeframe:pixel-shuffle or "
           "-t aeframe-clash:pixel-shuffle")


def _builtins() -> list[EntryPoint]:
    return [ep for ep in entry_points(group=GROUP) if ep.dist is not None and ep.dist.metadata["Name"] == BUILTIN_DIST]


def _beside_builtins(site: Path, name: str, value: str) -> Registry:
    """The built-ins and ``aeframe-clash`` 0.1, installed in ``site`` with the entry point ``name = value``."""
    info = site / "aeframe_clash-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {DIST}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[{GROUP}]\n{name} = {value}\n")
    (dist,) = distributions(path=[str(site)])
    registry = build_registry([*_builtins(), *dist.entry_points], autoload=True)
    assert registry.warnings == []
    return registry


@pytest.fixture(scope="module")
def clashing(tmp_path_factory) -> Registry:
    """The built-ins and the third party's techniques."""
    return _beside_builtins(tmp_path_factory.mktemp("site"), "clash", "name_clash_plugins:techniques")


@pytest.fixture(scope="module")
def clashing_data(tmp_path_factory) -> Registry:
    """The built-ins and the third party's dataset and executor."""
    return _beside_builtins(tmp_path_factory.mktemp("site"), "clash-data", "name_clash_plugins:datasets")


def _cells(path: Path):
    with Store(path, write=False) as store:
        return {r.config.label: r for r in store.records()}


def test_both_are_registered_under_their_qualified_names_and_only_there(clashing):
    assert "pixel-shuffle" not in clashing.techniques
    assert clashing.ambiguous[("technique", "pixel-shuffle")] == [OURS, THEIRS]
    ours, theirs = clashing.techniques[OURS], clashing.techniques[THEIRS]
    assert (ours.name, ours.title) == (OURS, "Pixel Shuffle (aeframe)")
    assert (theirs.name, theirs.title) == (THEIRS, "Pixel Shuffle (aeframe-clash)")
    assert type(ours).__name__ == "PixelShuffle" and type(theirs).__name__ == "DoubledLoss"
    # The plugins' own objects are left as they made them: the built-in stays bare in other registries.
    assert build_registry(_builtins(), autoload=True).techniques["pixel-shuffle"].title == "Pixel Shuffle"
    # A base named bare means the one of the technique's own distribution.
    assert clashing.techniques["halved-loss"].base == THEIRS
    # Names nobody else registers are untouched.
    assert clashing.techniques["baseline"].name == "baseline" and clashing.reference.name == "baseline"
    assert clashing.plugin_of("technique", THEIRS).dist == DIST
    assert clashing.plugin_of("technique", OURS).dist == BUILTIN_DIST
    with pytest.raises(SpecError) as refused:
        clashing.technique("pixel-shuffle")
    assert str(refused.value) == REFUSED


def test_without_a_distribution_the_entry_point_names_it():
    loose = EntryPoint(name="loose", value="name_clash_plugins:techniques", group=GROUP)
    registry = build_registry([*_builtins(), loose], autoload=True)
    assert registry.ambiguous[("technique", "pixel-shuffle")] == [OURS, "loose:pixel-shuffle"]


def test_a_clashing_metric_keeps_the_builtin_and_reports_it():
    # Metrics are not qualified: their names key stored values and columns in every store.
    other = EntryPoint(name="other", value="name_clash_plugins:metrics", group=GROUP)
    registry = build_registry([*_builtins(), other], autoload=True)
    assert registry.metrics["mse"].title == "MSE" and not registry.ambiguous
    assert registry.warnings == [("plugin 'other' registers metric 'mse', which plugin 'pixel_metrics' already "
                                  "registered; 'pixel_metrics''s is kept")]


def test_qualified_names_parse_and_malformed_ones_are_refused():
    assert parse_component("aeframe-clash:pixel-shuffle[icnr=true]").name == THEIRS
    with pytest.raises(SpecError, match="at most one ':'"):
        parse_component("a:b:pixel-shuffle")


def test_the_bare_name_is_refused_naming_both(cli, tmp_path, clashing):
    for args in (("bench", "-t", "pixel-shuffle", "-d", TINY_SHAPES, *BUDGET),
                 ("bench", "-t", "baseline+pixel-shuffle[icnr=true]", "-d", TINY_SHAPES, *BUDGET),
                 ("validate", "pixel-shuffle")):
        result = cli(*args, cwd=tmp_path, registry=clashing)
        assert result.returncode == 2, result.stderr
        assert result.stderr.strip().splitlines()[-1] == f"Error: {REFUSED}"
    assert not (tmp_path / "r.sqlite").exists()


def test_each_qualified_name_trains_its_own_rows_and_resumes(cli, tmp_path, clashing):
    grid = ("-t", OURS, "-t", THEIRS, "-t", f"{THEIRS}+halved-loss", "-d", TINY_SHAPES, *BUDGET)
    result = cli("bench", *grid, cwd=tmp_path, registry=clashing)
    assert result.returncode == 0, result.stderr
    cells = _cells(tmp_path / "r.sqlite")
    assert {label: r.status for label, r in cells.items()} == {
        "Pixel Shuffle (aeframe)": "done", "Pixel Shuffle (aeframe-clash)": "done",
        "Pixel Shuffle (aeframe-clash) + Halved Loss": "done"}
    assert [t.name for t in cells["Pixel Shuffle (aeframe-clash) + Halved Loss"].config.techniques] == [
        THEIRS, "halved-loss"]
    # The stored name rebuilds the same technique.
    for label, technique in (("Pixel Shuffle (aeframe)", "PixelShuffle"),
                             ("Pixel Shuffle (aeframe-clash)", "DoubledLoss")):
        record = cells[label]
        assert record.config.plugins[record.config.techniques[0].name].startswith("plugin ")
        rebuilt = runnable(CellSpec(record.config, TINY_SHAPES), clashing)
        assert type(rebuilt.composition.members[0].technique).__name__ == technique
    assert cells["Pixel Shuffle (aeframe)"].metrics["mse"] != cells["Pixel Shuffle (aeframe-clash)"].metrics["mse"]

    again = cli("bench", *grid, cwd=tmp_path, registry=clashing)
    assert again.returncode == 0 and "3 of 3 cells already done" in again.stderr, again.stderr

    report = cli("report", "--store", "r.sqlite", "--format", "json", cwd=tmp_path, registry=clashing)
    rows = [row["label"] for d in json.loads(report.stdout)["datasets"] for t in d["tables"] for row in t["rows"]]
    assert {"Pixel Shuffle (aeframe)", "Pixel Shuffle (aeframe-clash)",
            "Pixel Shuffle (aeframe-clash) + Halved Loss"} <= set(rows)


def test_validate_and_list_take_the_qualified_names(cli, tmp_path, clashing):
    checked = cli("validate", THEIRS, cwd=tmp_path, registry=clashing)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout and all(line.startswith(f"PASS technique {THEIRS}: ")
                                  for line in checked.stdout.splitlines())
    listed = json.loads(cli("list", "techniques", "--json", cwd=tmp_path, registry=clashing).stdout)
    names = [row["name"] for row in listed]
    assert names[names.index(OURS) + 1] == THEIRS and "pixel-shuffle" not in names
    assert next(row for row in listed if row["name"] == "halved-loss")["base"] == THEIRS
    plugins = json.loads(cli("plugins", "--json", cwd=tmp_path, registry=clashing).stdout)
    assert next(p for p in plugins if p["name"] == "clash")["registered"] == {"technique": [THEIRS, "halved-loss"]}


def test_a_name_nobody_else_registers_is_stored_as_before(cli, tmp_path, clashing):
    # Trained beside the clashing plugin, the Baseline's cell is the one the built-ins alone would store:
    # a store made before the plugin was installed resumes.
    first = cli("bench", "-t", "baseline", "-d", TINY_SHAPES, *BUDGET, cwd=tmp_path, registry=clashing)
    assert first.returncode == 0, first.stderr
    (record,) = _cells(tmp_path / "r.sqlite").values()
    assert [t.name for t in record.config.techniques] == ["baseline"] and record.config.label == "Baseline"
    assert record.config.dataset.name == "shapes"
    alone = cli("bench", "-t", "baseline", "-d", TINY_SHAPES, *BUDGET, cwd=tmp_path)
    assert alone.returncode == 0 and "1 of 1 cells already done" in alone.stderr


def test_datasets_and_executors_clash_the_same_way(cli, tmp_path, clashing_data):
    dataset = f"{DIST}:{TINY_SHAPES}"
    refused = cli("bench", "-t", "baseline", "-d", TINY_SHAPES, *BUDGET, "--executor", "aeframe:local",
                  cwd=tmp_path, registry=clashing_data)
    assert refused.returncode == 2
    assert ("dataset 'shapes' is registered by two plugins; say which: -d aeframe:shapes or -d aeframe-clash:shapes"
            in refused.stderr)
    default = cli("bench", "-t", "baseline", "-d", dataset, *BUDGET, cwd=tmp_path, registry=clashing_data)
    assert default.returncode == 2
    assert "say which: --executor aeframe:local or --executor aeframe-clash:local" in default.stderr

    ran = cli("bench", "-t", "baseline", "-d", dataset, *BUDGET, "--executor", "aeframe:local", cwd=tmp_path,
              registry=clashing_data)
    assert ran.returncode == 0, ran.stderr
    (record,) = _cells(tmp_path / "r.sqlite").values()
    assert (record.config.dataset.name, record.config.dataset.title) == ("aeframe-clash:shapes", "Other Shapes")
    assert ran.stdout.startswith("## Other Shapes")
    assert runnable(CellSpec(record.config, dataset), clashing_data).dataset.plugin.title == "Other Shapes"
