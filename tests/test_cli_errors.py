"""Whatever goes wrong, the command ends with one line and a code that says what kind of end it was:
the top-level handler and --debug, Ctrl-C and SIGTERM, directories that cannot be used, empty options."""
from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest


from conftest import TINY_SHAPES, installed_registry

BUGGY = '''
from aeframe import Param, Technique, hookimpl


class Buggy(Technique):
    name, title, base = "buggy", "Buggy", "baseline"
    description = "its parameter check has a bug beyond the default"
    params = (Param("n", int, 1, "how many"),)

    def check_params(self, params):
        if params["n"] > 1:
            return params["missing"]

    def wrap_loss(self, loss, ctx):
        return lambda out, target: ctx.params["n"] * loss(out, target)


@hookimpl
def register_techniques(register):
    register(Buggy())
'''


@pytest.fixture
def buggy(tmp_path, monkeypatch):
    """The built-ins and a plugin whose check_params raises KeyError, installed as pip would leave it."""
    yield from installed_registry(tmp_path, monkeypatch, "aeframe-buggy", "buggy_technique", BUGGY)


def test_an_unexpected_error_is_one_line_naming_it_and_where_and_debug_shows_the_traceback(tmp_path, cli, buggy):
    args = ["bench", "-t", "buggy[n=2]", "-d", TINY_SHAPES, "--store", "r.sqlite"]
    result = cli(*args, cwd=tmp_path, registry=buggy)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("Error: unexpected KeyError: 'missing' (site/buggy_technique.py:")
    assert "in aeframe bench); rerun with --debug (or AEFRAME_DEBUG=1) for the traceback" in lines[0]

    for debug_args, env in ((["--debug"], None), ([], {"AEFRAME_DEBUG": "1"})):
        shown = cli(*debug_args, *args, cwd=tmp_path, env=env, registry=buggy)
        assert shown.returncode == 1
        assert "Traceback" in shown.stderr and "KeyError: 'missing'" in shown.stderr


