"""Registering the built-in techniques and datasets imports no torch, torchvision, numpy or matplotlib.

Building the registry imports every plugin module, and ``aeframe list``, ``aeframe plugins`` and
``aeframe report`` build it: they must not pay the seconds those imports take. The heavy code is
imported when a model, loss or dataset is built.
"""
from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("torch", "torchvision", "numpy", "matplotlib")
# Metric plugins are not yet light (another branch is rewriting them); add "metric" once they are.
LIGHT_KINDS = {"technique", "dataset"}

_REGISTER_AND_LIST = """
import json, sys, tempfile
from importlib.metadata import entry_points
from pathlib import Path

from aeframe.plugins import BUILTIN_DIST, GROUP, build_registry

wanted = set(json.loads(sys.argv[1]))
eps = [ep for ep in entry_points(group=GROUP) if ep.name in wanted and ep.dist.metadata["Name"] == BUILTIN_DIST]
registry = build_registry(eps, autoload=False)
empty = Path(tempfile.mkdtemp())
for technique in registry.techniques.values():  # what `aeframe list techniques` shows
    [technique.provides(part) or technique.wraps(part) for part in ("model", "loss", "schedule")]
    technique.check_params({p.name: p.default for p in technique.accepted_params()})
for dataset in registry.datasets.values():  # what `aeframe list datasets` asks
    defaults = {p.name: p.default for p in dataset.params}
    dataset.check_params(defaults)
    dataset.shape(defaults), dataset.missing(empty, defaults), dataset.can_download()
print(json.dumps({"loaded": [ep.name for ep in eps], "warnings": registry.warnings,
                  "techniques": sorted(registry.techniques), "datasets": sorted(registry.datasets),
                  "heavy": [name for name in json.loads(sys.argv[2]) if name in sys.modules]}))
"""


def test_builtin_techniques_and_datasets_register_and_list_without_heavy_imports(registry):
    light = [p.name for p in registry.plugins if p.builtin and p.registered and set(p.registered) <= LIGHT_KINDS]
    done = subprocess.run([sys.executable, "-c", _REGISTER_AND_LIST, json.dumps(light), json.dumps(HEAVY)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    assert sorted(found["loaded"]) == sorted(light) and found["warnings"] == []
    assert found["techniques"] == sorted(registry.techniques)
    assert found["datasets"] == sorted(registry.datasets)
    assert found["heavy"] == []
