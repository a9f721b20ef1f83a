"""Faults under the ray executor, through the real ``aeframe`` command, each run starting its own local Ray
cluster: a worker process killed mid-cell, a technique that raises, the driver interrupted, Ray missing, a
cluster that `ray start` runs on the machine already."""
from __future__ import annotations

import os
import signal
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from conftest import TINY_SHAPES, installed_plugin_env, run_cli

FAULTS = '''
import os
import time
from pathlib import Path

from aeframe import MeanMetric, Technique, hookimpl

WITNESS = Path(os.environ["AEFRAME_TEST_WITNESS"])


class Sleepy(Technique):
    """The Baseline, leaving the pid of each process that builds it; the first one waits to be killed."""

    name, title, base = "sleepy", "Sleepy", "baseline"
    description = "the Baseline, slow to start the first time"

    def wrap_model(self, model, ctx):
        first = not any(WITNESS.glob("pid-*"))
        (WITNESS / f"pid-{os.getpid()}").touch()
        if first:
            time.sleep(60)  # killed before this ends
        return model


class Explodes(Technique):
    name, title, base = "explodes", "Explodes", "baseline"
    description = "raises while it builds, counting its tries"

    def wrap_model(self, model, ctx):
        with open(WITNESS / "explodes-tries", "a") as f:
            f.write("try\\n")
        raise RuntimeError("boom while building")


class Prepares(MeanMetric):
    """MSE again, leaving a line each time it is prepared."""

    name, title, better = "witness", "Witness", "lower"

    def prepare(self, context):
        with open(WITNESS / "prepared", "a") as f:
            f.write(f"{context.dataset_spec}\\n")
        return None

    def values(self, recon, target, labels):
        return (recon - target).square()


class Dies(Technique):
    name, title, base = "dies", "Dies", "baseline"
    description = "ends its worker process while it builds"

    def wrap_model(self, model, ctx):
        os._exit(9)


@hookimpl
def register_techniques(register):
    register(Sleepy())
    register(Explodes())
    register(Dies())


@hookimpl
def register_metrics(register):
    register(Prepares())
'''

ARGS = ("-d", TINY_SHAPES, "--epochs", "1", "--precision", "fp32", "--no-channels-last", "--device", "cpu",
        "--executor", "ray", "--cpus-per-cell", "2")


