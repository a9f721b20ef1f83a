"""Pictures and the leaderboard page: PNG grids and plots from a real store, linked where they are read."""
from __future__ import annotations

import json
import re
import shlex
import sys
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

import pytest
import torch
from PIL import Image

from aeframe.report.grouping import group
from aeframe.report.leaderboard import leaderboard_page
from aeframe.report.pictures import ORIGINAL_ROW, _sample_rows, write_figures
from aeframe.cells.record import CellConfig, CellRecord
from aeframe.cells.samples import Samples
from conftest import TINY_SHAPES


def _record(label: str, seed: int, shade: int, curve=((1.0, 0.02), (2.0, 0.01)), dataset="shapes",
            lr: float = 0.001) -> CellRecord:
    config = CellConfig.from_json({
        "label": label, "seed": seed, "techniques": [], "budget": {"epochs": 2, "seconds": None}, "lr": "study",
        "dataset": {"name": dataset, "title": dataset.title(), "params": {}},
        "device": {"type": "cpu", "name": "Test CPU"},
        "versions": {"aeframe": "0.1.0", "torch": "2.4.1", "torchvision": "0.19.1", "python": "3.11.7"},
        "protocol": {"batch_size": 64, "phases": [{"name": "train", "fraction": 1.0, "max_lr": [lr],
                                                   "image_size": None}]},
        "provenance": {"command": "aeframe bench -d shapes --epochs 2", "commit": "0123456789ab"},
    })
    originals = torch.full((4, 3, 8, 8), 200, dtype=torch.uint8)
    samples = Samples([0, 1, 2, 3], originals, torch.full_like(originals, shade))
    return CellRecord(key=f"{label}-{seed}", config=config, status="done", metrics={"mse": 0.01},
                      stats={"train_seconds": 2.0, "epochs": 2.0}, started_at="2026-01-01T00:00:00+00:00",
                      finished_at=f"2026-01-01T00:0{seed}:00+00:00",
                      curve=[{"epoch": i + 1, "seconds": t, "test_mse": m, "phase": "train"} for i, (t, m) in enumerate(curve)],
                      samples=samples)


def test_the_grid_has_the_originals_then_one_row_per_technique_from_its_lowest_seed():
    records = [_record("Baseline", 1, 10), _record("Baseline", 0, 20), _record("Pixel Shuffle", 0, 30)]
    table = next(iter(group(records)[0].tables.values()))
    rows = _sample_rows(table, {r.key: r.samples for r in records})
    assert [label for label, _ in rows] == [ORIGINAL_ROW, "Baseline", "Pixel Shuffle"]
    assert [int(images.float().mean()) for _, images in rows] == [200, 20, 30]


def test_smaller_reconstructions_are_scaled_up_to_the_originals_size():
    big, small = _record("Baseline", 0, 10), _record("Progressive Resizing", 0, 10)
    small.samples = Samples([0, 1, 2, 3], torch.zeros((4, 3, 4, 4), dtype=torch.uint8),
                            torch.arange(16, dtype=torch.uint8).view(1, 1, 4, 4).expand(4, 3, 4, 4).contiguous())
    table = next(iter(group([big, small])[0].tables.values()))
    rows = _sample_rows(table, {big.key: big.samples, small.key: small.samples})
    scaled = rows[2][1]
    assert scaled.shape == (4, 3, 8, 8)
    assert torch.equal(scaled[0, 0, ::2, ::2], small.samples.reconstructions[0, 0])  # nearest: pixels repeated


