"""The report: tables per dataset and condition, seeds folded into mean ± std, best values in bold."""
from __future__ import annotations

import csv
import io
import json
from dataclasses import replace

import pytest

from aeframe.contract.metric import Metric
from aeframe.cells.record import SKIPPED_DATASET, CellConfig, CellRecord, Protocol, TechniqueRef
from aeframe.cells.settings import Speed
from aeframe.report.render import render
from aeframe.report.stats import holm

VERSIONS = {"aeframe": "0.1.0", "torch": "2.4.1", "torchvision": "0.19.1", "python": "3.11.7"}


class FakeMetric(Metric):
    def __init__(self, name: str, title: str, better: str, format: str) -> None:
        self.name, self.title, self.better, self.format = name, title, better, format

    def update(self, recon, target, labels) -> None:
        raise AssertionError("the report never evaluates")


MSE = FakeMetric("mse", "MSE", "lower", ".6f")
PSNR = FakeMetric("psnr", "PSNR (dB)", "higher", ".2f")
METRICS = [MSE, PSNR]


def config(label="Baseline", dataset="mnist", title="MNIST", seed=0, epochs=15, seconds=None,
           device_type="cpu", device_name="Test CPU", versions=None, params=None, status=None) -> CellConfig:
    return CellConfig.from_json({
        "label": label,
        "reference": label == "Baseline",
        "techniques": [],
        "dataset": {"name": dataset, "title": title, "params": params or {}},
        "seed": seed,
        "budget": {"epochs": epochs, "seconds": seconds},
        "device": {"type": device_type, "name": device_name},
        "versions": versions or VERSIONS,
    }, status)


def done(mse=0.001, psnr=30.0, train_seconds=100.0, epochs_run=15.0, ips=1000.0, size=5000, **cfg) -> CellRecord:
    """A done record: metric and stats values first, then anything :func:`config` takes."""
    c = config(**cfg)
    return CellRecord(
        key=f"{c.label}/{c.dataset.name}/{c.seed}/{c.budget.to_json()}",
        config=c,
        status="done",
        metrics={"mse": mse, "psnr": psnr},
        stats={"train_seconds": train_seconds, "eval_seconds": 1.5, "epochs": epochs_run, "steps": 300,
               "images_per_second": ips, "params": size},
    )


def not_done(status, error, **cfg) -> CellRecord:
    c = config(**cfg, status=status)
    return CellRecord(key=f"{c.label}/{c.dataset.name}/{status}", config=c, status=status, error=error)


def tables(markdown: str) -> list[list[list[str]]]:
    """Each markdown table as rows of stripped cells (header first, the alignment row dropped)."""
    found, current = [], None
    for line in markdown.splitlines():
        if line.startswith("|"):
            if current is None:
                current = []
                found.append(current)
            if not line.startswith("|:"):
                current.append([cell.strip() for cell in line.strip("|").split("|")])
        else:
            current = None
    return found


def test_header_and_formatted_values():
    md = render([done(mse=0.00123456, psnr=29.126, train_seconds=1483.2, epochs_run=2.5, ips=12345.6,
                      size=1234567)], METRICS)
    lines = md.splitlines()
    assert lines[0] == "## MNIST"
    assert lines[2].startswith("| Method   |")
    assert lines[3].startswith("|:---------|") and lines[3].endswith("-:|")
    [[header, row]] = tables(md)
    assert header == ["Method", "MSE", "PSNR (dB)", "Training Time", "Epochs", "Images/s", "Params"]
    assert row == ["Baseline", "0.001235", "29.13", "24m 43s", "2.50", "12,346", "1,234,567"]


def test_best_value_of_each_column_is_bold_in_its_direction():
    md = render(
        [
            done(label="Baseline", mse=0.002, psnr=31.0, train_seconds=50, ips=900),
            done(label="Pixel Shuffle", mse=0.001, psnr=30.0, train_seconds=70, ips=2000),
            done(label="Feature Loss", mse=0.003, psnr=29.0, train_seconds=60, ips=1500),
        ],
        METRICS,
    )
    [[_, baseline, shuffle, feature]] = tables(md)
    assert baseline == ["Baseline", "0.002000", "**31.00**", "**50s**", "15.00", "900", "5,000"]
    assert shuffle == ["Pixel Shuffle", "**0.001000**", "30.00", "1m 10s", "15.00", "**2,000**", "5,000"]
    assert feature == ["Feature Loss", "0.003000", "29.00", "1m 00s", "15.00", "1,500", "5,000"]


def test_ties_are_all_bold_but_a_lone_row_or_a_full_tie_is_not():
    md = render([done(label="A", mse=0.001, psnr=30.0), done(label="B", mse=0.001, psnr=31.0),
                 done(label="C", mse=0.002, psnr=29.0)], METRICS)
    [[_, a, b, c]] = tables(md)
    assert [a[1], b[1], c[1]] == ["**0.001000**", "**0.001000**", "0.002000"]
    # Everyone took 1m 40s and ran at 1,000 images/s: nothing to single out.
    assert "**" not in a[3] + a[5]
    [[_, lone]] = tables(render([done()], METRICS))
    assert "**" not in "".join(lone)


