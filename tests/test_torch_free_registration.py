"""The commands that need no training start without importing torch (or torchvision, numpy, matplotlib).

Building the registry imports every plugin module, and ``aeframe list``, ``aeframe plugins`` and
``aeframe report`` build it: they must not pay the seconds those imports take. The heavy code is
imported when a model, loss, metric or dataset is built. Each command runs in a fresh interpreter,
which reports what was imported by the time it ended.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

HEAVY = ("torch", "torchvision", "numpy", "matplotlib")

# Runs `aeframe ARGS...` as the console script does, then prints the heavy modules that got imported.
_RUN_AND_REPORT = """
import json, sys
from aeframe.cli import cli

try:
    cli.main(sys.argv[2:], prog_name="aeframe")
except SystemExit as exit:
    code = exit.code or 0
else:
    code = 0
sys.stdout.flush()
print("\\n" + json.dumps({"code": code, "heavy": [m for m in json.loads(sys.argv[1]) if m in sys.modules]}))
"""


def _run(*args: str, cwd: Path) -> dict:
    done = subprocess.run([sys.executable, "-c", _RUN_AND_REPORT, json.dumps(HEAVY), *args], cwd=cwd,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("args", [
    ["--help"], ["--version"], ["list", "techniques"], ["list", "datasets", "--json"], ["plugins"],
    ["report", "--store", "store.sqlite"], ["report", "--store", "store.sqlite", "--format", "json"],
    ["report", "--store", "store.sqlite", "--format", "csv"], ["merge", "merged.sqlite", "store.sqlite"],
], ids=" ".join)
def test_commands_that_train_nothing_import_no_torch(tmp_path, args):
    shutil.copy(Path(__file__).parent / "data" / "store-0.1.0.sqlite", tmp_path / "store.sqlite")
    found = _run(*args, cwd=tmp_path)
    assert found == {"code": 0, "heavy": []}