def test_figures_are_pngs_one_grid_and_one_plot_per_table_and_rendering_twice_gives_the_same_bytes(tmp_path):
    records = [_record("Baseline", 0, 10), _record("Pixel Shuffle", 0, 30),
               _record("Baseline", 0, 10, dataset="mnist")]
    samples = {r.key: r.samples for r in records}
    figures = write_figures(group(records), samples, tmp_path / "a")
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == [
        "mnist-mse-vs-time.png", "mnist-reconstructions.png", "shapes-mse-vs-time.png", "shapes-reconstructions.png"]
    assert [[f.kind for f in fs] for fs in figures.values()] == [["reconstructions", "mse_vs_time"]] * 2
    two_rows = Image.open(tmp_path / "a" / "mnist-reconstructions.png").size
    three_rows = Image.open(tmp_path / "a" / "shapes-reconstructions.png").size
    assert three_rows[1] > two_rows[1]  # a row per technique (the width follows the widest label)
    write_figures(group(records), samples, tmp_path / "b")
    for path in (tmp_path / "a").iterdir():
        assert path.read_bytes() == (tmp_path / "b" / path.name).read_bytes()


def test_a_long_row_label_is_drawn_whole(tmp_path):
    # The leaderboard's grid cut two labels at the left edge: "ixel Shuffle + Progressive Resizing".
    records = [_record("Baseline", 0, 10), _record("Pixel Shuffle + Progressive Resizing + Feature Loss", 0, 30)]
    write_figures(group(records), {r.key: r.samples for r in records}, tmp_path)
    grid = Image.open(tmp_path / "shapes-reconstructions.png").convert("L")
    pixels = grid.load()
    inked = [x for x in range(grid.size[0]) if any(pixels[x, y] < 128 for y in range(grid.size[1]))]
    assert inked[0] >= 5, "a label reaches the picture's left edge: it is cut"


def test_a_table_without_samples_or_curves_gets_only_what_it_has(tmp_path):
    record = _record("Baseline", 0, 10)
    assert [f.kind for fs in write_figures(group([record]), {}, tmp_path).values() for f in fs] == ["mse_vs_time"]
    record.curve = []
    assert write_figures(group([record]), {}, tmp_path / "none") == {}


def test_the_page_names_the_commands_versions_commit_device_and_protocol_and_links_its_pictures(tmp_path):
    records = [_record("Baseline", 0, 10), _record("Pixel Shuffle", 0, 30)]
    page = tmp_path / "docs" / "leaderboard.md"
    figures = write_figures(group(records), {r.key: r.samples for r in records}, tmp_path / "docs" / "leaderboard")
    text = leaderboard_page(records, [], page, "aeframe report --docs docs/leaderboard.md",
                            datetime(2026, 11, 29, tzinfo=timezone.utc), figures)
    assert "```sh\naeframe bench -d shapes --epochs 2\naeframe report --docs docs/leaderboard.md\n```" in text
    assert "| aeframe        | 0.1.0 (git 0123456789ab)" in text
    assert "| CUDA           | not used (every cell ran on the CPU)" in text
    assert "| Device         | Test CPU (cpu)" in text
    assert "| Baseline      | 64      | train: 100% at 0.001" in text
    assert "generated on 2026-11-29 from 2 finished cells" in text
    # How to cite: the version and the commit the numbers came from, last on the page.
    cite = text[text.index("## How to cite"):]
    assert "aeframe 0.1.0, commit 0123456789ab, leaderboard generated on 2026-11-29" in cite
    assert "Budget: 2 epochs per cell · Seed: 0 · Device: Test CPU (cpu)" in text
    links = re.findall(r"!\[[^]]*\]\(([^)]+)\)", text)
    assert links == ["leaderboard/shapes-reconstructions.png", "leaderboard/shapes-mse-vs-time.png"]
    assert all((page.parent / link).is_file() for link in links)


def test_the_page_names_no_home_directory_of_the_machine_that_made_it(tmp_path):
    # The leaderboard's skip reasons read "not in /root/.cache/torch/hub/checkpoints".
    skipped = _record("Feature Loss", 0, 10)
    skipped.status = "skipped"
    skipped.error = ("feature-loss needs vgg16_bn-6c64b313.pth, which is not in /root/.cache/torch/hub/checkpoints; "
                     "put it in /home/ann/.cache/torch or /Users/ann/weights, or see https://example.org/root/x")
    text = leaderboard_page([_record("Baseline", 0, 10), skipped], [], tmp_path / "board.md",
                            "aeframe report --docs board.md", datetime(2026, 11, 29, tzinfo=timezone.utc))
    assert ("which is not in ~/.cache/torch/hub/checkpoints; put it in ~/.cache/torch or ~/weights, or see "
            "https://example.org/root/x") in text
    assert not re.search(r"(?<![\w/])(/root|/home/|/Users/)", text)