def test_seeds_fold_into_mean_and_sample_std():
    records = [
        done(label="Baseline", seed=0, mse=0.010, psnr=20.0, train_seconds=100, ips=1000),
        done(label="Baseline", seed=1, mse=0.012, psnr=21.0, train_seconds=110, ips=2000),
        done(label="Baseline", seed=2, mse=0.014, psnr=25.0, train_seconds=120, ips=4500),
        done(label="Pixel Shuffle", seed=0, mse=0.020, psnr=19.0, train_seconds=90, ips=3000),
    ]
    md = render(records, METRICS)
    [[header, baseline, shuffle]] = tables(md)
    assert header[-1] == "Seeds"
    # mse: mean 0.012, std sqrt((0.002² + 0 + 0.002²) / 2) = 0.002
    # psnr: mean 22, std sqrt((4 + 1 + 9) / 2) = sqrt(7) = 2.6458
    # images/s: mean 2500, std sqrt((1500² + 500² + 2000²) / 2) = sqrt(3,250,000) = 1802.8
    # epochs and params agree across seeds, so they show one value.
    assert baseline == ["Baseline", "**0.012000 ± 0.002000**", "**22.00 ± 2.65**", "1m 50s ± 10s",
                        "15.00", "2,500 ± 1,803", "5,000", "3"]
    assert shuffle == ["Pixel Shuffle", "0.020000", "19.00", "**1m 30s**", "15.00", "**3,000**", "5,000", "1"]
    assert "Seeds: 0, 1, 2" in md


def test_conditions_line_under_the_table():
    md = render([done(label="A", seed=1), done(label="B", seed=0, device_name="Other CPU",
                                               versions={**VERSIONS, "torch": "2.5.0"})], METRICS)
    assert (
        "Budget: 15 epochs per cell · Seeds: 0, 1 · Device: Test CPU / Other CPU (cpu) · Precision: fp32 · "
        "Versions: aeframe 0.1.0, torch 2.4.1 / 2.5.0, torchvision 0.19.1, python 3.11.7 · "
        "Training time: device-synchronised, from the first step, evaluation apart"
    ) in md.splitlines()
    time_budget = render([done(epochs=None, seconds=60)], METRICS)
    assert "Budget: 60 s of training per cell · Seed: 0 · Device: Test CPU (cpu) · " in time_budget
    both = render([done(epochs=15, seconds=60.0, params={"size": 32})], METRICS)
    assert ("Budget: 15 epochs or 60 s of training per cell, whichever ends first · "
            "Dataset parameters: size=32 · Seed: 0 · ") in both


def test_records_that_are_not_done_are_listed_after_their_dataset():
    md = render(
        [
            done(label="Baseline"),
            not_done("failed", "RuntimeError: boom\nTraceback (most recent call last): ...", label="Pixel Shuffle"),
            not_done("diverged", "loss is nan at step 12", label="Feature Loss"),
            not_done("skipped", "cifar10 is not in ~/data; pass --download", label="cifar10",
                     dataset="cifar10", title="CIFAR-10"),
        ],
        METRICS,
    )
    assert md.split("## CIFAR-10")[0].endswith(
        "Not in the table:\n\n"
        "- Pixel Shuffle: failed (RuntimeError: boom)\n"
        "- Feature Loss: diverged (loss is nan at step 12)\n\n"
    )
    assert md.endswith(
        "## CIFAR-10\n\nNot in the table:\n\n- cifar10: skipped (cifar10 is not in ~/data; pass --download)\n"
    )
    assert [t[0][0] for t in tables(md)] == ["Method"]  # one table: CIFAR-10 has none


def test_a_later_record_supersedes_an_earlier_one_for_the_same_cell():
    md = render([not_done("failed", "OOM", label="Baseline"), done(label="Pixel Shuffle", mse=0.25),
                 done(label="Baseline", mse=0.5)], METRICS)
    assert "Not in the table" not in md
    # The retried cell keeps the place where its label first appeared.
    assert [row[:2] for row in tables(md)[0][1:]] == [["Baseline", "0.500000"], ["Pixel Shuffle", "**0.250000**"]]


def test_under_a_time_budget_no_row_is_bolded_as_the_fastest_trainer():
    # The leaderboard bolded "1m 00s ± 0.0s" as the best Training Time: every row trained for the budget.
    rows = [done(label="Baseline", epochs=None, seconds=60, train_seconds=60.1, ips=900.0),
            done(label="Pixel Shuffle", epochs=None, seconds=60, train_seconds=60.4, ips=1200.0)]
    [[header, *body]] = tables(render(rows, METRICS))
    time, rate = header.index("Training Time"), header.index("Images/s")
    assert not any("**" in row[time] for row in body)
    assert body[1][rate].startswith("**")  # how much fitted in the budget still has a best
    [[header, *body]] = tables(render([done(label="Baseline", train_seconds=50.0),
                                       done(label="Pixel Shuffle", train_seconds=70.0)], METRICS))
    assert body[0][header.index("Training Time")].startswith("**")  # an epoch budget: the faster is the best


def test_two_budgets_for_one_dataset_make_two_subheaded_tables():
    md = render(
        [
            done(label="Baseline", epochs=15, mse=0.001),
            done(label="Baseline", epochs=None, seconds=60, mse=0.002),
            done(label="Pixel Shuffle", epochs=15, mse=0.003),
        ],
        METRICS,
    )
    headings = [line for line in md.splitlines() if line.startswith("#")]
    assert headings == ["## MNIST", "### Budget: 15 epochs per cell", "### Budget: 60 s of training per cell"]
    first, second = tables(md)
    assert [row[0] for row in first[1:]] == ["Baseline", "Pixel Shuffle"]
    assert second[1][:2] == ["Baseline", "0.002000"]


