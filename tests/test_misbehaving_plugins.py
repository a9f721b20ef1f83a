"""Plugins that misbehave in ways an exception does not cover, through the real CLI: a technique that
changes process-wide state must not reach the next cell, and one that exits must fail its cell only."""
from __future__ import annotations

import sqlite3

import pytest

import state_techniques
from aeframe.training.isolation import isolated
from conftest import TINY_SHAPES, registry_with

FAST = ("-d", TINY_SHAPES, "--epochs", "1", "--precision", "fp32", "--no-channels-last", "--store", "r.sqlite")


@pytest.fixture(scope="module")
def state_registry():
    return registry_with("state_techniques")


@pytest.mark.parametrize("kind", sorted(state_techniques.KINDS))
def test_global_state_a_technique_sets_in_its_cell_does_not_reach_the_next_cell(kind, cli, tmp_path, state_registry):
    read = state_techniques.KINDS[kind].read
    state_techniques.SEEN.clear()
    # Whatever the outcome, the tests after this one in this process find the state as it was.
    with isolated():
        before = read()
        result = cli("bench", "-t", f"sets-state[what={kind}]", "-t", "reads-state", *FAST, cwd=tmp_path,
                     registry=state_registry)
        after = read()
    assert "Reads State on shapes" in result.stderr and "Traceback" not in result.stderr, result.stderr
    if kind not in state_techniques.RESEEDED:
        assert state_techniques.SEEN[kind] == before, f"the next cell found {kind} as the technique before it left it"
    assert after == before, f"{kind} was left changed after the run's cells"


@pytest.fixture(scope="module")
def exit_registry():
    return registry_with("exit_techniques")


@pytest.mark.parametrize("when, what", [
    ("build", "called sys.exit(3) while its cell was built"),
    ("train", "raised GeneratorExit, which is not an Exception and would have ended the run, while its cell was trained"),
    ("evaluate", "called sys.exit('bye') while its cell was evaluated"),
])
def test_a_technique_that_exits_fails_its_cell_naming_it_and_the_run_goes_on(when, what, cli, tmp_path, exit_registry):
    result = cli("bench", "-t", f"exits[when={when}]", "-t", "baseline", *FAST, cwd=tmp_path, registry=exit_registry)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    reason = f"technique 'exits' from plugin 'exit_techniques' (no distribution) {what}; " \
             "a plugin must raise an exception instead"
    assert f"failed: Exits [when={when}] on shapes (seed 0): {reason}" in result.stderr
    with sqlite3.connect(tmp_path / "r.sqlite") as db:
        rows = dict(db.execute("SELECT label, status FROM cells"))
        error = db.execute("SELECT error FROM cells WHERE status = 'failed'").fetchone()[0]
    assert rows == {f"Exits [when={when}]": "failed", "Baseline": "done"}  # the cell after it trained
    assert error.startswith(f"{reason}\nTraceback")
    assert (tmp_path / "r.sqlite.lock").read_text() == ""  # released, naming no holder
