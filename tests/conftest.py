"""Shared fixtures: a registry of the built-in plugins only, tiny datasets and budgets."""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import traceback
from dataclasses import dataclass
from pathlib import Path

import pytest

# Tests see the built-ins only, whatever else is installed; discovery tests pass entry points explicitly.
os.environ["AEFRAME_DISABLE_PLUGIN_AUTOLOAD"] = "1"
# One cache for the whole test run, out of the user's: what plugins derive (reference classifiers,
# pretrained encoders) and the measured speed choices are keyed by the data's fingerprint and their
# recipe, so every test that trains on the same data reuses them, as the runs of one user do. Set once
# by the process that starts the run and inherited by pytest-xdist's workers and by subprocesses.
os.environ["AEFRAME_CACHE"] = os.environ.get("AEFRAME_TEST_RUN_CACHE") or tempfile.mkdtemp(prefix="aeframe-test-cache-")
os.environ["AEFRAME_TEST_RUN_CACHE"] = os.environ["AEFRAME_CACHE"]

# Under pytest-xdist (`-n 2`), one torch thread per worker (and per process it starts): two workers with
# two threads each on two cores would wait for each other's threads, and every cell would measure, and
# record, a busy machine. Set before anything imports torch, which reads it once.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("OMP_NUM_THREADS", "1")

# The tests' usual dataset, and aeframe validate's: one reference classifier serves all their cells.
TINY_SHAPES = "shapes[train=256,test=64]"


@pytest.fixture(scope="session")
def registry():
    from aeframe.registry.plugins import build_registry

    return build_registry(autoload=False)