def test_datasets_in_order_of_first_appearance():
    md = render([done(dataset="svhn", title="SVHN"), done(dataset="mnist", title="MNIST"),
                 done(dataset="svhn", title="SVHN", label="B")], METRICS)
    assert [line for line in md.splitlines() if line.startswith("## ")] == ["## SVHN", "## MNIST"]


def test_json_holds_the_numbers():
    records = [done(seed=0, mse=0.010, train_seconds=100), done(seed=1, mse=0.014, train_seconds=110),
               not_done("failed", "RuntimeError: boom", label="Pixel Shuffle")]
    data = json.loads(render(records, METRICS, "json"))
    [dataset] = data["datasets"]
    assert (dataset["name"], dataset["title"]) == ("mnist", "MNIST")
    [table] = dataset["tables"]
    assert table["condition"] == {"budget": {"epochs": 15, "seconds": None}, "device_type": "cpu",
                                  "dataset_params": {}, "lr": "study", "precision": "fp32"}
    [row] = table["rows"]
    assert row["label"] == "Baseline" and row["seeds"] == [0, 1]
    assert row["metrics"]["mse"]["values"] == [0.010, 0.014]
    assert row["metrics"]["mse"]["mean"] == pytest.approx(0.012)
    assert row["metrics"]["mse"]["std"] == pytest.approx(0.0028284271)
    assert row["train_seconds"] == {"mean": 105.0, "std": pytest.approx(7.0710678), "values": [100.0, 110.0]}
    assert row["eval_seconds"]["mean"] == 1.5 and row["params"] == 5000
    assert table["note"].startswith("Budget: 15 epochs per cell · Seeds: 0, 1 · ")
    assert [(n["label"], n["status"], n["error"]) for n in dataset["not_done"]] == [
        ("Pixel Shuffle", "failed", "RuntimeError: boom")]


def test_json_gives_each_cell_its_curve_with_every_key_as_stored():
    point = {"epoch": 1, "step": 2, "phase": "run 2", "train_loss": 0.5, "terms": {"reconstruction": 0.5},
             "test_mse": 0.25, "seconds": 1.0, "diagnostics": {"grad_norm": 3.0}, "added_later": ["kept"]}
    diverged = {**point, "epoch": 2, "train_loss": float("nan"), "diagnostics": {"grad_norm": float("inf")}}
    records = [replace(done(seed=1), curve=[point]), replace(done(seed=0), curve=[point, diverged]),
               replace(not_done("failed", "RuntimeError: boom", label="Pixel Shuffle"), curve=[point])]
    [dataset] = json.loads(render(records, METRICS, "json"))["datasets"]
    [row] = dataset["tables"][0]["rows"]
    assert [(cell["key"], cell["seed"]) for cell in row["cells"]] == list(zip(row["keys"], row["seeds"]))
    by_seed = {cell["seed"]: cell["curve"] for cell in row["cells"]}
    assert by_seed[1] == [point]
    # JSON has no NaN or Infinity: null, as in the summaries.
    assert by_seed[0][1] == {**point, "epoch": 2, "train_loss": None, "diagnostics": {"grad_norm": None}}
    assert dataset["not_done"][0]["curve"] == [point]


def test_csv_has_one_line_per_record():
    records = [done(mse=0.25), not_done("failed", "RuntimeError: boom\nmore", label="Pixel Shuffle")]
    rows = list(csv.reader(io.StringIO(render(records, METRICS, "csv"))))
    assert rows[0] == ["key", "label", "dataset", "seed", "status", "mse", "psnr", "train_seconds",
                       "eval_seconds", "lr_find_seconds", "compile_seconds", "epochs", "steps", "images_per_second",
                       "params", "budget_epochs", "budget_seconds", "device", "precision", "error", "in_table",
                       "cpu_share", "gpu_other_processes", "busy"]
    assert len(rows) == 3
    assert rows[1][1:] == ["Baseline", "mnist", "0", "done", "0.25", "30.0", "100.0", "1.5", "", "", "15.0", "300",
                           "1000.0", "5000", "15", "", "Test CPU (cpu)", "fp32", "", "true", "", "", "false"]
    assert rows[2][4] == "failed" and rows[2][5] == "" and rows[2][-5:-3] == ["RuntimeError: boom", "false"]


def test_empty_input():
    assert render([], METRICS) == "No results yet.\n"
    assert json.loads(render([], METRICS, "json")) == {"datasets": []}
    assert render([], METRICS, "csv").count("\n") == 1


def test_unknown_format():
    with pytest.raises(ValueError, match="unknown report format 'html'"):
        render([], METRICS, "html")


def test_a_skipped_dataset_that_later_ran_is_no_longer_listed_as_skipped():
    skipped = not_done("skipped", "mnist is not in /data", label="mnist")
    skipped.config = replace(skipped.config, kind=SKIPPED_DATASET)  # it stands for no technique in particular
    records = [skipped, done()]
    out = render(records, METRICS)
    assert "skipped" not in out and "| Baseline |" in out.replace("  ", " ").replace("  ", " ")
    # Skipped after it ran (files deleted since): both the table and the reason show.
    assert "- mnist: skipped (mnist is not in /data)" in render([done(), skipped], METRICS)


