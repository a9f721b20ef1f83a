"""A store written by aeframe 0.1.0 still reads, and renders exactly as 0.1.0 rendered it.

``tests/data/store-0.1.0.sqlite`` was written by aeframe 0.1.0 (three ``aeframe bench`` runs: two
techniques and a skipped one on tiny shapes with two seeds, a dataset that could not be had, an fp32
cell and an ``--lr find`` cell); the ``report-0.1.0.*`` files are what 0.1.0's ``aeframe report``
printed for it. Any change to these outputs must be deliberate: regenerate the golden files and say
why in the commit.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest
import torch

DATA = Path(__file__).resolve().parent / "data"
GOLDEN = {"markdown": "report-0.1.0.md", "json": "report-0.1.0.json", "csv": "report-0.1.0.csv"}


@pytest.fixture
def old_store(tmp_path) -> Path:
    """A copy: opening a store may add files next to it."""
    path = tmp_path / "store-0.1.0.sqlite"
    shutil.copy(DATA / "store-0.1.0.sqlite", path)
    return path


def _records(path: Path):
    from aeframe.store.sqlite_store import Store

    with Store(path, write=False) as store:
        return store.records()


def test_every_cell_of_a_0_1_0_store_reads(old_store):
    records = _records(old_store)
    assert len(records) == 9
    assert sorted(r.status for r in records) == ["done"] * 6 + ["skipped"] * 3


@pytest.mark.parametrize("fmt", sorted(GOLDEN))
def test_a_0_1_0_store_renders_as_0_1_0_rendered_it(old_store, registry, fmt):
    from aeframe.report.render import render

    text = render(_records(old_store), list(registry.metrics.values()), fmt)
    assert text.rstrip("\n") == (DATA / GOLDEN[fmt]).read_text().rstrip("\n")


GENERATED = datetime(2026, 11, 30, tzinfo=timezone.utc)
PAGE_COMMAND = "aeframe report --store store-0.1.0.sqlite --docs leaderboard.md"


def test_a_0_1_0_store_gives_0_1_0_s_leaderboard_page(old_store, registry):
    from aeframe.report.leaderboard import leaderboard_page

    page = leaderboard_page(_records(old_store), list(registry.metrics.values()), old_store.parent / "leaderboard.md",
                            PAGE_COMMAND, GENERATED)
    assert page == (DATA / "leaderboard-0.1.0.md").read_text()


GOLDEN_COMMANDS = [
    # (-t texts, --epochs, --seeds, --lr, --precision) of the three `aeframe bench` runs that wrote the store,
    # all with -d 'shapes[train=256,test=64]' on a CPU, where channels_last is the default.
    (["baseline", "pixel-shuffle", "pretrained-resnet[weights=/nowhere/resnet34.pth]"], 1, 2, "study", "bf16"),
    (["baseline"], 1, 1, "study", "fp32"),
    (["progressive-resizing"], 2, 1, "find", "bf16"),
]


@pytest.mark.parametrize("techniques, epochs, seeds, lr, precision", GOLDEN_COMMANDS)
def test_planning_a_0_1_0_command_again_does_not_take_the_cells_it_stored(old_store, registry, monkeypatch,
                                                                         techniques, epochs, seeds, lr, precision):
    """Changed on purpose when cell keys came to include the data's fingerprint: 0.1.0 stored none, so
    nothing proves its cells saw the data a run loads today, and a bench trains them again (the
    report still shows them until then: tests below)."""
    import aeframe.planning.plan
    from aeframe.cells.budget import Budget
    from aeframe.cells.spec import cell_key
    from aeframe.planning.plan import plan_cells, resolve_dataset, resolve_technique
    from aeframe.cells.settings import Speed

    # A key includes each technique's plugin version: 0.1.0's built-ins were 0.1.0, whatever is installed now.
    monkeypatch.setattr(aeframe.planning.plan, "_plugin_version", lambda registry, kind, name: "0.1.0")
    versions = {"aeframe": "0.1.0", "torch": "2.14.1", "torchvision": "0.29.1", "python": "3.11.7"}
    dataset = resolve_dataset("shapes[train=256,test=64]", registry)
    cells = plan_cells([resolve_technique(t, registry) for t in techniques], [dataset], seeds, Budget(epochs=epochs),
                       {"type": "cpu", "name": "another CPU"}, versions, registry, lr, speed=Speed(precision, True))
    fingerprint = dataset.plugin.load(old_store.parent, dataset.params).fingerprint()
    stored = {r.key for r in _records(old_store)}
    assert len(cells) == len(techniques) * seeds
    for cell in cells:
        assert cell_key(cell.config) not in stored and cell.keyed(fingerprint).key not in stored, cell.config.label


def test_a_bench_on_a_0_1_0_store_trains_its_cell_again_and_the_report_shows_it_once(old_store, cli):
    before = {r.key for r in _records(old_store)}
    # On the store's 2 threads ("AMD EPYC (2 threads)"): on another count it would be another table.
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        _bench_again(old_store, cli, before)
    finally:
        torch.set_num_threads(threads)


def _bench_again(old_store, cli, before: set[str]) -> None:
    result = cli("bench", "-t", "baseline", "-d", "shapes[train=256,test=64]", "--epochs", "1", "--precision", "fp32",
                 "--no-channels-last", "--store", old_store.name, cwd=old_store.parent)
    assert result.returncode == 0, result.stderr
    assert "already done" not in result.stderr and "[1/1] Baseline" in result.stderr
    [new] = [r for r in _records(old_store) if r.key not in before]
    assert new.status == "done" and new.config.dataset.fingerprint
    report = json.loads(cli("report", "--store", old_store.name, "--format", "json", cwd=old_store.parent).stdout)
    [shapes] = [d for d in report["datasets"] if d["tables"]]
    [fp32] = [t for t in shapes["tables"] if t["condition"]["precision"] == "fp32"]
    # The new cell supersedes 0.1.0's of the same label, condition and seed: one row, one seed.
    assert [(row["label"], row["keys"]) for row in fp32["rows"]] == [("Baseline", [new.key])]
    assert sum(len(t["rows"]) for t in shapes["tables"]) == 4  # the other tables as 0.1.0 left them


_WITHOUT_TORCH = """
import json, sys
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace

