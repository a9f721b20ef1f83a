"""A whole ``aeframe bench`` cell, as a user runs it, against the parts its record accounts for.

Each round runs the real command in a subprocess (Baseline, the benchmarks' dataset, one epoch)
with a fresh store and a fresh cache, so the reference classifier of the Classifier Accuracy metric
is trained inside the cell and its recorded training time is this run's. What the record does not
account for (process start and imports, planning, the store, generating the dataset, building the
model, saving the classifier, rendering the report) is the overhead.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from itertools import count
from pathlib import Path

from aeframe.store.sqlite_store import Store

from speed_config import DATASET, ROUNDS
from speed_summary import CellOverhead

TECHNIQUE = "baseline"


def _prepare_seconds(stats: dict) -> float:
    """Time metrics spent preparing, as far as the record says (the reference classifier's training)."""
    return sum(d.get("train_seconds", 0.0) for d in stats.get("metric_details", {}).values())


def _interpreter_and_imports() -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import torch, torchvision, aeframe.cli"], check=True)
    return time.perf_counter() - started


def _precision_probe(device) -> float:
    """What ``--precision auto`` costs with an empty cache (each round's fresh cache measures it again)."""
    import torch

    from aeframe.speed.precision_probe import candidates, measure

    device = torch.device(device)
    started = time.perf_counter()
    measure(device, candidates(device))
    return time.perf_counter() - started


def test_whole_bench_cell(benchmark, tmp_path, device, speed_report):
    exe = Path(sys.executable).with_name("aeframe")
    numbers = count()
    walls: list[float] = []
    roots: list[Path] = []

    def fresh_root():
        root = tmp_path / f"round-{next(numbers)}"
        (root / "cache").mkdir(parents=True)
        return (root,), {}

    def one_cell(root: Path) -> None:
        env = {**os.environ, "AEFRAME_CACHE": str(root / "cache"), "AEFRAME_DATA": str(root / "data")}
        command = [str(exe), "bench", "-t", TECHNIQUE, "-d", DATASET, "--epochs", "1", "--device", str(device),
                   "--store", str(root / "store.sqlite"), "--output", str(root / "results.md")]
        started = time.perf_counter()
        done = subprocess.run(command, env=env, capture_output=True, text=True)
        walls.append(time.perf_counter() - started)
        roots.append(root)
        assert done.returncode == 0, done.stderr[-2000:]

    # No warm-up: a user's cell starts cold. Each round is a new process with an empty cache.
    benchmark.pedantic(one_cell, setup=fresh_root, rounds=ROUNDS, warmup_rounds=0)

    stats = []
    for root in roots:
        with Store(root / "store.sqlite", write=False) as store:
            [record] = store.records()
        assert record.status == "done" and record.stats["epochs"] == 1
        stats.append(record.stats)
    cell = CellOverhead(
        wall=walls,
        train=[s["train_seconds"] for s in stats],
        evaluation=[s["eval_seconds"] for s in stats],
        prepare=[_prepare_seconds(s) for s in stats],
        cell_prepare=[s.get("prepare_seconds", 0.0) for s in stats],
        start_and_imports=_interpreter_and_imports(),
        precision_probe=_precision_probe(device),
    )
    assert all(overhead > 0 for overhead in cell.overheads())
    speed_report.cell = cell
    speed_report.cell_heading = (
        f"Whole `aeframe bench -t {TECHNIQUE} -d {DATASET} --epochs 1` cell in a subprocess, fresh store and "
        f"cache, median of {len(walls)} round(s):"
    )
    benchmark.extra_info.update({"technique": TECHNIQUE, "dataset": DATASET, "device": str(device),
                                 **cell.extra_info()})