def test_lr_find_cost_shows_in_its_own_column_and_the_conditions_line():
    found = done()
    found.config = replace(found.config, lr="find")
    found.stats.lr_find_seconds = 4.0
    out = render([found], METRICS)
    assert "LR Find" in out.splitlines()[2] and "4.0s |" in out
    assert "Learning rates: a range test per cell ('valley')" in out
    assert "LR Find" not in render([done()], METRICS)


def test_precision_separates_tables_and_shows_in_the_conditions_line():
    bf16 = done(label="Baseline", mse=0.002)
    bf16.config = replace(bf16.config, speed=Speed("bf16", channels_last=True))
    bf16.key += "/bf16"
    md = render([done(label="Baseline"), bf16], METRICS)
    headings = [line for line in md.splitlines() if line.startswith("#")]
    assert headings == ["## MNIST", "### Precision: fp32", "### Precision: bf16"]
    first, second = tables(md)
    assert first[1][:2] == ["Baseline", "0.001000"] and second[1][:2] == ["Baseline", "0.002000"]
    notes = [line for line in md.splitlines() if line.startswith("Budget: ")]
    assert " · Precision: fp32 · " in notes[0] and " · Precision: bf16, channels_last · " in notes[1]
    [table_a, table_b] = json.loads(render([done(), bf16], METRICS, "json"))["datasets"][0]["tables"]
    assert (table_a["condition"]["precision"], table_b["condition"]["precision"]) == ("fp32", "bf16")


def test_compile_time_shows_in_its_own_column():
    compiled = done()
    compiled.config = replace(compiled.config, speed=Speed(compile=True))
    compiled.stats.compile_seconds = 12.5
    out = render([compiled], METRICS)
    [[header, row]] = tables(out)
    assert header[-1] == "Compile" and row[-1] == "12s"
    assert "Precision: fp32, compiled (compile time apart, in the Compile column)" in out
    assert "Compile" not in render([done()], METRICS)
    row = json.loads(render([compiled], METRICS, "json"))["datasets"][0]["tables"][0]["rows"][0]
    assert row["compile_seconds"]["mean"] == 12.5


def test_a_technique_skipped_beside_done_cells_stays_listed():
    skipped = not_done("skipped", "feature-loss needs vgg16_bn-6c64b313.pth", label="Feature Loss")
    out = render([skipped, done()], METRICS)
    assert "- Feature Loss: skipped (feature-loss needs vgg16_bn-6c64b313.pth)" in out


# -- statistics over seeds: intervals and the paired comparison against the Baseline -------------

T_975_2 = 4.302652729  # t_{0.975, 2}, from the table


def seeded_table():
    """Three seeds of the Baseline and of Pixel Shuffle (seeds 0, 1, 2) with hand-picked metrics.

    MSE, Pixel Shuffle − Baseline [0.008 − 0.010, 0.009 − 0.012, 0.013 − 0.014] = [−0.002, −0.003, −0.001]:
    mean −0.002, s = 0.001, s/√3 = 0.00057735, t = −0.002 / 0.00057735 = −2√3 = −3.464102;
    df = 2: p = 1 − |t| / √(2 + t²) = 1 − 3.464102 / √14 = 0.074180: not significant.
    PSNR: [21 − 20, 22.5 − 21, 23 − 22] = [1, 1.5, 1]: mean 7/6, s = √((1/36 + 4/36 + 1/36) / 2) = √(1/12),
    s/√3 = 1/6, t = 7; p = 1 − 7 / √51 = 0.019804: significant.
    """
    return [
        done(label="Baseline", seed=0, mse=0.010, psnr=20.0),
        done(label="Baseline", seed=1, mse=0.012, psnr=21.0),
        done(label="Baseline", seed=2, mse=0.014, psnr=22.0),
        done(label="Pixel Shuffle", seed=0, mse=0.008, psnr=21.0),
        done(label="Pixel Shuffle", seed=1, mse=0.009, psnr=22.5),
        done(label="Pixel Shuffle", seed=2, mse=0.013, psnr=23.0),
    ]


def test_json_has_95_percent_intervals():
    [baseline, shuffle] = json.loads(render(seeded_table(), METRICS, "json"))["datasets"][0]["tables"][0]["rows"]
    # Baseline MSE [0.010, 0.012, 0.014]: mean 0.012, s = 0.002, half width 4.302653 · 0.002 / √3 = 0.004968.
    half = T_975_2 * 0.002 / 3 ** 0.5
    assert baseline["ci95"]["metrics"]["mse"] == [pytest.approx(0.012 - half), pytest.approx(0.012 + half)]
    assert baseline["ci95"]["metrics"]["mse"] == [pytest.approx(0.007032, abs=1e-6), pytest.approx(0.016968, abs=1e-6)]
    # Pixel Shuffle PSNR [21, 22.5, 23]: mean 133/6 = 22.166667, deviations [−7/6, 2/6, 5/6],
    # s = √((49 + 4 + 25) / 36 / 2) = √(13/12) = 1.040833, half width 4.302653 · 1.040833 / √3 = 2.585573.
    assert shuffle["ci95"]["metrics"]["psnr"] == [pytest.approx(22.166667 - 2.585573, abs=1e-6),
                                                  pytest.approx(22.166667 + 2.585573, abs=1e-6)]
    # Stats get one too; every seed took 100 s, so the interval is the point.
    assert baseline["ci95"]["train_seconds"] == [100.0, 100.0]
    assert baseline["ci95"]["lr_find_seconds"] is None  # no record has it


