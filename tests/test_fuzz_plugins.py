"""Plugins that misbehave, drawn at random (issue 26): a technique that exits, raises what is not an
Exception, changes the process's global state, or returns NaN or a broadcasting shape, at any moment
of its cell. Whatever it does, through the real CLI: the run ends with exit 0 or 1 and no traceback,
the misbehaving cell is stored with a status and (when not done) a reason, and the run names the technique; the
Baseline trained after it in the same run has exactly the numbers it has alone, and every stored
JSON column is valid JSON.

Hypothesis runs derandomized with few examples (each is a two-cell bench of a few seconds), so the
test is the same in CI; the ``@example`` cases pin one misbehaviour of each family.
"""
from __future__ import annotations

import json
import sqlite3

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from conftest import registry_with
from misbehaving_techniques import WHATS, WHENS

SMALL = "shapes[train=256,test=64]"
# Exact numbers need the same kernels and rounding in every run: plain fp32, contiguous.
EXACT = ("--epochs", "1", "--precision", "fp32", "--no-channels-last")
FUZZ = settings(max_examples=6, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@pytest.fixture(scope="module")
def misbehaving():
    return registry_with("misbehaving_techniques")


@pytest.fixture(scope="module")
def baseline_alone(tmp_path_factory, misbehaving):
    """The Baseline's stored metrics when it trains alone."""
    from click.testing import CliRunner

    import aeframe.registry.plugins
    from aeframe.cli import cli as command

    folder = tmp_path_factory.mktemp("alone")
    store = folder / "alone.sqlite"
    before = aeframe.registry.plugins._registry
    aeframe.registry.plugins._registry = misbehaving
    try:
        ran = CliRunner().invoke(command, ["bench", "-t", "baseline", "-d", SMALL, *EXACT, "--store", str(store)])
    finally:
        aeframe.registry.plugins._registry = before
    assert ran.exit_code == 0, ran.stderr
    [(metrics,)] = _query(store, "SELECT metrics FROM cells")
    return json.loads(metrics)


def _query(store, sql: str) -> list[tuple]:
    with sqlite3.connect(store) as db:
        return db.execute(sql).fetchall()


@FUZZ
@given(what=st.sampled_from(WHATS), when=st.sampled_from(WHENS))
@example(what="sys-exit", when="build")
@example(what="base-exception", when="after-step")
@example(what="state-threads", when="forward")
@example(what="output-nan", when="forward")
def test_a_misbehaving_plugin_fails_at_most_its_own_cell(tmp_path_factory, cli, misbehaving, baseline_alone, what,
                                                         when):
    folder = tmp_path_factory.mktemp("fuzz")
    technique = f"misbehaves[what={what},when={when}]"
    ran = cli("bench", "-t", technique, "-t", "baseline", "-d", SMALL, *EXACT, "--store", "r.sqlite", cwd=folder,
              registry=misbehaving)
    assert ran.returncode in (0, 1), ran.stderr
    assert "Traceback" not in ran.stderr and "unexpected" not in ran.stderr.lower()
    store = folder / "r.sqlite"
    rows = {label: (status, error, json.loads(metrics) if metrics else None)
            for label, status, error, metrics in _query(store, "SELECT label, status, error, metrics FROM cells")}
    assert set(rows) == {"Baseline", next(label for label in rows if label.startswith("Misbehaves"))}
    label = next(label for label in rows if label != "Baseline")
    status, error, _ = rows[label]
    assert status in ("done", "failed", "diverged")
    if status != "done":  # the reason is stored, and the run's summary names whose code it was
        assert error and error.strip()
        assert "technique 'misbehaves'" in ran.stderr, ran.stderr
    # Nothing the misbehaving cell did reaches the next one.
    assert rows["Baseline"][:2] == ("done", None)
    assert rows["Baseline"][2] == baseline_alone
    invalid = _query(store, "SELECT count(*) FROM attempts WHERE NOT (json_valid(config) AND json_valid(stats) AND "
                            "json_valid(coalesce(metrics, '{}')) AND json_valid(coalesce(curve, '[]')))")
    assert invalid == [(0,)]
