"""The study's techniques and those beyond it: each cell records which it trained (Technique.in_study),
and the report splits a condition's table in two where it holds both, the Baseline leading each."""
from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime, timezone

import pytest

from aeframe.cells.record import CellConfig, CellRecord
from aeframe.cells.spec import cell_key
from aeframe.report.leaderboard import leaderboard_page
from aeframe.report.render import render
from aeframe.report.stats import holm
from conftest import TINY_SHAPES
from test_report import METRICS, tables

STUDY = ("baseline", "pixel-shuffle", "progressive-resizing", "resnet", "pretrained-resnet", "feature-loss")
GENERATED = datetime(2026, 12, 8, tzinfo=timezone.utc)


def cell(label: str, *techniques: str, in_study: bool | None, seed: int = 0, mse: float = 0.01,
         command: str = "aeframe bench -d shapes --epochs 2") -> CellRecord:
    """A done cell of ``techniques`` (names, at no parameters); ``in_study`` None: stored before cells said."""
    data = {
        "label": label, "reference": label == "Baseline", "seed": seed,
        "techniques": [{"name": name, "params": {}, "version": "0.3.0"} for name in techniques],
        "dataset": {"name": "shapes", "title": "Shapes", "params": {}},
        "budget": {"epochs": 2, "seconds": None}, "device": {"type": "cpu", "name": "Test CPU"},
        "versions": {"aeframe": "0.3.0", "torch": "2.4.1"},
        "provenance": {"command": command, "commit": "0123456789ab"},
    }
    if in_study is not None:
        data["in_study"] = in_study
    return CellRecord(key=f"{label}/{seed}", config=CellConfig.from_json(data), status="done",
                      metrics={"mse": mse + seed / 1000, "psnr": 30.0 - 100 * mse},
                      stats={"train_seconds": 2.0, "epochs": 2.0})


def study_and_beyond(seeds: int = 3) -> list[CellRecord]:
    """The Baseline, two of the study's techniques, EMA, and EMA with the better of the two."""
    records = []
    for seed in range(seeds):
        records += [
            cell("Baseline", "baseline", in_study=True, seed=seed, mse=0.010),
            cell("Pixel Shuffle", "pixel-shuffle", in_study=True, seed=seed, mse=0.012),
            cell("Progressive Resizing", "progressive-resizing", in_study=True, seed=seed, mse=0.009),
            cell("EMA", "ema", in_study=False, seed=seed, mse=0.008),
            cell("EMA + Progressive Resizing", "ema", "progressive-resizing", in_study=False, seed=seed,
                 mse=0.007 + (seed == 1) / 5000),
        ]
    return records


def labels(table: list[list[str]]) -> list[str]:
    return [row[0] for row in table[1:]]


def test_the_study_and_what_goes_beyond_it_are_two_tables_the_baseline_leading_both():
    md = render(study_and_beyond(), METRICS)
    headings = [line for line in md.splitlines() if line.startswith("#")]
    assert headings == ["## Shapes", "### The study's techniques", "### Beyond the study"]
    study, beyond, combinations = tables(md)
    assert labels(study) == ["Baseline", "Pixel Shuffle", "Progressive Resizing"]
    # The study's technique that a combination pairs with is a row here too, for the Combinations table.
    assert labels(beyond) == ["Baseline", "Progressive Resizing", "EMA", "EMA + Progressive Resizing"]
    assert labels(combinations) == ["EMA + Progressive Resizing"] and combinations[1][1] == "EMA"  # the better alone
    assert md.index("### Beyond the study") < md.index("Combinations: does a pair beat")


def test_each_table_compares_its_rows_with_the_baseline_and_corrects_for_its_own_tests():
    found = json.loads(render(study_and_beyond(), METRICS, "json"))
    study, beyond = found["datasets"][0]["tables"]
    assert (study["part"], beyond["part"]) == ("study", "beyond")
    assert [row["vs_baseline"] is None for row in beyond["rows"]] == [True, False, False, False]
    assert beyond["rows"][0]["label"] == "Baseline"
    # Holm over each table's own tests: 2 rows x 2 metrics in the study's, 3 x 2 beyond it.
    for table, count in ((study, 4), (beyond, 6)):
        tests = [c for row in table["rows"][1:] for c in row["vs_baseline"].values()]
        assert len(tests) == count and [c["p_holm"] for c in tests] == holm([c["p"] for c in tests])
    assert "Holm-corrected for the 6 tests of this table" in render(study_and_beyond(), METRICS)
    [pair] = beyond["combinations"]
    assert (pair["label"], pair["against"]) == ("EMA + Progressive Resizing", "EMA")
    assert study["combinations"] == []


@pytest.mark.parametrize("case, records", [
    ("only the study's", [cell("Baseline", "baseline", in_study=True), cell("Pixel Shuffle", "pixel-shuffle",
                                                                            in_study=True)]),
    ("stored before cells said", [cell("Baseline", "baseline", in_study=None), cell("EMA", "ema", in_study=None)]),
    ("only the Baseline of the study's", [cell("Baseline", "baseline", in_study=True),
                                          cell("EMA", "ema", in_study=False)]),
])
def test_one_kind_of_row_is_one_table_as_before(case, records):
    md = render(records, METRICS)
    assert [line for line in md.splitlines() if line.startswith("#")] == ["## Shapes"], case
    [table] = tables(md)
    assert labels(table) == [r.config.label for r in records]
    assert "part" not in json.loads(render(records, METRICS, "json"))["datasets"][0]["tables"][0]