def test_json_compares_each_row_with_the_baseline_by_seed():
    [baseline, shuffle] = json.loads(render(seeded_table(), METRICS, "json"))["datasets"][0]["tables"][0]["rows"]
    assert baseline["vs_baseline"] is None
    mse, psnr = shuffle["vs_baseline"]["mse"], shuffle["vs_baseline"]["psnr"]  # hand values: see seeded_table
    # Holm over the table's two tests: the smaller p doubled (0.0396), the larger at least that (0.0742).
    assert mse == {"test": "paired t-test", "pairs": 3, "mean_difference": pytest.approx(-0.002),
                   "t": pytest.approx(-2 * 3 ** 0.5), "p": pytest.approx(1 - 12 ** 0.5 / 14 ** 0.5),
                   "p_holm": pytest.approx(1 - 12 ** 0.5 / 14 ** 0.5)}
    assert mse["p"] == pytest.approx(0.074180, abs=1e-6)
    assert psnr == {"test": "paired t-test", "pairs": 3, "mean_difference": pytest.approx(7 / 6),
                    "t": pytest.approx(7.0), "p": pytest.approx(1 - 7 / 51 ** 0.5),
                    "p_holm": pytest.approx(2 * (1 - 7 / 51 ** 0.5))}
    assert psnr["p"] == pytest.approx(0.019804, abs=1e-6)


def test_significant_cells_get_a_dagger_and_the_table_a_line_explaining_it():
    md = render(seeded_table(), METRICS)
    [[header, baseline, shuffle]] = tables(md)
    assert header[:3] == ["Method", "MSE", "PSNR (dB)"]
    assert baseline[1:3] == ["0.012000 ± 0.002000", "21.00 ± 1.00"]
    # MSE: p = 0.074, no marker (but still the best mean, so bold); PSNR: p = 0.020, marked.
    assert shuffle[1:3] == ["**0.010000 ± 0.002646**", "**22.17 ± 1.04**†"]
    assert "†" not in "".join(baseline + shuffle[3:])
    lines = md.splitlines()
    explanation = ("† differs from the Baseline at p < 0.05: paired t-test over 3 shared seeds, Holm-corrected for "
                   "the 2 tests of this table (where every seed differs by the same amount, the exact sign-flip p)")
    assert explanation in lines
    # Directly under the table, above the conditions line.
    assert lines[lines.index(explanation) - 2].startswith("| Pixel Shuffle")
    assert lines[lines.index(explanation) + 2].startswith("Budget: ")


def test_no_dagger_and_no_explanation_when_nothing_is_significant():
    records = [r for r in seeded_table()]
    records[4] = done(label="Pixel Shuffle", seed=1, mse=0.009, psnr=19.0)  # PSNR differences [1, −2, 1]: p ≫ 0.05
    md = render(records, METRICS)
    assert "†" not in md and "paired t-test" not in md


def test_pairs_are_made_by_seed_number_over_shared_seeds_only():
    records = [
        done(label="Baseline", seed=0, psnr=20.0), done(label="Baseline", seed=1, psnr=21.0),
        done(label="Baseline", seed=2, psnr=22.0),
        # Seeds 2, 1, 7 in that order: 7 has no Baseline partner; 2 pairs with 2, 1 with 1.
        done(label="Other", seed=2, psnr=24.0), done(label="Other", seed=1, psnr=23.0),
        done(label="Other", seed=7, psnr=0.0),
    ]
    data = json.loads(render(records, METRICS, "json"))
    other = data["datasets"][0]["tables"][0]["rows"][1]
    # Differences [24 − 22, 23 − 21] = [2, 2]: constant and non-zero, so t = +inf (JSON null), and p is
    # the exact sign-flip test's 2 / 2^2, not the t-test's limit of 0: two seeds prove nothing.
    assert other["vs_baseline"]["psnr"] == {"test": "paired t-test", "pairs": 2, "mean_difference": 2.0,
                                            "t": None, "p": 0.5, "p_holm": 1.0}
    assert "†" not in render(records, METRICS)


def test_a_quantised_step_on_every_seed_gets_no_p_of_0():
    # The case: accuracies 0.85, 0.86 against 0.84, 0.85 (two seeds, each up by one step, with
    # float rounding in the differences) gave p = 0 and a dagger. Six seeds that all move by the step
    # are significant by the exact sign-flip test (p = 2 / 2^6), five are not (2 / 2^5 = 0.0625).
    two = [done(label="Baseline", seed=0, psnr=0.84), done(label="Baseline", seed=1, psnr=0.85),
           done(label="Other", seed=0, psnr=0.85), done(label="Other", seed=1, psnr=0.86)]
    other = json.loads(render(two, [PSNR], "json"))["datasets"][0]["tables"][0]["rows"][1]
    assert other["vs_baseline"]["psnr"]["p"] == 0.5 and other["vs_baseline"]["psnr"]["t"] is None
    assert "†" not in render(two, [PSNR])
    for seeds, p, marked in ((5, 0.0625, False), (6, 0.03125, True)):
        records = [done(label=label, seed=seed, psnr=0.80 + seed / 100 + (label == "Other") / 100)
                   for label in ("Baseline", "Other") for seed in range(seeds)]
        other = json.loads(render(records, [PSNR], "json"))["datasets"][0]["tables"][0]["rows"][1]
        assert other["vs_baseline"]["psnr"]["p"] == p
        assert ("†" in render(records, [PSNR])) is marked


