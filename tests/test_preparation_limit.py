"""Issue 26, case 8: a cell's untimed preparation (resized copies, layout measurement, warm-up) has a
limit relative to its time budget and says how it goes, through the real CLI with a technique whose
training step sleeps. Before the limit, such a cell spent a quarter of an hour there without a line."""
from __future__ import annotations

import sqlite3

import pytest

from aeframe.speed import preparation_limit
from aeframe.speed.preparation_limit import LIMIT_ENV, PreparationTooLong, PreparationWatch
from aeframe.speed.preparation_limit import preparation_limit as limit_of
from conftest import TINY_SHAPES, registry_with

COMMON = ("-d", TINY_SHAPES, "--precision", "fp32", "--store", "r.sqlite")


@pytest.fixture(scope="module")
def slow_registry():
    return registry_with("slow_techniques")


def _statuses(path) -> dict[str, tuple[str, str | None]]:
    with sqlite3.connect(path / "r.sqlite") as db:
        return {label: (status, error) for label, status, error in db.execute("SELECT label, status, error FROM cells")}


def test_a_cell_whose_preparation_passes_its_limit_fails_saying_why_and_the_next_cell_trains(
        cli, tmp_path, slow_registry, monkeypatch):
    # The limit is max(floor, 10x the time budget): a floor of 0.5 s and 0.5 s of budget give 5 s, which the
    # warm-up's 3-s steps pass at their second. The layout is forced, so that the other cell's preparation
    # is a warm-up of one convolution: far below 5 s even on a busy machine.
    monkeypatch.setattr(preparation_limit, "FLOOR_SECONDS", 0.5)
    monkeypatch.delenv(LIMIT_ENV, raising=False)
    result = cli("bench", "-t", "slow-step[seconds=3]", "-t", "slow-step", "--time-budget", "0.5s",
                 "--no-channels-last", *COMMON, cwd=tmp_path, registry=slow_registry)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    reason = ("technique 'Slow Step [seconds=3.0]' passed its preparation limit of 5.0s (10x the 0.5s time budget, "
              "at least 0.5s) while warming up (2 training steps per phase), after ")
    advice = f"off the clock; a larger --time-budget or {LIMIT_ENV} allows more"
    assert f"failed: Slow Step [seconds=3.0] on shapes (seed 0): {reason}" in result.stderr
    rows = _statuses(tmp_path)
    status, error = rows["Slow Step [seconds=3.0]"]
    assert status == "failed" and error.startswith(reason) and error.endswith(advice), error
    assert "\n" not in error  # one line: the reason is the whole story, no traceback of aeframe's loop
    assert rows["Slow Step"] == ("done", None), rows  # the cell after it trained


def test_a_slow_preparation_writes_progress_lines_and_an_epoch_budget_sets_no_limit(
        cli, tmp_path, slow_registry, monkeypatch):
    monkeypatch.setattr(preparation_limit, "FLOOR_SECONDS", 0.5)  # would fail the cell if an epoch budget had a limit
    monkeypatch.setattr(preparation_limit, "QUIET_SECONDS", 0.3)
    monkeypatch.setattr(preparation_limit, "LINE_SECONDS", 0.5)
    monkeypatch.delenv(LIMIT_ENV, raising=False)
    result = cli("bench", "-t", "slow-step[seconds=0.1]", "--epochs", "1", *COMMON, cwd=tmp_path,
                 registry=slow_registry)
    assert result.returncode == 0, result.stderr
    title = "[1/1] Slow Step [seconds=0.1] on shapes[train=256,test=64] (seed 0)"
    lines = [line for line in result.stderr.splitlines() if line.startswith(f"{title}: preparing off the clock: ")]
    stages = [line.removeprefix(f"{title}: preparing off the clock: ").split(" (")[0] for line in lines]
    assert "measuring the memory layout" in stages and "warming up" in stages, result.stderr
    assert all(line.endswith("so far)") for line in lines), lines  # no limit shown: there is none
    assert _statuses(tmp_path)["Slow Step [seconds=0.1]"][0] == "done"


def test_the_environment_variable_sets_the_limit_for_epoch_budgets_too(cli, tmp_path, slow_registry):
    result = cli("bench", "-t", "slow-step[seconds=1.5]", "--epochs", "1", "--no-channels-last", *COMMON,
                 cwd=tmp_path, env={LIMIT_ENV: "1s"}, registry=slow_registry)
    assert result.returncode == 1, result.stderr
    status, error = _statuses(tmp_path)["Slow Step [seconds=1.5]"]
    assert status == "failed"
    assert error.startswith("technique 'Slow Step [seconds=1.5]' passed its preparation limit of 1.0s "
                            f"({LIMIT_ENV}=1s) while warming up (2 training steps per phase), after "), error
    assert error.endswith(f"off the clock; a larger {LIMIT_ENV} allows more"), error


@pytest.mark.parametrize("budget, env, seconds", [
    (5.0, {}, 120.0),  # the 5-second budget: the floor
    (60.0, {}, 600.0),
    (None, {}, None),  # epochs only
    (5.0, {LIMIT_ENV: "90s"}, 90.0),
    (None, {LIMIT_ENV: "2m"}, 120.0),
    (5.0, {LIMIT_ENV: "None"}, None),
])
def test_the_limit_is_ten_times_the_time_budget_at_least_two_minutes_unless_the_environment_says(budget, env, seconds):
    assert limit_of(budget, env).seconds == seconds


def test_an_unreadable_limit_in_the_environment_is_refused_naming_the_variable():
    with pytest.raises(Exception, match=f"^{LIMIT_ENV}='soon' is not a duration; set it to e.g. 90s, 10m or none$"):
        limit_of(5.0, {LIMIT_ENV: "soon"})


def test_an_unreadable_limit_stops_the_bench_before_anything_runs(cli, tmp_path, slow_registry):
    ran = cli("bench", "-t", "baseline", "-d", "shapes[train=256,test=64]", "--epochs", "1", "--store", "r.sqlite",
              cwd=tmp_path, env={LIMIT_ENV: "soon"}, registry=slow_registry)
    assert ran.returncode == 2
    assert ran.stderr.strip() == f"Error: {LIMIT_ENV}='soon' is not a duration; set it to e.g. 90s, 10m or none"
    assert not (tmp_path / "r.sqlite").exists()


def test_once_passed_the_limit_is_raised_again_naming_the_stage_where_it_was_passed():
    now = [0.0]
    said: list[str] = []
    watch = PreparationWatch("X", limit_of(1.0, {LIMIT_ENV: "20s"}), said.append, clock=lambda: now[0])
    watch.enter("measuring the memory layout")
    now[0] = 12.0
    watch.check()
    assert said == ["preparing off the clock: measuring the memory layout (12s so far, limit 20s)"]
    now[0] = 21.0
    with pytest.raises(PreparationTooLong, match="while measuring the memory layout"):
        watch.step()  # swallowed, as a profiler's try/except would
    with pytest.raises(PreparationTooLong, match="while measuring the memory layout"):
        watch.enter("warming up")