def test_an_old_studys_rows_stay_with_the_study_when_new_rows_beyond_it_come():
    # A store filled before cells recorded in_study, resumed by a bench of the techniques beyond it.
    old = [cell("Baseline", "baseline", in_study=None), cell("Pixel Shuffle", "pixel-shuffle", in_study=None)]
    study, beyond = tables(render(old + [cell("EMA", "ema", in_study=False)], METRICS))
    assert labels(study) == ["Baseline", "Pixel Shuffle"] and labels(beyond) == ["Baseline", "EMA"]


def test_several_conditions_each_split_name_their_condition_and_part():
    timed = [CellRecord(r.key + "/60s", CellConfig.from_json({**r.config.to_json(),
                                                              "budget": {"epochs": None, "seconds": 60}}),
                        r.status, metrics=r.metrics, stats=r.stats) for r in study_and_beyond(1)]
    md = render(study_and_beyond(1) + timed, METRICS)
    assert [line for line in md.splitlines() if line.startswith("### ")] == [
        "### Budget: 2 epochs per cell · The study's techniques", "### Budget: 2 epochs per cell · Beyond the study",
        "### Budget: 60 s of training per cell · The study's techniques",
        "### Budget: 60 s of training per cell · Beyond the study"]


def test_the_page_explains_the_second_table_and_only_where_there_is_one(tmp_path):
    page = leaderboard_page(study_and_beyond(1), [], tmp_path / "board.md", "aeframe report --docs board.md",
                            GENERATED)
    legend = page[page.index("## How to read the tables"):page.index("## How to reproduce")]
    assert "- **Beyond the study**: where a dataset has rows of techniques the study did not try" in legend
    assert "(2020), and techniques beyond it in tables of their own, each trained" in page
    alone = leaderboard_page(study_and_beyond(1)[:3], [], tmp_path / "board.md", "aeframe report --docs board.md",
                             GENERATED)
    assert "Beyond the study" not in alone and "beyond it" not in alone


def test_how_to_reproduce_pins_the_techniques_of_a_bench_typed_without_them(tmp_path):
    # The leaderboard's first bench named no technique: run today, it would train every built-in.
    bare = "aeframe bench -d shapes --seeds 5 --store board.sqlite"
    pinned = "aeframe bench -t ema -d shapes --store board.sqlite"
    records = [cell("Baseline", "baseline", in_study=True, command=bare),
               cell("Pixel Shuffle + Progressive Resizing", "pixel-shuffle", "progressive-resizing", in_study=True,
                    command=bare),
               cell("EMA", "ema", in_study=False, command=pinned)]
    page = leaderboard_page(records, [], tmp_path / "board.md", "aeframe report --docs board.md", GENERATED)
    commands = page[page.index("```sh"):page.index("```\n", page.index("```sh"))].splitlines()[1:]
    assert commands == [
        "aeframe bench -t baseline -t pixel-shuffle -t progressive-resizing -d shapes --seeds 5 --store board.sqlite",
        pinned, "aeframe report --docs board.md"]
    assert "A command typed without `-t` is shown with a `-t` for each technique its cells trained" in page
    typed = leaderboard_page(records[2:], [], tmp_path / "board.md", "aeframe report --docs board.md", GENERATED)
    assert "A command typed without `-t`" not in typed


def test_the_studys_six_built_ins_declare_themselves_and_no_other_does(registry):
    assert sorted(name for name, t in registry.techniques.items() if t.in_study) == sorted(STUDY)


def test_a_planned_cell_records_whether_every_technique_of_it_is_the_studys(registry):
    from aeframe.cells.budget import Budget
    from aeframe.planning.plan import plan_cells, resolve_dataset, resolve_technique

    texts = ["baseline", "progressive-resizing", "ema", "ema+progressive-resizing"]
    cells = plan_cells([resolve_technique(t, registry) for t in texts], [resolve_dataset(TINY_SHAPES, registry)], 1,
                       Budget(epochs=1), {"type": "cpu", "name": "Test CPU"}, {"aeframe": "0", "torch": "0"},
                       registry)
    assert [c.config.in_study for c in cells] == [True, True, False, False]
    stored = cells[2].config.to_json()
    assert stored["in_study"] is False and CellConfig.from_json(stored).in_study is False
    # Not part of the key: a store's cells keep their keys, and a bench resumes them.
    assert cell_key(cells[0].config) == cell_key(replace(cells[0].config, in_study=None))


def test_a_real_bench_of_the_study_and_beyond_it_splits_the_table(tmp_path, cli):
    ran = cli("bench", "-t", "baseline", "-t", "progressive-resizing", "-t", "ema", "-t", "ema+progressive-resizing",
              "-d", TINY_SHAPES, "--epochs", "1", "--precision", "fp32", "--no-channels-last", "--store", "s.sqlite",
              "--format", "json", cwd=tmp_path)  # fp32 and the layout given: nothing measured before training
    assert ran.returncode == 0, ran.stderr
    [shapes] = json.loads(ran.stdout)["datasets"]
    assert [(t["part"], [row["label"] for row in t["rows"]]) for t in shapes["tables"]] == [
        ("study", ["Baseline", "Progressive Resizing"]),
        ("beyond", ["Baseline", "Progressive Resizing", "EMA", "EMA + Progressive Resizing"]),
    ]
    ran = cli("report", "--store", "s.sqlite", "--docs", "board.md", cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    page = (tmp_path / "board.md").read_text()
    assert "### The study's techniques" in page and "### Beyond the study" in page
    assert "(board/shapes-beyond-the-study-mse-vs-time.png)" in page
    assert (tmp_path / "board" / "shapes-mse-vs-time.png").is_file()