def test_holm_takes_the_dagger_from_a_difference_that_one_test_in_many_would_show():
    # Three seeds; PSNR differences [1, 2, 1.5] give p = 0.035 alone, but MSE is tested too, so Holm
    # doubles the smaller p: 0.070, no dagger. Alone (one metric), the same difference is marked.
    records = [done(label="Baseline", seed=s, mse=0.01, psnr=20.0) for s in range(3)] + [
        done(label="Other", seed=s, mse=0.01 + (s - 1) / 1000, psnr=20.0 + d) for s, d in zip(range(3), (1, 2, 1.5))]
    psnr = json.loads(render(records, METRICS, "json"))["datasets"][0]["tables"][0]["rows"][1]["vs_baseline"]["psnr"]
    assert psnr["p"] == pytest.approx(0.0351, abs=1e-4) and psnr["p_holm"] == pytest.approx(2 * psnr["p"])
    assert "†" not in render(records, METRICS)
    alone = render(records, [PSNR])
    assert "†" in alone and "Holm-corrected for the 1 test of this table" in alone


def test_identical_seeds_are_not_significant():
    records = [done(label=label, seed=seed, mse=0.01 * (seed + 1), psnr=20.0 + seed)
               for label in ("Baseline", "Copy") for seed in (0, 1, 2)]
    data = json.loads(render(records, METRICS, "json"))
    copy = data["datasets"][0]["tables"][0]["rows"][1]
    assert copy["vs_baseline"]["mse"] == {"test": "paired t-test", "pairs": 3, "mean_difference": 0.0,
                                          "t": 0.0, "p": 1.0, "p_holm": 1.0}
    assert "†" not in render(records, METRICS)


def test_no_comparison_without_a_baseline_row_or_with_one_seed():
    records = [done(label=label, seed=seed, psnr=20.0 + seed + (label == "B") * (1 + seed / 10))
               for label in ("A", "B") for seed in (0, 1, 2)]
    rows = json.loads(render(records, METRICS, "json"))["datasets"][0]["tables"][0]["rows"]
    assert [row["vs_baseline"] for row in rows] == [None, None]
    assert "†" not in render(records, METRICS)
    single = [done(label="Baseline", psnr=20.0), done(label="B", psnr=25.0)]
    rows = json.loads(render(single, METRICS, "json"))["datasets"][0]["tables"][0]["rows"]
    assert rows[1]["vs_baseline"]["psnr"] == {"test": "paired t-test", "pairs": 1, "mean_difference": 5.0,
                                              "t": None, "p": None, "p_holm": None}
    assert rows[1]["ci95"]["metrics"]["psnr"] is None
    assert "†" not in render(single, METRICS)


def _with_curve(record, points, phases=None):
    record.curve = [{"epoch": i + 1, "phase": phase, "seconds": t, "test_mse": mse}
                    for i, (t, mse, phase) in enumerate(points)]
    record.config = replace(record.config,
                            protocol=Protocol.from_json({"phases": phases or [{"name": "run 1", "image_size": None}]}))
    return record


def test_time_to_quality_compares_rows_at_shares_of_the_shortest_training_time():
    fast = _with_curve(done(train_seconds=40.0), [(10.0, 0.05, "run 1"), (20.0, 0.03, "run 1"), (40.0, 0.02, "run 1")])
    slow = _with_curve(done(label="Pixel Shuffle", train_seconds=60.0),
                       [(25.0, 0.04, "run 1"), (50.0, 0.01, "run 1")])
    resized = _with_curve(done(label="Progressive Resizing", train_seconds=40.0),
                          [(5.0, 0.001, "small"), (40.2, 0.025, "run 2")],
                          phases=[{"name": "small", "image_size": 16}, {"name": "run 2", "image_size": None}])
    out = render([fast, slow, resized], METRICS)
    # Reference 40 s: at 10 s, 20 s and 40 s (within 1 %); the 16-px point does not count.
    lines = out[out.index("Test MSE reached at equal training time"):].splitlines()
    assert [c.strip() for c in lines[2].split("|")[1:-1]] == ["Method", "25% (10s)", "50% (20s)", "100% (40s)"]
    # Bold marks the best of a column only where at least two rows have a value.
    assert [c.strip() for c in lines[4].split("|")[1:-1]] == ["Baseline", "0.050000", "0.030000", "**0.020000**"]
    assert [c.strip() for c in lines[5].split("|")[1:-1]] == ["Pixel Shuffle", "–", "–", "0.040000"]
    assert [c.strip() for c in lines[6].split("|")[1:-1]] == ["Progressive Resizing", "–", "–", "0.025000"]
    table = json.loads(render([fast, slow, resized], METRICS, "json"))["datasets"][0]["tables"][0]
    assert table["time_to_quality"]["reference_seconds"] == 40.0
    assert table["time_to_quality"]["rows"][0] == {"label": "Baseline", "test_mse": [0.05, 0.03, 0.02]}