def test_the_page_explains_its_signs_rows_and_links_in_one_line_each(tmp_path):
    # The page named Holm without explaining it, never defined ±, and left the Original Image row unexplained.
    (tmp_path / "protocol.md").write_text("# Protocol\n")  # the page sits beside the site's other pages
    records = [_record("Baseline", 0, 10), _record("Pixel Shuffle", 0, 30)]
    text = leaderboard_page(records, [], tmp_path / "board.md", "aeframe report --docs board.md",
                            datetime(2026, 11, 29, tzinfo=timezone.utc))
    legend = text[text.index("## How to read the tables"):text.index("## How to reproduce")]
    for sign in ("**x ± s**", "**Bold**", "**†**", "**§**", "**‡**", "**Original Image**", "**–**"):
        assert f"- {sign}: " in legend, sign
    assert "Holm-corrected: sorted, the smallest multiplied by the number of tests" in legend
    assert "[Techniques](techniques.md)" in legend and "[Protocol](protocol.md)" in legend
    # Two epochs are not the study's fifteen: the page says its rows cannot be set beside the study's figures.
    assert "cannot be compared with the study's figures" in legend
    assert ('study ["Applying Modern Best Practices to Autoencoders"]'
            "(https://github.com/henriwoodcock/Applying-Modern-Best-Practices-to-Autoencoders)") in text
    # Each record trained 2 s and evaluated nothing: 4 s in all.
    assert "together they took 4.0s of training, evaluation and preparation (summed over the cells)" in text
    away = leaderboard_page(records, [], tmp_path / "elsewhere" / "board.md", "aeframe report --docs board.md",
                            datetime(2026, 11, 29, tzinfo=timezone.utc))
    assert "the techniques: docs/techniques.md" in away.lower()


def test_beside_the_docs_the_page_links_each_technique_to_its_section(tmp_path):
    # The page linked the techniques page only; a reader wants the section of the row in front of them.
    from aeframe.cells.record import TechniqueRef

    (tmp_path / "protocol.md").write_text("# Protocol\n")
    (tmp_path / "techniques.md").write_text('<a id="technique-baseline"></a>\n\n## Baseline\n')
    base, mine = _record("Baseline", 0, 10), _record("Mine + Baseline", 0, 30)
    base.config = replace(base.config, techniques=[TechniqueRef("baseline")])
    mine.config = replace(mine.config, techniques=[TechniqueRef("mine"), TechniqueRef("baseline")])
    text = leaderboard_page([base, mine], [], tmp_path / "board.md", "aeframe report --docs board.md",
                            datetime(2026, 11, 29, tzinfo=timezone.utc))
    assert "- The techniques: [Techniques](techniques.md) ([baseline](techniques.md#technique-baseline)); " in text
    assert "[mine]" not in text  # a technique the page has no section for is not linked


def test_the_techniques_page_has_a_section_for_each_built_in_technique(registry):
    from aeframe.report.leaderboard import TECHNIQUE_ANCHOR

    page = (Path(__file__).resolve().parent.parent / "docs" / "techniques.md").read_text()
    assert [name for name in registry.techniques if TECHNIQUE_ANCHOR.format(name=name) not in page] == []


def test_a_page_of_cells_from_two_commits_says_which_to_reproduce_from(tmp_path):
    old, new = _record("Baseline", 0, 10), _record("Pixel Shuffle", 0, 30)
    new.config = replace(new.config, provenance=replace(new.config.provenance, commit="fedcba987654"))
    text = leaderboard_page([old, new], [], tmp_path / "board.md", "aeframe report --docs board.md",
                            datetime(2026, 11, 29, tzinfo=timezone.utc))
    assert ("at the last of the 2 commits named under Provenance (the store was filled across them, each cell "
            "recording its own; the last one's code trains every row)") in text


