"""Models that are right in one mode and wrong in the other (tests/output_check_techniques.py), run through
the CLI: the check before training looks at both modes, and an evaluation that is not finite is no result."""
from __future__ import annotations

import json
import sqlite3

import pytest

from conftest import TINY_SHAPES, registry_with

FAST = ("--epochs", "1", "--precision", "fp32", "--no-channels-last", "--store", "r.sqlite")


@pytest.fixture(scope="module")
def checked():
    """The built-ins and tests/output_check_techniques.py, found through an entry point as an installed plugin is."""
    return registry_with("output_check_techniques")


def _rows(store) -> dict[str, tuple[str, str | None]]:
    with sqlite3.connect(store) as db:
        return {label: (status, error) for label, status, error in db.execute("SELECT label, status, error FROM cells")}


def test_a_model_wrong_only_in_training_mode_fails_before_training_naming_the_technique(tmp_path, cli, checked):
    # (B, 3, 1, 1) in training mode broadcast against the images in the loss: the cell trained and was "done".
    result = cli("bench", "-t", "broadcasts", "-t", "nan-in-training", "-d", TINY_SHAPES, *FAST, cwd=tmp_path,
                 registry=checked)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    rows = _rows(tmp_path / "r.sqlite")
    assert {label: status for label, (status, _) in rows.items()} == {"Broadcasts": "failed",
                                                                       "NaN In Training": "failed"}
    assert rows["Broadcasts"][1].splitlines()[0] == (
        "AeframeError: technique 'Broadcasts' built a model whose output has shape (3, 1, 1) in training mode "
        "for input (3, 32, 32); an autoencoder must return its input's shape")
    assert rows["NaN In Training"][1].splitlines()[0] == (
        "AeframeError: technique 'NaN In Training' built a model whose output in training mode is not finite "
        "(nan) before any training; check its forward")
    assert "failed: Broadcasts on shapes (seed 0): AeframeError: technique 'Broadcasts' built a model" in result.stderr


def test_nan_at_evaluation_is_diverged_with_the_reason_and_the_store_holds_only_valid_json(tmp_path, cli, checked):
    # It was stored as done, its metrics and curve holding NaN, which SQLite's JSON functions refuse.
    result = cli("bench", "-t", "nan-in-eval", "-d", TINY_SHAPES, *FAST, cwd=tmp_path, registry=checked)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    reason = "evaluation gave non-finite mse: nan, though the training loss was finite"
    assert _rows(tmp_path / "r.sqlite") == {"NaN In Eval": ("diverged", reason)}
    assert f"diverged: NaN In Eval on shapes (seed 0): {reason}" in result.stderr
    with sqlite3.connect(tmp_path / "r.sqlite") as db:
        for table in ("cells", "attempts"):
            invalid = db.execute(f"SELECT count(*) FROM {table} WHERE json_valid(config) = 0 "
                                 "OR json_valid(metrics) = 0 OR json_valid(stats) = 0 OR json_valid(curve) = 0"
                                 ).fetchone()[0]
            assert invalid == 0, table
        # What was not finite is null, and queries on it work.
        assert db.execute("SELECT json_extract(curve, '$[0].test_mse'), json_type(metrics, '$.mse') FROM cells"
                          ).fetchone() == (None, "null")

    report = cli("report", "--store", "r.sqlite", cwd=tmp_path, registry=checked)
    assert report.returncode == 0, report.stderr
    assert f"- NaN In Eval: diverged ({reason})" in report.stdout
    as_json = cli("report", "--store", "r.sqlite", "--format", "json", cwd=tmp_path, registry=checked)
    assert as_json.returncode == 0 and json.loads(as_json.stdout)["datasets"], as_json.stderr