def test_time_to_quality_shows_a_dash_where_any_seed_had_no_evaluation_yet_and_says_so():
    base = _with_curve(done(train_seconds=40.0), [(10.0, 0.05, "run 1"), (40.0, 0.02, "run 1")])
    early = _with_curve(done(label="Pixel Shuffle", seed=0, train_seconds=40.0), [(10.0, 0.04, "run 1"),
                                                                                   (40.0, 0.01, "run 1")])
    late = _with_curve(done(label="Pixel Shuffle", seed=1, train_seconds=40.0), [(40.0, 0.03, "run 1")])
    out = render([base, early, late], METRICS)
    lines = out[out.index("Test MSE reached at equal training time"):].splitlines()
    assert lines[0] == ("Test MSE reached at equal training time (the mean over seeds, from each cell's per-epoch "
                        "curve, full-size evaluations only; – where a seed had none by then):")
    # Seed 0 had one at 10 s, seed 1 not: no mean of one seed stands for the row.
    assert [c.strip() for c in lines[5].split("|")[1:-1]][:2] == ["Pixel Shuffle", "–"]


def test_no_time_to_quality_table_without_curves():
    assert "equal training time" not in render([done()], METRICS)


def test_original_image_row_and_how_the_reference_was_obtained():
    ACC = FakeMetric("classifier_accuracy", "Classifier Accuracy", "higher", ".4f")
    records = []
    for label, acc in (("Baseline", 0.80), ("Pixel Shuffle", 0.85)):
        record = done(label=label)
        record.metrics["classifier_accuracy"] = acc
        record.stats.metric_details = {"classifier_accuracy": {"reference": 0.9060, "about": "a small CNN"}}
        records.append(record)
    out = render(records, [MSE, ACC])
    rows = [[c.strip() for c in line.split("|")[1:-1]] for line in out.splitlines() if line.startswith("|")]
    assert rows[0][:3] == ["Method", "MSE", "Classifier Accuracy"]
    assert rows[2][:3] == ["Original Image", "–", "0.9060"]
    assert rows[3][0] == "Baseline" and rows[4][2] == "**0.8500**"  # the reference row is not a contender
    assert "Classifier Accuracy: a small CNN" in out
    table = json.loads(render(records, [MSE, ACC], "json"))["datasets"][0]["tables"][0]
    assert table["reference"]["classifier_accuracy"]["reference"] == 0.9060


def test_seeds_not_done_for_the_same_reason_share_one_bullet():
    md = render(
        [
            done(label="Baseline", seed=0),
            done(label="Baseline", seed=1),
            *[not_done("skipped", "needs vgg16_bn weights", label="Feature Loss", seed=s) for s in (0, 1)],
            not_done("failed", "RuntimeError: boom", label="Resnet", seed=1),
        ],
        METRICS,
    )
    assert md.endswith(
        "Not in the table:\n\n"
        "- Feature Loss (seeds 0, 1): skipped (needs vgg16_bn weights)\n"
        "- Resnet (seed 1): failed (RuntimeError: boom)\n"
    )


def test_the_reference_row_leads_its_table_even_when_retrained_last():
    pixel = done(label="Pixel Shuffle", mse=0.25)
    baseline = done(label="Baseline", mse=0.5)
    baseline.config = replace(baseline.config, reference=True)
    md = render([done(label="Resnet"), pixel, baseline], METRICS)
    assert [row[0] for row in tables(md)[0][1:]] == ["Baseline", "Resnet", "Pixel Shuffle"]


def test_work_outside_the_budget_is_a_column_and_a_line_under_the_table():
    # pretrained-resnet[weights=shapes] pretrains its encoder (about 2 min on shapes) outside the
    # training budget: the row must not read as cheaper than it was.
    what = "pretrained the ResNet34 body as a classifier of shapes (20,000 images, 2 epochs)"
    records = [done(label="Baseline", seed=s) for s in (0, 1)]
    for seed, reused in ((0, False), (1, True)):
        record = done(label="Pretraining [weights=shapes]", seed=seed)
        record.stats.preparation = [{"what": what, "seconds": 125.0, "reused": reused}]
        record.stats.outside_budget_seconds = 125.0
        records.append(record)
    md = render(records, METRICS)
    [[header, baseline, pretraining]] = tables(md)
    column = header.index("Outside Budget")
    assert baseline[column] == "–" and pretraining[column] == "2m 05s ± 0.0s"
    assert ("Outside the training budget, and counted in the Outside Budget column: Pretraining [weights=shapes]: "
            f"{what}, 2m 05s (done once and taken from the cache by 1 of its 2 cells).") in md.splitlines()
    table = json.loads(render(records, METRICS, "json"))["datasets"][0]["tables"][0]
    assert table["outside_budget"] == [{"label": "Pretraining [weights=shapes]", "what": what, "seconds": 125.0,
                                        "cells": 2, "reused": 1}]
    assert table["rows"][1]["outside_budget_seconds"]["mean"] == 125.0 and "outside_budget_seconds" not in table["rows"][0]
    # Nothing outside the budget: no column, no line.
    plain = render([done(label="Baseline", seed=0), done(label="Other", seed=0)], METRICS)
    assert "Outside Budget" not in plain and "Outside the training budget" not in plain