import aeframe.cells.durations, aeframe.report.grouping, aeframe.report.pictures, aeframe.report.provenance, aeframe.report.publish, aeframe.cells.samples
from aeframe.report.leaderboard import leaderboard_page
from aeframe.report.render import render
from aeframe.store.sqlite_store import Store

store, data, metrics, goldens, generated, command = sys.argv[1:]
data, metrics = Path(data), [SimpleNamespace(**m) for m in json.loads(metrics)]
with Store(store, write=False) as opened:
    records = opened.records()
for fmt, golden in json.loads(goldens).items():
    assert render(records, metrics, fmt).rstrip("\\n") == (data / golden).read_text().rstrip("\\n"), fmt
page = leaderboard_page(records, metrics, Path(store).parent / "leaderboard.md", command,
                        datetime.fromisoformat(generated))
assert page == (data / "leaderboard-0.1.0.md").read_text(), "page"
print(sorted(name for name in ("torch", "torchvision", "matplotlib") if name in sys.modules))
"""


def test_the_report_path_renders_the_store_without_importing_torch(old_store, registry):
    """What `aeframe report` runs, in a fresh interpreter: store, records, report, page; no torch."""
    metrics = [{"name": m.name, "title": m.title, "better": m.better, "format": m.format}
               for m in registry.metrics.values()]
    done = subprocess.run([sys.executable, "-c", _WITHOUT_TORCH, str(old_store), str(DATA), json.dumps(metrics),
                           json.dumps(GOLDEN), GENERATED.isoformat(), PAGE_COMMAND],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
