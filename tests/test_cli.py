"""The ``aeframe`` command: outputs, files, exit codes, messages.

Most runs are in-process (the ``cli`` fixture); a real subprocess where the process matters: the
first bench (console script, fresh interpreter), a run killed with SIGKILL, a broken plugin found
at start-up.
"""
from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from aeframe.registry.plugins import build_registry

from conftest import TINY_SHAPES, run_cli


def test_bench_prints_only_the_table_on_stdout_and_stores_the_cell(tmp_path, cli):
    # The layout forced: a measured one may differ between runs on a busy machine, and with it the last bits.
    grid = ("-t", "baseline", "-d", TINY_SHAPES, "--epochs", "1", "--no-channels-last", "--store", "r.sqlite")
    result = run_cli("bench", *grid, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "## Shapes"
    assert [c.strip() for c in lines[2].split("|")[1:-1]] == [
        "Method", "MAE", "MSE", "PSNR (dB)", "SSIM", "Classifier Accuracy", "Training Time", "Epochs", "Images/s",
        "Params",
    ]
    reference = [c.strip() for c in lines[4].split("|")[1:-1]]
    assert reference[0] == "Original Image" and 0 <= float(reference[5]) <= 1  # 256 images: a weak classifier
    row = [c.strip() for c in lines[5].split("|")[1:-1]]
    # ‡ follows the epochs when this machine was busy while the cell trained (docs/results.md).
    assert row[0] == "Baseline" and row[7].rstrip("‡") == "1.00" and row[9] == "3,080,629"
    assert "Classifier Accuracy: top-1 against the true labels of a CNN (3 conv3x3-BN-ReLU blocks" in result.stdout
    assert lines[-1].startswith("Budget: 1 epoch per cell")
    assert f"[1/1] Baseline on {TINY_SHAPES} (seed 0)" in result.stderr
    with sqlite3.connect(tmp_path / "r.sqlite") as db:
        assert db.execute("select status, label from cells").fetchall() == [("done", "Baseline")]

    again = cli("bench", *grid, cwd=tmp_path)
    assert again.returncode == 0
    assert "1 of 1 cells already done" in again.stderr
    assert again.stdout == result.stdout

    forced = cli("bench", *grid, "--rerun", cwd=tmp_path)
    assert forced.returncode == 0
    assert "already done" not in forced.stderr and "[1/1] Baseline" in forced.stderr
    # Same seed, same numbers (MAE and MSE); only the timing columns may differ.
    assert forced.stdout.splitlines()[5].split("|")[2:4] == result.stdout.splitlines()[5].split("|")[2:4]
    report = cli("report", "--store", "r.sqlite", "--format", "json", cwd=tmp_path)
    data = json.loads(report.stdout)
    row = data["datasets"][0]["tables"][0]["rows"][0]
    assert row["label"] == "Baseline" and row["metrics"]["mse"]["mean"] > 0


@pytest.mark.parametrize(
    "args, message",
    [
        (["-t", "baselin"], "unknown technique 'baselin'; did you mean baseline?"),
        (["-t", "baseline[latnt=3]"], "technique baseline: unknown parameter 'latnt'; did you mean latent?"),
        (["-t", "baseline[latent=big]"], "bad value 'big' for parameter 'latent' (expected int"),
        (["-t", "baseline+baseline"], "lists the same technique twice"),
        (["-t", "baseline[latent"], "unbalanced brackets"),
        (["-d", "shape"], "unknown dataset 'shape'; did you mean shapes?"),
        (["-t", "baseline", "--time-budget", "-5s"], "cannot read '-5s' as a duration"),
        (["-t", "baseline", "--epochs", "0"], "0 is not in the range 1<=x<=1000000"),
        (["-t", "baseline", "--device", "tpu"], "unknown device 'tpu'; use auto, cpu, cuda or cuda:N"),
        (["-t", "baseline", "--device", "cuda:0"], "this machine has no CUDA GPU"),
        ([], "nothing to run: give --all, or -t TECHNIQUE and/or -d DATASET"),
    ],
)
def test_usage_errors_exit_2_with_one_clear_line(tmp_path, cli, args, message):
    if "cuda" in " ".join(args):
        import torch

        if torch.cuda.is_available():
            pytest.skip("this machine has a GPU")
    result = cli("bench", *args, "--store", "r.sqlite", cwd=tmp_path)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
    assert not (tmp_path / "r.sqlite").exists()


def test_named_dataset_that_cannot_be_had_is_skipped_with_the_fix_and_exits_1(tmp_path, cli):
    result = cli("bench", "-t", "baseline", "-d", "cifar10", "--store", "r.sqlite",
                     "--data-dir", str(tmp_path / "data"), cwd=tmp_path)
    assert result.returncode == 1
    assert f"skipping cifar10: cifar10 is not in {tmp_path / 'data' / 'cifar-10-batches-py'}" in result.stderr
    assert "data_batch_1" in result.stderr
    assert "- cifar10: skipped" in result.stdout


def test_list_techniques_and_datasets(tmp_path, cli):
    techniques = json.loads(cli("list", "techniques", "--json", cwd=tmp_path).stdout)
    assert [t["name"] for t in techniques] == [
        "baseline", "cosine", "denoising", "ema", "feature-loss", "grad-clip", "l1-loss", "masked", "pixel-shuffle",
        "pretrained-resnet", "progressive-resizing", "resnet", "vae", "vq-vae"
    ]
    acting = {t["name"]: (t["provides"], t["acts_on"]) for t in techniques if t["name"] in ("ema", "grad-clip", "cosine")}
    assert acting == {
        "cosine": (["lr_curve"], []), "grad-clip": ([], ["on_after_backward"]),
        "ema": ([], ["on_train_start", "on_phase_start", "on_after_step", "on_epoch_end", "around_evaluation"])}
    sizes = next(p for t in techniques if t["name"] == "progressive-resizing" for p in t["params"])
    assert sizes["name"] == "sizes" and sizes["default"] == "16,32" and sizes["type"] == "ints"
    baseline = next(t for t in techniques if t["name"] == "baseline")
    assert baseline["title"] == "Baseline" and baseline["provides"] == ["model", "loss", "schedule"]
    assert baseline["params"] == [
        {"name": "latent", "type": "int", "default": "1000", "help": "size of the bottleneck vector", "choices": None}
    ]
    result = cli("list", "datasets", "--json", cwd=tmp_path, env={"AEFRAME_DATA": str(tmp_path / "empty")})
    datasets = {d["name"]: d for d in json.loads(result.stdout)}
    assert datasets["shapes"]["available"] and datasets["shapes"]["shape"] == [3, 32, 32]
    assert not datasets["mnist"]["available"]
    assert str(tmp_path / "empty" / "MNIST" / "raw") in datasets["mnist"]["unavailable_reason"]
    text = cli("list", "datasets", cwd=tmp_path, env={"AEFRAME_DATA": str(tmp_path / "empty")}).stdout
    assert "shapes: Shapes:" in text and "[view=study] str:" in text


def test_plugins_lists_each_entry_point(tmp_path, cli):
    rows = json.loads(cli("plugins", "--json", cwd=tmp_path).stdout)
    baseline = next(r for r in rows if r["name"] == "baseline")
    assert baseline["distribution"] == "aeframe" and baseline["builtin"]
    assert baseline["hooks"] == ["register_techniques"] and baseline["registered"] == {"technique": ["baseline"]}
    assert baseline["error"] is None


def test_report_without_a_store_says_so(tmp_path, cli):
    result = cli("report", "--store", "nothing.sqlite", cwd=tmp_path)
    assert result.returncode == 1
    assert "no results store at" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "nothing.sqlite").exists()