def test_the_page_gives_each_datasets_own_protocol(tmp_path):
    # The study set learning rates per dataset: the table took every row from the first dataset, so the
    # second was listed with the first one's rates.
    records = [_record("Baseline", 0, 10, dataset="shapes", lr=0.001), _record("Baseline", 0, 10, dataset="fashion",
                                                                               lr=0.0001)]
    text = leaderboard_page(records, [], tmp_path / "board.md", "aeframe report --docs board.md",
                            datetime(2026, 11, 29, tzinfo=timezone.utc))
    protocol = text[text.index("## Training protocol"):]
    shapes, fashion = protocol.index("### Shapes"), protocol.index("### Fashion")
    assert "| Baseline | 64      | train: 100% at 0.001" in protocol[shapes:fashion]
    assert "| Baseline | 64      | train: 100% at 0.0001" in protocol[fashion:]


def test_report_images_and_docs_from_a_real_bench(tmp_path, cli, monkeypatch):
    # Called in-process, as by a test runner or a notebook: the page repeats the commands aeframe was given,
    # never the caller's own arguments (it used to take sys.argv whenever argv[0] was a __main__.py).
    monkeypatch.setattr(sys, "argv", ["/usr/lib/python3/site-packages/pytest/__main__.py", "-q", "-p", "no:cacheprovider"])
    bench = ("bench", "-t", "baseline", "-t", "pixel-shuffle", "-d", TINY_SHAPES, "--epochs", "1", "--no-channels-last",
             "--store", "r.sqlite")
    assert cli(*bench, cwd=tmp_path).returncode == 0

    shown = cli("report", "--store", "r.sqlite", "--images", "pics", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert "![Shapes: test images and reconstructions](pics/shapes-reconstructions.png)" in shown.stdout
    assert "wrote 2 pictures to pics" in shown.stderr
    grid = Image.open(tmp_path / "pics" / "shapes-reconstructions.png")
    assert grid.format == "PNG" and grid.size[1] > grid.size[0] / 8

    out = cli("report", "--store", "r.sqlite", "--images", "pics", "--format", "json", "--output", "out/r.json",
              cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    table = json.loads((tmp_path / "out" / "r.json").read_text())["datasets"][0]["tables"][0]
    assert [(f["kind"], f["path"]) for f in table["figures"]] == [
        ("reconstructions", "../pics/shapes-reconstructions.png"), ("mse_vs_time", "../pics/shapes-mse-vs-time.png")]

    page = cli("report", "--store", "r.sqlite", "--docs", "site/board.md", cwd=tmp_path)
    assert page.returncode == 0, page.stderr
    text = (tmp_path / "site" / "board.md").read_text()
    assert shlex.join(["aeframe", *bench]) in text  # the bench command as a shell takes it
    assert "aeframe report --store r.sqlite --docs site/board.md" in text
    assert "no:cacheprovider" not in text and "__main__" not in text
    assert "| Baseline " in text and "| Pixel Shuffle " in text and "Original Image" in text
    assert (tmp_path / "site" / "board" / "shapes-mse-vs-time.png").is_file()
    assert "](board/shapes-reconstructions.png)" in text


@pytest.mark.parametrize("args, message", [
    (("--docs", "p.md", "--output", "x.md"), "--docs writes the page itself"),
    (("--docs", "p.md", "--format", "json"), "--docs writes a markdown page"),
    (("--images", "pics", "--format", "csv"), "csv has one row per cell"),
])
def test_report_option_clashes_are_usage_errors(tmp_path, cli, args, message):
    result = cli("report", "--store", "r.sqlite", *args, cwd=tmp_path)
    assert result.returncode == 2 and message in result.stderr
    assert not (tmp_path / "p.md").exists()


def test_the_json_report_carries_each_tables_provenance_and_protocols():
    from aeframe.report.render import render

    records = [_record("Baseline", 0, 10), _record("Pixel Shuffle", 1, 30)]
    table = json.loads(render(records, [], "json"))["datasets"][0]["tables"][0]
    assert table["provenance"] == {
        "commands": ["aeframe bench -d shapes --epochs 2"], "commits": ["0123456789ab"],
        "versions": {"aeframe": ["0.1.0"], "torch": ["2.4.1"], "torchvision": ["0.19.1"], "python": ["3.11.7"]},
        "devices": ["Test CPU (cpu)"], "device_types": ["cpu"],
        "finished": ["2026-01-01T00:00:00+00:00", "2026-01-01T00:01:00+00:00"]}
    assert table["protocols"]["Pixel Shuffle"]["batch_size"] == 64
    assert table["figures"] == []


def test_an_output_that_cannot_be_written_is_one_line_not_a_traceback(tmp_path, cli):
    from aeframe.store.sqlite_store import Store

    Store(tmp_path / "r.sqlite").close()
    (tmp_path / "taken").write_text("a file where a folder should be")
    for args, message in [
        (("--output", "taken/r.md"), "Error: cannot write taken/r.md"),
        (("--images", "taken/pics"), "Error: cannot write pictures to taken/pics"),
        (("--docs", "taken/page.md"), "Error: cannot write pictures to taken/page"),
        (("--docs", "taken/page.md", "--images", "pics"), "Error: cannot write taken/page.md"),
    ]:
        result = cli("report", "--store", "r.sqlite", *args, cwd=tmp_path)
        assert result.returncode == 1, args
        assert result.stderr.strip().splitlines()[-1].startswith(message), result.stderr
        assert "Traceback" not in result.stderr


def _interrupted(exc: BaseException, what: str):
    """A stand-in for matplotlib's ``savefig`` (``what`` "pictures") or ``Path.write_text`` (the page, the
    output) that gets a few bytes into the file it was handed, then is stopped by ``exc``."""

    def savefig(figure, path, *args, **kwargs):
        Path(path).write_bytes(b"\x89PNG\r\n\x1a\n")
        raise exc

    def write_text(path, text, *args, **kwargs):
        path.write_bytes(text[:10].encode())
        raise exc

    return savefig if what == "pictures" else write_text


@pytest.mark.parametrize("stop, code", [(KeyboardInterrupt(), 130), (OSError(28, "No space left on device"), 1)])
@pytest.mark.parametrize("what", ["pictures", "page", "output"])
def test_a_report_stopped_while_writing_leaves_the_earlier_files_whole_and_no_partial_file(
        tmp_path, cli, monkeypatch, what, stop, code):
    # A Ctrl-C at the first write left a truncated PNG where a valid one had been.
    from matplotlib.figure import Figure

    from aeframe.store.sqlite_store import Store

    with Store(tmp_path / "r.sqlite") as store:
        for record in (_record("Baseline", 0, 10), _record("Pixel Shuffle", 0, 30)):
            store.save(record)
    args = ("report", "--store", "r.sqlite", *(("--output", "site/r.md", "--images", "site/board") if what == "output"
                                               else ("--docs", "site/board.md")))
    assert cli(*args, cwd=tmp_path).returncode == 0
    before = {p: p.read_bytes() for p in (tmp_path / "site").rglob("*") if p.is_file()}
    assert len(before) == 3

    owner, name = (Figure, "savefig") if what == "pictures" else (Path, "write_text")
    monkeypatch.setattr(owner, name, _interrupted(stop, what))
    result = cli(*args, cwd=tmp_path)
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr
    assert {p: p.read_bytes() for p in (tmp_path / "site").rglob("*") if p.is_file()} == before
    Image.open(tmp_path / "site" / "board" / "shapes-reconstructions.png").verify()
