"""Shared set-up of the speed benchmarks, and the table printed at the end of the session."""
from __future__ import annotations

import os
import sys

import pytest
import torch

# The benchmarks measure the built-ins only, whatever else is installed (the subprocess inherits it).
os.environ["AEFRAME_DISABLE_PLUGIN_AUTOLOAD"] = "1"

from aeframe.execution.environment import device_info, resolve_device  # noqa: E402
from aeframe.data.loading import default_cache_dir, default_data_dir, make_workspace  # noqa: E402
from aeframe.planning.plan import resolve_dataset  # noqa: E402
from aeframe.registry.plugins import build_registry  # noqa: E402
from aeframe.contract.protocol import STUDY_BATCH_SIZE  # noqa: E402
from aeframe.speed.precision_probe import choose_precision  # noqa: E402
from aeframe.cells.settings import Speed
from aeframe.speed.resolve import resolve_speed  # noqa: E402
from aeframe.speed.cache import SpeedCache  # noqa: E402

from speed_cells import load_bench_data  # noqa: E402
from speed_config import DATASET, DEVICE, PRECISION, ROUNDS, STEPS, WARMUP_ROUNDS, WORKERS  # noqa: E402
from speed_summary import SpeedReport  # noqa: E402

REPORT = pytest.StashKey[SpeedReport]()


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


@pytest.fixture(scope="session")
def registry():
    return build_registry(autoload=False)


@pytest.fixture(scope="session")
def device() -> torch.device:
    return resolve_device(DEVICE)


@pytest.fixture(scope="session")
def speed(device, workspace) -> Speed:
    """The run's settings as `aeframe bench` resolves them by default: ``auto`` is measured (or read from
    the user's cache); the layout is left to each technique (``channels_last`` None)."""
    def measure(device: torch.device) -> str:
        return choose_precision(device, device_info(device)["name"], SpeedCache(workspace.cache_dir), _say).precision

    return resolve_speed(PRECISION, None, False, device, measure)


@pytest.fixture(scope="session")
def workspace(registry):
    # The user's cache (or $AEFRAME_CACHE): an encoder pretrained for pretrained-resnet[weights=shapes]
    # is made once and reused by later sessions; it is never part of a timing.
    return make_workspace(registry, default_data_dir(), default_cache_dir(), _say)


@pytest.fixture(scope="session")
def choice(registry):
    return resolve_dataset(DATASET, registry)


@pytest.fixture(scope="session")
def bench_data(choice, device, workspace):
    return load_bench_data(choice, device, workspace)


@pytest.fixture(scope="session")
def speed_report(request, device, speed) -> SpeedReport:
    report = request.config.stash.setdefault(REPORT, SpeedReport())
    where = f"{device_info(device)['name']} ({device.type}), torch {torch.__version__}"
    rounds = f"median of {ROUNDS} round(s) after {WARMUP_ROUNDS} untimed warm-up round"
    report.heading = (
        f"Training images/s on {DATASET}: {STEPS} steps of {STUDY_BATCH_SIZE} images per loop and round, {where}, "
        f"{speed.describe()} (each technique's layout as measured for it); {rounds}, loops interleaved; "
        f"DataLoader workers: {WORKERS}"
    )
    report.settings_heading = (
        f"aeframe's default settings against the best (precision, layout) measured here, per technique: aeframe's "
        f"train() for {STEPS} steps of {STUDY_BATCH_SIZE} images on {DATASET}, {where}; {rounds}, settings "
        "interleaved; the plain loop's images/s from the training-loop benchmark under the default settings"
    )
    return report


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    report = config.stash.get(REPORT, None)
    if report is None:
        return
    lines = report.lines()
    if lines:
        terminalreporter.section("aeframe speed benchmarks")
        for line in lines:
            terminalreporter.write_line(line)