def _done_cells(store: Path) -> int:
    if not store.exists():
        return 0
    try:
        with sqlite3.connect(store) as db:
            return db.execute("select count(*) from cells where status = 'done'").fetchone()[0]
    except sqlite3.Error:
        return 0


def test_a_killed_run_keeps_its_finished_cells_and_resumes(tmp_path, cli):
    exe = Path(sys.executable).with_name("aeframe")
    args = [str(exe), "bench", "-t", "baseline", "-d", TINY_SHAPES, "--seeds", "6", "--epochs", "1", "--store", "r.sqlite"]
    proc = subprocess.Popen(args, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    store = tmp_path / "r.sqlite"
    deadline = time.monotonic() + 120
    while _done_cells(store) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    finished = _done_cells(store)
    assert 2 <= finished < 6
    resumed = cli(*args[1:], cwd=tmp_path)
    assert resumed.returncode == 0
    assert f"{finished} of 6 cells already done" in resumed.stderr
    assert _done_cells(store) == 6
    assert "± " in resumed.stdout  # six seeds of one row: mean ± std


def test_plugins_command_lists_a_broken_third_party_plugin_and_goes_on(tmp_path, cli, monkeypatch):
    info = tmp_path / "site" / "aeframe_broken-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: aeframe-broken\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[aeframe]\nbroken = fake_broken_mod\n")
    (tmp_path / "site" / "fake_broken_mod.py").write_text("raise RuntimeError('half-installed')\n")
    env = {"PYTHONPATH": str(tmp_path / "site"), "AEFRAME_DISABLE_PLUGIN_AUTOLOAD": ""}
    result = run_cli("plugins", "--json", cwd=tmp_path, env=env)
    assert result.returncode == 0
    broken = next(r for r in json.loads(result.stdout) if r["name"] == "broken")
    assert broken["distribution"] == "aeframe-broken" and broken["error"] == "RuntimeError: half-installed"
    assert "aeframe: warning: plugin 'broken' (aeframe-broken 0.1) failed to load: RuntimeError: half-installed; skipped" \
        in result.stderr
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    registry = build_registry(autoload=True)
    listing = cli("list", "techniques", cwd=tmp_path, registry=registry)
    assert listing.returncode == 0 and listing.stdout.startswith("baseline: Baseline:")
    assert "failed to load: RuntimeError: half-installed; skipped" in listing.stderr


def test_a_named_technique_that_cannot_run_is_skipped_with_the_reason_and_exits_1(tmp_path, cli):
    result = cli("bench", "-t", "pretrained-resnet[weights=/nowhere/resnet34.pth]", "-d", TINY_SHAPES,
                     "--epochs", "1", "--store", "r.sqlite", cwd=tmp_path)
    assert result.returncode == 1
    assert "no weights file at /nowhere/resnet34.pth" in result.stderr
    assert "- Pretraining [weights=/nowhere/resnet34.pth]: skipped (pretrained-resnet: no weights file" in result.stdout
    assert "Traceback" not in result.stderr