def _aeframe(*args: str, cwd: Path, env: dict) -> subprocess.Popen:
    exe = Path(sys.executable).with_name("aeframe")
    # SIGINT as a terminal's Ctrl-C delivers it, also when this test run inherited it ignored (started in
    # the background by a shell without job control), where Python would never raise KeyboardInterrupt.
    return subprocess.Popen([str(exe), *args], cwd=cwd, env={**os.environ, **env}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def _wait_for(condition, seconds: float, what: str, run: subprocess.Popen) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if run.poll() is not None:  # it ended before what we wait for: say why
            raise AssertionError(f"aeframe exited ({run.returncode}) before {what}: {run.communicate()[1][-3000:]}")
        assert time.monotonic() < deadline, f"waited {seconds:.0f} s for {what}"
        time.sleep(0.1)


def _statuses(store: Path) -> list[tuple[str, str, str | None]]:
    with sqlite3.connect(f"file:{store}?mode=ro", uri=True) as db:
        return db.execute("SELECT label, status, error FROM attempts ORDER BY id").fetchall()


def test_a_killed_worker_is_retried_and_a_raising_technique_fails_once(tmp_path):
    witness = tmp_path / "witness"
    witness.mkdir()
    env = {**installed_plugin_env(tmp_path, "aeframe-faults", "fault_techniques", FAULTS),
           "AEFRAME_TEST_WITNESS": str(witness)}
    run = _aeframe("bench", "-t", "sleepy", "-t", "explodes", *ARGS, "--store", "r.sqlite", cwd=tmp_path, env=env)
    try:
        _wait_for(lambda: any(witness.glob("pid-*")), 400, "the first cell to start", run)
        first = next(witness.glob("pid-*")).name.removeprefix("pid-")
        os.kill(int(first), signal.SIGKILL)  # mid-cell: it is asleep in wrap_model
        stdout, stderr = run.communicate(timeout=240)
    finally:
        run.kill()
    assert run.returncode == 1, stderr  # one cell failed: the one that raises

    # The killed cell ran again in another worker process and finished; it is stored once.
    pids = sorted(p.name for p in witness.glob("pid-*"))
    assert len(pids) == 2 and f"pid-{first}" in pids
    rows = _statuses(tmp_path / "r.sqlite")
    assert sorted((label, status) for label, status, _ in rows) == [("Explodes", "failed"), ("Sleepy", "done")]
    # A technique that raises is a failed cell at once: not retried, however many retries are allowed.
    assert (witness / "explodes-tries").read_text() == "try\n"
    error = next(e for label, _, e in rows if label == "Explodes")
    assert error.startswith("RuntimeError: boom while building\nTraceback")
    assert "failed: Explodes on shapes (seed 0): RuntimeError: boom while building; technique 'explodes' from " \
           "plugin 'faults'" in stderr
    assert "| Sleepy " in stdout
    # The metrics were prepared once for the dataset, by one task, not by each cell's worker (nor again
    # for the retried cell).
    assert (witness / "prepared").read_text() == f"{TINY_SHAPES}\n"


def test_a_worker_that_ends_its_process_is_reported_as_dead_naming_the_technique_not_as_memory(tmp_path):
    env = {**installed_plugin_env(tmp_path, "aeframe-faults", "fault_techniques", FAULTS),
           "AEFRAME_TEST_WITNESS": str(tmp_path)}
    result = run_cli("bench", "-t", "dies", *ARGS, "--retries", "0", "--store", "r.sqlite", cwd=tmp_path, env=env)
    assert result.returncode == 1, result.stderr
    [(label, status, error)] = _statuses(tmp_path / "r.sqlite")
    assert (label, status) == ("Dies", "failed")
    assert error.startswith("its worker process died 1 time (--retries 0) in the cell of technique 'dies' from plugin "
                            "'faults' (aeframe-faults 0.1): WorkerCrashedError: The worker died unexpectedly")
    assert "os._exit in a plugin" in error and "memory" not in error
    assert f"failed: Dies on shapes (seed 0): {error}" in result.stderr


def test_an_interrupted_driver_keeps_the_finished_cells_and_a_rerun_resumes(tmp_path):
    # Four cells, one at a time: the signal lands within 0.1 s of the first cell being stored, and the
    # next takes a second or more, so cells are left.
    args = ("bench", "-t", "baseline", "--seeds", "4", *ARGS, "--store", "r.sqlite")
    run = _aeframe(*args, cwd=tmp_path, env={})
    try:
        _wait_for(lambda: (tmp_path / "r.sqlite").exists() and _statuses(tmp_path / "r.sqlite"), 400,
                  "the first cell to be stored", run)
        run.send_signal(signal.SIGINT)
        _, stderr = run.communicate(timeout=60)
    finally:
        run.kill()
    assert run.returncode == 130, stderr
    saved = len(_statuses(tmp_path / "r.sqlite"))
    assert 1 <= saved < 4
    assert f"stopped by SIGINT (Ctrl-C): {saved} of 4 cells done and saved in r.sqlite; run the same command again " \
           f"to train the other {4 - saved}" in stderr
    assert "Traceback" not in stderr

    # Ray's own folder for this run (a short path: Ray's socket paths must fit 107 characters), to find
    # its processes by.
    ray_dir = Path(tempfile.mkdtemp(prefix="aeframe-ray-"))
    try:
        again = _aeframe(*args, cwd=tmp_path, env={"RAY_TMPDIR": str(ray_dir)})
        stdout, stderr = again.communicate(timeout=240)
        assert again.returncode == 0, stderr
        assert f"{saved} of 4 cells already done in r.sqlite" in stderr
        assert f"training {4 - saved} cells on " in stderr
        assert [status for _, status, _ in _statuses(tmp_path / "r.sqlite")] == ["done"] * 4
        # The local cluster it started is stopped with it: no raylet, GCS, monitor or worker is left.
        assert list((ray_dir / "ray").glob("session_2*")), "the run did not use RAY_TMPDIR"
        assert _processes_mentioning(str(ray_dir)) == []
    finally:
        shutil.rmtree(ray_dir, ignore_errors=True)


def _processes_mentioning(text: str) -> list[str]:
    """The command lines of running processes that contain ``text``."""
    return list(_mentioning(text).values())


def _mentioning(text: str) -> dict[int, str]:
    """Pid -> command line of the running processes whose command line contains ``text``."""
    found = {}
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            line = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # it ended while we looked
            continue
        if text in line:
            found[int(cmdline.parent.name)] = line
    return found


def _outside_group(text: str, group: int) -> list[str]:
    """The command lines of the processes mentioning ``text`` that are not in process group ``group``."""
    found = []
    for pid, line in _mentioning(text).items():
        try:
            if os.getpgid(pid) != group:
                found.append(line)
        except ProcessLookupError:
            continue
    return found


def test_asking_for_ray_without_it_installed_says_how_to_install_it(tmp_path, cli, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # as if it were not installed: importing it fails
    result = cli("bench", "-t", "baseline", "-d", TINY_SHAPES, "--executor", "ray", "--store", "r.sqlite",
                 cwd=tmp_path)
    assert result.returncode == 2
    # aeframe is on no index, so the line names the ray extra's own requirement (pyproject.toml).
    wanted = "Ray is not installed; install it with: pip install 'ray>=2.9' (in aeframe's clone: .venv/bin/pip install -e '.[ray]')"
    assert result.stderr.splitlines()[-1] == f"Error: --executor ray: {wanted}"
    listed = cli("list", "executors", cwd=tmp_path)
    assert f"not available here: {wanted}" in listed.stdout


def test_without_an_address_a_cluster_started_with_ray_start_is_left_alone_and_named(tmp_path):
    # Ray's folder for this test (short: Ray's socket paths must fit 107 characters): `ray start` leaves its
    # address there, where a plain ray.init() looks, and its processes are found by it.
    ray_dir = Path(tempfile.mkdtemp(prefix="aeframe-ray-"))
    env = {"RAY_TMPDIR": str(ray_dir)}
    # --block keeps the cluster's processes in this one's process group, to be ended together, and no others:
    # `ray stop` would end every Ray cluster on the machine, other tests' too.
    head = subprocess.Popen([str(Path(sys.executable).with_name("ray")), "start", "--head", "--block",
                             "--port", "0", "--num-cpus", "1", "--num-gpus", "0", "--include-dashboard=false",
                             "--disable-usage-stats"],
                            env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        address_file = ray_dir / "ray" / "ray_current_cluster"
        _wait_for(lambda: address_file.exists() and address_file.read_text().strip(), 120, "`ray start`", head)
        address = address_file.read_text().strip()
        result = run_cli("bench", "-t", "baseline", *ARGS, "--store", "r.sqlite", cwd=tmp_path, env=env)
        # It used to join that cluster with settings only a new one takes, and stop: "cannot connect ... at None".
        assert result.returncode == 0, result.stderr
        assert (f"aeframe: starting a local Ray cluster on this machine, separate from the one `ray start` runs here at "
                f"{address} (give --ray-address {address} to use that one instead)") in result.stderr.splitlines()
        assert [status for _, status, _ in _statuses(tmp_path / "r.sqlite")] == ["done"]
        # The cluster it started is stopped with it; the one `ray start` runs is left running.
        assert head.poll() is None
        assert _outside_group(str(ray_dir), head.pid) == []
    finally:
        os.killpg(head.pid, signal.SIGKILL)
        head.wait()
        shutil.rmtree(ray_dir, ignore_errors=True)
