"""Durations and budgets read and written one way everywhere: the report, the progress lines, the CLI."""
import pytest

from aeframe.cells.durations import describe_budget, format_duration, parse_duration


@pytest.mark.parametrize("text, seconds", [("45s", 45), ("10m", 600), ("1h", 3600), ("1h30m", 5400), ("90", 90), ("2.5m", 150)])
def test_parse_duration(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "-5s", "0s", "ten minutes", "5x", "5s5"])
def test_bad_durations_are_refused(text):
    with pytest.raises(ValueError):
        parse_duration(text)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(45, "45s"), (1483.2, "24m 43s"), (3723, "1h 02m 03s"), (36000, "10h 00m 00s"), (303, "5m 03s"),
     (4.24, "4.2s"), (0, "0.0s"), (9.96, "10s"), (59.6, "1m 00s")],
)
def test_format_duration(seconds, text):
    assert format_duration(seconds) == text


def test_format_duration_rejects_non_durations():
    with pytest.raises(ValueError):
        format_duration(-1)
    with pytest.raises(ValueError):
        format_duration(float("nan"))


@pytest.mark.parametrize(
    ("epochs", "seconds", "plain", "per_cell"),
    [
        (1, None, "1 epoch", "1 epoch per cell"),
        (15, None, "15 epochs", "15 epochs per cell"),
        (None, 60.0, "60 s", "60 s of training per cell"),
        (15, 60, "15 epochs or 60 s", "15 epochs or 60 s of training per cell, whichever ends first"),
        (None, None, "none", "none"),
    ],
)
def test_a_budget_reads_the_same_in_the_progress_lines_and_in_the_tables(epochs, seconds, plain, per_cell):
    assert describe_budget(epochs, seconds) == plain
    assert describe_budget(epochs, seconds, per_cell=True) == per_cell