def _signals_as_at_a_terminal() -> None:
    """The stopping signals as a terminal delivers them. A test run started in the background by a shell
    without job control inherits SIGINT ignored, and one started under nohup inherits SIGHUP ignored; aeframe
    rightly leaves an ignored signal ignored, so the bench would run to its end."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
        signal.signal(sig, signal.SIG_DFL)


def _done(store: Path) -> int:
    try:
        with sqlite3.connect(store) as db:
            return db.execute("select count(*) from cells where status = 'done'").fetchone()[0]
    except sqlite3.Error:
        return 0


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143), (signal.SIGHUP, 129),
                                       (signal.SIGQUIT, 131)])
def test_a_stopped_bench_exits_128_plus_the_signal_says_what_is_saved_and_empties_its_lock(tmp_path, sig, code):
    exe = Path(sys.executable).with_name("aeframe")
    store = tmp_path / "r.sqlite"
    # Six 2-second cells: the signal lands mid-run even when a loaded machine delays this test's polling.
    args = [str(exe), "bench", "-t", "baseline", "-d", "shapes[train=256,test=64]", "--seeds", "6",
            "--epochs", "1000", "--time-budget", "2s", "--precision", "fp32", "--no-channels-last",
            "--store", str(store)]
    proc = subprocess.Popen(args, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_signals_as_at_a_terminal)
    deadline = time.monotonic() + 300
    while _done(store) < 1 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(0.5)  # into the second cell's training
    proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == code, stderr
    finished = _done(store)
    assert 1 <= finished < 6
    # SIGHUP (a closed terminal) and SIGQUIT used to end the run on the spot, silently.
    assert stderr.splitlines()[-1].startswith(f"aeframe: stopped by {signal.Signals(sig).name}")
    assert stderr.splitlines()[-1].endswith(f": {finished} of 6 cells done and saved in {store}; run the same "
                                            f"command again to train the other {6 - finished}")
    assert "Traceback" not in stderr and "Aborted" not in stderr
    assert (tmp_path / "r.sqlite.lock").read_text() == ""  # no line naming a holder that is gone


def test_a_cache_directory_under_a_file_stops_the_run_before_any_cell(tmp_path, cli):
    (tmp_path / "afile").write_text("not a directory")
    result = cli("bench", "-t", "baseline", "-d", TINY_SHAPES, "--epochs", "1", "--store", "r.sqlite", cwd=tmp_path,
                 env={"AEFRAME_CACHE": str(tmp_path / "afile" / "cache")})
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"Error: AEFRAME_CACHE {tmp_path / 'afile' / 'cache'} cannot be created: {tmp_path / 'afile'} is a file, "
        "not a directory; point AEFRAME_CACHE at a writable directory"
    )
    assert not (tmp_path / "r.sqlite").exists()


@pytest.mark.parametrize("how", ["option", "variable"])
def test_a_data_directory_under_a_file_is_named_by_how_it_was_set(tmp_path, cli, how):
    (tmp_path / "afile").write_text("not a directory")
    data = tmp_path / "afile" / "data"
    given = (["--data-dir", str(data)], None) if how == "option" else ([], {"AEFRAME_DATA": str(data)})
    name = "--data-dir" if how == "option" else "AEFRAME_DATA"
    for command in (["bench", "-t", "baseline", "-d", TINY_SHAPES, "--store", "r.sqlite"], ["list", "datasets"]):
        result = cli(*command, *given[0], cwd=tmp_path, env=given[1])
        assert result.returncode == 2, result.stderr
        assert result.stderr.strip() == (f"Error: {name} {data} cannot be used as the data directory: "
                                         f"{tmp_path / 'afile'} is a file, not a directory; point {name} at a directory")
    assert not (tmp_path / "r.sqlite").exists()


def test_a_cache_the_classifier_cannot_be_kept_in_is_a_warning_not_a_failed_cell(tmp_path, cli, monkeypatch):
    # A full disk, or a file in the way, failed every cell (and trained the classifier again for each); a cell
    # that meets a full disk itself is the environment's failure (tests/test_caches.py).
    import aeframe_builtins.metrics.reference_classifier as rc

    # How well the classifier scores is not the point: a few steps.
    monkeypatch.setattr(rc, "training_steps", lambda images: (min(256, images), 3))
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "classifier").write_text("in the way of the reference classifier's cache")
    # A fixed precision and layout: this cache is new, and what auto would measure is not the point.
    result = cli("bench", "-t", "baseline", "-d", TINY_SHAPES, "--epochs", "1", "--precision", "fp32",
                 "--no-channels-last", "--store", "r.sqlite", cwd=tmp_path, env={"AEFRAME_CACHE": str(cache)})
    assert result.returncode == 0, result.stderr
    [warning] = [line for line in result.stderr.splitlines() if line.startswith("warning: cannot keep")]
    assert warning.startswith(f"warning: cannot keep the reference classifier in the cache: {cache / 'classifier'}: ")
    assert warning.endswith("this run uses it from memory and the next trains it again; free space there or point "
                            "AEFRAME_CACHE at another directory")
    with sqlite3.connect(tmp_path / "r.sqlite") as db:
        assert db.execute("select status from cells").fetchall() == [("done",)]


@pytest.mark.parametrize("command", [
    ["report", "--docs", ""],
    ["report", "--output", ""],
    ["report", "--images", " "],
    ["report", "--store", ""],
    # cifar10 is not in an empty folder: before empty values were refused, these ran nothing either.
    ["bench", "-t", "baseline", "-d", "cifar10", "--store", ""],
    ["bench", "-t", "baseline", "-d", "cifar10", "--data-dir", ""],
    ["bench", "-t", "baseline", "-d", "cifar10", "--output", ""],
    ["bench", "-t", "baseline", "-d", "cifar10", "--device", ""],
    ["list", "datasets", "--data-dir", ""],
    ["validate", "no-such-name", "--data-dir", ""],
])
def test_an_empty_option_is_a_usage_error_naming_it(tmp_path, cli, command):
    result = cli(*command, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    option = next(a for a in command if a.startswith("--"))
    assert result.stderr.strip().splitlines()[-1].startswith(f"Error: Invalid value for '{option}': is empty")
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("option, value, message", [
    ("--seeds", "9223372036854775807", "is not in the range 1<=x<=1000"),
    ("--epochs", "9223372036854775807", "is not in the range 1<=x<=1000000"),
    ("--time-budget", "9" * 400, "is too long to be a time budget"),
])
def test_absurdly_large_values_are_usage_errors(tmp_path, cli, option, value, message):
    result = cli("bench", "-t", "baseline", "-d", TINY_SHAPES, option, value, "--store", "r.sqlite", cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr


def test_a_docs_page_named_without_a_suffix_gets_its_own_pictures_folder(tmp_path, cli):
    made = cli("bench", "-t", "baseline", "-d", "cifar10", "--data-dir", str(tmp_path / "none"), "--store", "r.sqlite",
               cwd=tmp_path)
    assert made.returncode == 1  # cifar10 is not here: a store with one skipped record, made without training
    result = cli("report", "--store", "r.sqlite", "--docs", "leaderboard", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "leaderboard").is_file() and (tmp_path / "leaderboard-images").is_dir()
