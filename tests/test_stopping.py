"""A signal that ends ``aeframe bench`` ends it the same way whenever it comes: a last line saying what is
saved and where, the store's lock released with its file emptied, exit 128 + the signal. (Signals
mid-training: tests/test_cli_errors.py; under Ray: tests/test_ray_faults.py.)"""
from __future__ import annotations

import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from aeframe.errors import StoreError
from aeframe.execution.stopping import Stopped, exit_code, held, stop_like_ctrl_c, stopped_by
from aeframe.store.sqlite_store import Store
from conftest import installed_plugin_env

SLOW_DATA = '''
import os
import time
from pathlib import Path

import torch

from aeframe import DatasetPlugin, ImageData, Split, hookimpl


class Slow(DatasetPlugin):
    """Grey images, after a long wait in load(), which it announces in a file."""

    name, title, description = "slow", "Slow", "takes a minute to load"

    def shape(self, params):
        return (3, 32, 32)

    def missing(self, data_dir, params):
        return None

    def load(self, data_dir, params):
        Path(os.environ["AEFRAME_TEST_WITNESS"]).touch()
        time.sleep(60)  # stopped before this ends
        grey = Split(torch.full((64, 3, 32, 32), 128, dtype=torch.uint8), torch.zeros(64, dtype=torch.long))
        return ImageData(train=grey, test=grey, classes=["grey"])


@hookimpl
def register_datasets(register):
    register(Slow())
'''


def test_a_stop_before_any_cell_trains_says_nothing_new_is_saved_and_empties_the_lock(tmp_path):
    witness = tmp_path / "loading"
    env = {**os.environ, **installed_plugin_env(tmp_path, "aeframe-slow", "slow_data", SLOW_DATA),
           "AEFRAME_TEST_WITNESS": str(witness)}
    exe = Path(sys.executable).with_name("aeframe")
    run = subprocess.Popen([str(exe), "bench", "-t", "baseline", "-d", "slow", "--epochs", "1", "--precision", "fp32",
                            "--no-channels-last", "--store", "r.sqlite"], cwd=tmp_path, env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not witness.exists() and run.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert witness.exists(), run.communicate()[1] if run.poll() is not None else "the dataset never loaded"
        run.send_signal(signal.SIGTERM)  # the store is open and locked; its dataset is loading
        _, stderr = run.communicate(timeout=60)
    finally:
        run.kill()
    assert run.returncode == 143, stderr
    assert stderr.splitlines()[-1] == ("aeframe: stopped by SIGTERM before any cell trained, so nothing new is saved in "
                                       "r.sqlite; run the same command again to start")
    assert (tmp_path / "r.sqlite.lock").read_text() == ""


def test_a_line_left_by_a_killed_run_is_not_named_as_the_holder(tmp_path):
    path = tmp_path / "r.sqlite"
    Store(path).close()
    lock = tmp_path / "r.sqlite.lock"
    lock.write_text(json.dumps({"pid": _pid_of_ended(), "host": socket.gethostname(),
                                "since": "2020-01-01T00:00:00+00:00"}) + "\n")
    # Another run has just taken the lock and not yet written its own line over the dead run's.
    with open(lock, "rb") as held_by_another:
        fcntl.flock(held_by_another, fcntl.LOCK_EX)
        with pytest.raises(StoreError) as refused:
            Store(path)
    assert str(refused.value) == f"{path} is in use by another aeframe run; wait for it or pass --store with another file"


def _pid_of_ended() -> int:
    """The pid of a process that has ended (and been waited for)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_signal_while_a_record_is_saved_waits_for_the_save_to_end():
    steps = []
    with stop_like_ctrl_c(), pytest.raises(Stopped) as stopped:
        with held():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.05)  # Python runs a handler at the next instruction: this one would have raised
            steps.append("saved")
        steps.append("after the save")
    assert steps == ["saved"] and stopped.value.signum == signal.SIGTERM


def test_a_signal_ignored_at_the_start_stays_ignored():
    previous = signal.signal(signal.SIGHUP, signal.SIG_IGN)  # as `nohup aeframe bench` starts it
    quit_before = signal.getsignal(signal.SIGQUIT)
    try:
        with stop_like_ctrl_c():
            assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
            assert callable(signal.getsignal(signal.SIGQUIT))
        assert signal.getsignal(signal.SIGQUIT) is quit_before
    finally:
        signal.signal(signal.SIGHUP, previous)


def test_a_bare_keyboard_interrupt_is_told_by_the_signal_that_caused_it():
    # Ray's blocking calls (ray.wait, ray.get) raise a KeyboardInterrupt of their own in place of what the
    # handler raised: a SIGTERM must still end the run as one, not as Ctrl-C.
    with stop_like_ctrl_c():
        with pytest.raises(Stopped):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(1)
        bare = KeyboardInterrupt()
        assert (stopped_by(bare), exit_code(bare)) == ("stopped by SIGTERM", 143)


def test_a_signal_whose_exception_c_code_swallowed_stops_the_run_at_the_next_cell():
    # Seen under a loaded full test run: a SIGTERM at 2 s landed in a native import that clears
    # exceptions, and the bench trained every cell to the end.
    from aeframe.execution.stopping import stop_if_signalled

    with stop_like_ctrl_c():
        stop_if_signalled()  # nothing came: nothing happens
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.5)  # the handler runs here and raises
        except Stopped:
            pass  # what the C code did with it
        with pytest.raises(Stopped) as stopped:
            stop_if_signalled()
        assert exit_code(stopped.value) == 143
    stop_if_signalled()  # after the run, a later one in this process starts unstopped