def test_an_unknown_preparation_cost_is_shown_unknown_not_as_nothing():
    # The leaderboard's Pretraining [weights=shapes] rows reused a body cached before its cost was
    # kept; their cells stored outside_budget_seconds = 0 and the column read "0.0s ± 0.0s".
    what = "pretrained the ResNet34 body as a classifier of shapes (20,000 images, 2 epochs)"
    records = [done(label="Baseline", seed=0)]
    for seed in (0, 1):
        record = done(label="Pretraining [weights=shapes]", seed=seed)
        record.stats.preparation = [{"what": what, "seconds": None, "reused": True}]
        record.stats.outside_budget_seconds = 0.0  # as aeframe 0.1.0 stored it
        records.append(record)
    md = render(records, METRICS)
    [[header, _, _]] = tables(md)
    assert "Outside Budget" not in header  # no row has a known cost: no column of zeros
    assert f"Pretraining [weights=shapes]: {what}, cost not recorded" in md
    # The line does not point at a column the table does not show.
    assert f"Outside the training budget: Pretraining [weights=shapes]: {what}, cost not recorded" in md
    assert "Outside Budget column" not in md
    table = json.loads(render(records, METRICS, "json"))["datasets"][0]["tables"][0]
    assert "outside_budget_seconds" not in table["rows"][1]


def test_the_protocol_table_names_the_range_of_many_discriminative_rates():
    # pretrained-resnet's run 2 has ten rates, 1e-06 ... 0.01, which filled the leaderboard's line.
    from aeframe.report.leaderboard import _phases_text
    from aeframe.cells.record import PhaseSummary

    rates = [10 ** (-6 + 4 * i / 9) for i in range(10)]
    text = _phases_text([PhaseSummary("run 1", 0.333333, [3e-3], None), PhaseSummary("run 2", 0.666667, rates, 16)])
    assert text == "run 1: 33% at 0.003; run 2: 67% at 1e-06 to 0.01 over 10 layer groups, 16 px"
    assert _phases_text([PhaseSummary("run 2", 1.0, [1e-4, 1e-3], None)]) == "run 2: 100% at 0.0001/0.001"


def _with_techniques(record: CellRecord, *names: str) -> CellRecord:
    record.config = replace(record.config, techniques=[TechniqueRef(n, {"latent": "1000"}) for n in names])
    return record


def test_a_pair_is_compared_with_the_better_of_its_two_techniques_alone():
    # A + B against A (the better alone by MSE, the first metric with a direction): Δ = pair − A.
    records = []
    for seed in range(3):
        records += [
            _with_techniques(done(label="Baseline", seed=seed, mse=0.015, psnr=19.0), "baseline"),
            _with_techniques(done(label="A", seed=seed, mse=0.010 + seed / 1000, psnr=20.0 + seed), "a"),
            _with_techniques(done(label="B", seed=seed, mse=0.020, psnr=18.0), "b"),
            _with_techniques(done(label="A + B", seed=seed, mse=0.008 + seed / 1000 + (seed == 0) / 2000,
                                  psnr=21.0 + seed + seed / 2), "a", "b"),
        ]
    table = json.loads(render(records, METRICS, "json"))["datasets"][0]["tables"][0]
    [pair] = table["combinations"]
    assert (pair["label"], pair["parts"], pair["against"], pair["by"]) == ("A + B", ["A", "B"], "A", "mse")
    mse, psnr = pair["vs_better_single"]["mse"], pair["vs_better_single"]["psnr"]
    assert mse["pairs"] == 3 and mse["mean_difference"] == pytest.approx((-0.0015 - 0.002 - 0.002) / 3)
    assert psnr["mean_difference"] == pytest.approx((1 + 1.5 + 2) / 3)
    assert [mse["p_holm"], psnr["p_holm"]] == holm([mse["p"], psnr["p"]])  # over the combinations' own tests
    md = render(records, METRICS)
    lines = md.splitlines()
    assert ("Combinations: does a pair beat the better of its two techniques alone (by MSE, lower is better)? "
            "Δ is the pair's mean minus that technique's, over the seeds both have.") in lines
    start = next(i for i, line in enumerate(lines) if line.startswith("Combinations:"))
    row = next(line for line in lines[start:] if line.startswith("| A + B "))
    assert [cell.strip() for cell in row.strip("|").split("|")][:2] == ["A + B", "A"]
    assert "-0.001833" in row and "+1.50" in row
    assert any(line.startswith("† p < 0.05: paired t-test over shared seeds, Holm-corrected for the 2 tests of this "
                               "combinations table") for line in lines)
    # Without a pair, or without its two techniques alone, there is no combinations table.
    alone = [r for r in records if r.config.label != "B"]
    assert json.loads(render(alone, METRICS, "json"))["datasets"][0]["tables"][0]["combinations"] == []
    assert "Combinations:" not in render(alone, METRICS)


def test_a_stand_in_row_is_marked_and_what_it_stands_in_for_said_under_the_table():
    stand_in = done(label="Feature Loss [net=random]", seed=0)
    stand_in.stats.stand_in = "its features come from an untrained VGG16-bn, standing in for the trained one"
    records = [done(label="Baseline", seed=0), stand_in]
    md = render(records, METRICS)
    [[_, baseline, row]] = tables(md)
    assert row[0] == "Feature Loss [net=random] §" and baseline[0] == "Baseline"
    assert ("§ an offline stand-in for a study row that cannot run here (`--stand-ins`). Feature Loss [net=random]: "
            "its features come from an untrained VGG16-bn, standing in for the trained one.") in md.splitlines()
    rows = json.loads(render(records, METRICS, "json"))["datasets"][0]["tables"][0]["rows"]
    assert rows[1]["stand_in"] == stand_in.stats["stand_in"] and "stand_in" not in rows[0]
    assert "§" not in render([done(label="Baseline", seed=0), done(label="Other", seed=0)], METRICS)
