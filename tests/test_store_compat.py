"""A store written by aeframe 0.1.0 still reads, and renders exactly as 0.1.0 rendered it.

``tests/data/store-0.1.0.sqlite`` was written by aeframe 0.1.0 (three ``aeframe bench`` runs: two
techniques and a skipped one on tiny shapes with two seeds, a dataset that could not be had, an fp32
cell and an ``--lr find`` cell); the ``report-0.1.0.*`` files are what 0.1.0's ``aeframe report``
printed for it. Any change to these outputs must be deliberate: regenerate the golden files and say
why in the commit.
"""
from __future__ import annotations

import shutil
from datetime import datetime, timezone
from pathlib import Path

import pytest

DATA = Path(__file__).resolve().parent / "data"
GOLDEN = {"markdown": "report-0.1.0.md", "json": "report-0.1.0.json", "csv": "report-0.1.0.csv"}


@pytest.fixture
def old_store(tmp_path) -> Path:
    """A copy: opening a store may add files next to it."""
    path = tmp_path / "store-0.1.0.sqlite"
    shutil.copy(DATA / "store-0.1.0.sqlite", path)
    return path


def _records(path: Path):
    from aeframe.store import Store

    with Store(path, write=False) as store:
        return store.records()


def test_every_cell_of_a_0_1_0_store_reads(old_store):
    records = _records(old_store)
    assert len(records) == 9
    assert sorted(r.status for r in records) == ["done"] * 6 + ["skipped"] * 3


@pytest.mark.parametrize("fmt", sorted(GOLDEN))
def test_a_0_1_0_store_renders_as_0_1_0_rendered_it(old_store, registry, fmt):
    from aeframe.report import render

    text = render(_records(old_store), list(registry.metrics.values()), fmt)
    assert text.rstrip("\n") == (DATA / GOLDEN[fmt]).read_text().rstrip("\n")


GENERATED = datetime(2026, 11, 30, tzinfo=timezone.utc)
PAGE_COMMAND = "aeframe report --store store-0.1.0.sqlite --docs leaderboard.md"


def test_a_0_1_0_store_gives_0_1_0_s_leaderboard_page(old_store, registry):
    from aeframe.leaderboard import leaderboard_page

    page = leaderboard_page(_records(old_store), list(registry.metrics.values()), old_store.parent / "leaderboard.md",
                            PAGE_COMMAND, GENERATED)
    assert page == (DATA / "leaderboard-0.1.0.md").read_text()