def run_cli(*args: str, cwd: Path, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """The real ``aeframe`` console command in a subprocess."""
    full_env = {**os.environ, **(env or {})}
    exe = Path(sys.executable).with_name("aeframe")
    return subprocess.run([str(exe), *args], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout)


def installed_plugin_env(tmp_path: Path, dist: str, module: str, source: str) -> dict[str, str]:
    """Install ``source`` as module ``module`` of distribution ``dist`` (a dist-info with an ``aeframe``
    entry point, as pip leaves it) under ``tmp_path``; the env that lets a subprocess find it."""
    site = tmp_path / "site"
    info = site / f"{dist.replace('-', '_')}-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    plugin = dist.removeprefix("aeframe-")
    (info / "entry_points.txt").write_text(f"[aeframe]\n{plugin} = {module}\n")
    (site / f"{module}.py").write_text(source)
    return {"PYTHONPATH": str(site), "AEFRAME_DISABLE_PLUGIN_AUTOLOAD": ""}


def registry_with(module: str, loads_cleanly: bool = True):
    """The built-ins and the test module ``module`` (a plugin's hooks), found through an entry point of
    that name, as an installed plugin is; with ``loads_cleanly``, no plugin may have failed."""
    from importlib.metadata import EntryPoint, entry_points

    from aeframe.registry.plugins import build_registry

    plugin = EntryPoint(name=module, value=module, group="aeframe")
    registry = build_registry([*entry_points(group="aeframe"), plugin], autoload=True)
    if loads_cleanly:
        assert not [p.error for p in registry.plugins if p.error]
    return registry


def installed_registry(tmp_path: Path, monkeypatch, dist: str, module: str, source: str):
    """For a fixture: the built-ins and ``source``, installed as pip would leave a plugin (see
    :func:`installed_plugin_env`) and found through its entry point in this process."""
    from aeframe.registry.plugins import build_registry

    env = installed_plugin_env(tmp_path, dist, module, source)
    monkeypatch.syspath_prepend(env["PYTHONPATH"])
    yield build_registry(autoload=True)
    sys.modules.pop(module, None)


def cell_data(text: str, registry, device=None):
    """The dataset ``text`` (as ``-d`` takes it) loaded and on ``device`` (the CPU by default), as cells get it."""
    import torch

    from aeframe.data.splits import on_device
    from aeframe.planning.plan import resolve_dataset

    choice = resolve_dataset(text, registry)
    return on_device(choice.plugin.load(Path("."), choice.params), device or torch.device("cpu"))


_metric_sets: dict[int, object] = {}


def metric_set(registry):
    """The registry's metrics as a run holds them, one set per session: each dataset's metrics are
    prepared once (a reference classifier is loaded once), as in one ``aeframe bench``."""
    from aeframe.training.metric_set import MetricSet

    key = id(registry.metrics)
    if key not in _metric_sets:
        _metric_sets[key] = (registry.metrics, MetricSet(registry.metrics.values()))
    return _metric_sets[key][1]


@pytest.fixture(scope="session")
def workspace(registry, tmp_path_factory):
    """A data directory with nothing in it and the run's cache, loading datasets from ``registry``."""
    from aeframe.data.loading import make_workspace

    root = tmp_path_factory.mktemp("workspace")
    return make_workspace(registry, root / "data", Path(os.environ["AEFRAME_CACHE"]), lambda _: None)


@dataclass
class Ran:
    """What a command run printed and returned, alike for in-process and subprocess runs."""

    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def cli(monkeypatch):
    """Run ``aeframe ARGS`` in this process (click's runner), as ``run_cli`` runs it in a subprocess.

    ``cli(*args, cwd=path, env={...}, registry=None)``: the command runs in ``cwd`` with ``env`` added
    to the environment; ``registry`` replaces the process-wide plugin registry for this run (for
    third-party plugins loaded from a fake installation). An exception that escapes the command is
    shown in ``stderr`` as a traceback, exactly what a user would have seen.
    """
    from click.testing import CliRunner

    import aeframe.registry.plugins
    from aeframe.cli import cli as command

    def run(*args: str, cwd: Path, env: dict | None = None, registry=None) -> Ran:
        monkeypatch.chdir(cwd)
        if registry is not None:
            monkeypatch.setattr(aeframe.registry.plugins, "_registry", registry)
        result = CliRunner().invoke(command, list(args), env=env, catch_exceptions=True)
        stderr = result.stderr
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            stderr += "".join(traceback.format_exception(result.exception))
        return Ran(result.exit_code, result.stdout, stderr)

    return run


# The files that take longest, longest first: collected first, so that with -n the workers start on them
# and the run does not end with one worker alone on a long file (the order of the tests in a file is kept).
LONGEST_FILES = ("test_gpu_check.py", "test_ray_faults.py", "test_ray_executor.py", "test_validate.py",
                 "test_speed_choice.py", "test_feature_loss.py", "test_builtin_combinations.py", "test_resnet.py",
                 "test_speed.py", "test_misbehaving_plugins.py", "test_cli_errors.py", "test_executors.py", "test_lr_find.py",
                 "test_data_identity.py", "test_cli.py", "test_store_safety.py", "test_training.py", "test_pool.py")


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(LONGEST_FILES)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


@pytest.hookimpl(optionalhook=True)  # a hook of pytest-xdist's: without it, nothing calls it
def pytest_xdist_make_scheduler(config, log):
    """With -n (pytest-xdist), each test file goes to one worker whole, so that a module's fixtures (a Ray
    cluster, a trained classifier, the GPU check's smoke run) are made once, not once per worker."""
    from xdist.scheduler import LoadFileScheduling

    # In the order collected (longest files first, above), not xdist's default of most tests first.
    config.option.loadscopereorder = False
    return LoadFileScheduling(config, log)


_head_start: subprocess.Popen | None = None


@pytest.hookimpl(tryfirst=True)
def pytest_sessionstart(session) -> None:
    """Under -n, the controller (which runs no tests) trains the run's first cell of the tests' dataset in
    the background while the workers start: its reference classifier (and speed choices, at one thread
    as the workers measure them) land in the run's cache. Every worker's first tests need them; without this, one worker trains them on one thread
    while the other waits for the lock."""
    global _head_start
    if os.environ.get("PYTEST_XDIST_WORKER") or not getattr(session.config.option, "numprocesses", None):
        return
    scratch = tempfile.mkdtemp(prefix="aeframe-test-head-start-")
    _head_start = subprocess.Popen(
        [str(Path(sys.executable).with_name("aeframe")), "bench", "-t", "baseline", "-d", TINY_SHAPES, "--epochs",
         "1", "--store", "r.sqlite"], cwd=scratch, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        # One thread, as the workers have: the classifier's weights are then those a worker would train.
        env={**os.environ, "OMP_NUM_THREADS": "1"})


def pytest_sessionfinish(session) -> None:
    if _head_start is not None and _head_start.poll() is None:
        _head_start.kill()


# Tests marked `cuda` run the GPU paths. Without a GPU they are skipped; the GPU check
# (benchmarks/gpu_check.py) sets AEFRAME_REQUIRE_CUDA=1, under which any skip of such a test,
# for want of a GPU or of something it needs there (triton), is a failure: that check must
# never pass by skipping.
REQUIRE_CUDA_ENV = "AEFRAME_REQUIRE_CUDA"
NO_CUDA = "needs a CUDA GPU: torch.cuda.is_available() is False here"


def _cuda_required() -> bool:
    return os.environ.get(REQUIRE_CUDA_ENV, "").strip() == "1"


def pytest_runtest_setup(item) -> None:
    if item.get_closest_marker("cuda") is None:
        return
    import torch

    if not torch.cuda.is_available():
        pytest.skip(NO_CUDA)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.skipped and item.get_closest_marker("cuda") is not None and _cuda_required():
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        reason = reason.removeprefix("Skipped: ")
        report.outcome = "failed"
        report.longrepr = f"{REQUIRE_CUDA_ENV}=1, so this CUDA test must run, but it was skipped: {reason}"


