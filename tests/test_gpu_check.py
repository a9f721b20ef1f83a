"""The GPU check (benchmarks/gpu-check.sh), run here as its CPU smoke run in a subprocess: its exit
codes, its JSON and its loud failure. On a machine with a GPU the check itself is what to run.
"""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from dataset_files import fake_mnist, write_mnist

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "gpu-check.sh"
STEPS = ["peak", "graphs", "protocol", "flops", "tests", "benchmarks", "ray"]

pytestmark = pytest.mark.skipif(torch.cuda.is_available(), reason="on a GPU, run benchmarks/gpu-check.sh itself")


def gpu_check(*args: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "PYTHON": sys.executable, **(env or {})}
    full_env.pop("OUT", None)
    full_env.pop("AEFRAME_REQUIRE_CUDA", None)
    full_env.update(env or {})
    return subprocess.run([str(SCRIPT), *args], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=900)


def smoke(tmp_path: Path, *args: str, env: dict | None = None) -> tuple[subprocess.CompletedProcess, dict | None]:
    # The session's cache: the smoke dataset's reference classifier is trained once for all the tests.
    done = gpu_check("--device", "cpu", "--smoke", "--cache-dir", os.environ["AEFRAME_CACHE"], *args, cwd=tmp_path,
                     env=env)
    out = tmp_path / "gpu-check.json"
    return done, json.loads(out.read_text()) if out.is_file() else None


@pytest.fixture(scope="module")
def passed(tmp_path_factory):
    return smoke(tmp_path_factory.mktemp("gpu-check"))


def test_without_a_gpu_it_says_so_in_one_line_and_exits_2(tmp_path):
    done = gpu_check(cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"gpu-check: needs a CUDA GPU, and torch {torch.__version__} sees none (torch.cuda.is_available() is False); "
        "without a GPU, `--device cpu --smoke` checks the check itself"]
    assert not (tmp_path / "gpu-check.json").exists()


def test_help_gives_the_device_machines_command(tmp_path):
    done = gpu_check("--help", cwd=tmp_path)
    assert done.returncode == 0
    assert "/opt/torch/.venv/bin/python3 -m pip install --no-deps --no-build-isolation -e ." in done.stdout
    assert "PYTHON=/opt/torch/.venv/bin/python3 bash benchmarks/gpu-check.sh --data-dir .gpu-data" in done.stdout
    assert "cp /usr/share/datasets/fashion-mnist/*.gz .gpu-data/" in done.stdout
    assert "--only peak --only graphs --only protocol --only flops" in done.stdout
    assert "benchmarks/pack-ray.sh" in done.stdout


def test_smoke_run_passes_every_step_and_writes_one_json(passed):
    done, doc = passed
    assert done.returncode == 0, done.stderr
    assert doc["ok"] is True and doc["failed_steps"] == [] and doc["mode"] == "smoke"
    assert list(doc["steps"]) == STEPS
    assert all(step["status"] == "ok" and step["seconds"] > 0 for step in doc["steps"].values()), doc["steps"]
    assert [doc["steps"][name]["exit_code"] for name in ("tests", "protocol", "benchmarks")] == [0, 0, 0]
    env = doc["environment"]
    assert env["torch"] == torch.__version__ and env["device"] == "cpu" and env["aeframe_commit"]
    # Without a GPU every CUDA test is skipped, and the check says which.
    tests = doc["tests"]
    assert tests["total"] == tests["skipped"] >= 8 and tests["failed"] == tests["errors"] == 0
    assert all("needs a CUDA GPU" in case["message"] for case in tests["not_passed"])
    benchmarks = {bench["name"]: bench for bench in doc["benchmarks"]}
    assert all("baseline" in name for name in benchmarks)
    bench = benchmarks["test_training_loops[baseline]"]
    assert bench["extra_info"]["steps"] == 2
    assert bench["extra_info"]["images_per_second"]["aeframe"] > 0
    assert "step peak ok" not in done.stderr and "all steps passed" in done.stderr.splitlines()[-1]
    # The ray step: two techniques x two seeds through a local Ray cluster, each cell placed and recorded.
    cells = doc["ray_cells"]
    assert sorted((c["label"], c["seed"]) for c in cells) == [("Baseline", 0), ("Baseline", 1),
                                                               ("Pixel Shuffle", 0), ("Pixel Shuffle", 1)]
    assert all(c["status"] == "done" and c["device"] == "cpu" and c["cpus"] == 1 and c["node"] for c in cells)
    assert "--executor" in doc["steps"]["ray"]["command"]
    assert "ray: Baseline seed 0: done on cpu" in done.stdout
    for name in STEPS:
        assert f"] {name}: ok in " in done.stderr


def test_smoke_run_measures_eager_steps_and_says_why_graphs_cannot_run_here(passed):
    done, doc = passed
    graphs = doc["graphs"]
    assert graphs["precision"] == "fp32" and graphs["rounds"] == 1
    assert list(graphs["techniques"]) == ["baseline", "progressive-resizing"]
    for found in graphs["techniques"].values():
        assert found["images_per_second"]["eager"] > 0
        assert found["images_per_second"]["graphed"] is None and found["graphed_vs_eager"] is None
        assert found["unavailable"]["graphed"].startswith("capturing the step failed (")
        assert found["unavailable"]["plain_graphed"] == "CUDA graphs need a CUDA GPU"
    assert "graphs: baseline: images/s eager " in done.stdout


def test_smoke_run_trains_the_protocols_seeds_packed_and_times_the_ones_alone(passed):
    done, doc = passed
    command = doc["steps"]["protocol"]["command"]
    assert command[command.index("--seeds") + 1] == "2" and command[command.index("--cells-per-device") + 1] == "2"
    assert "--stand-ins" in command
    for row in doc["techniques"]:
        assert row["seeds_done"] == 2 and row["seeds_packed"] == 1
        assert "packed" not in row["stats"]  # the row's times are those of the seed that trained alone
    assert doc["protocol_seconds"] > 0 and doc["goal_protocol_seconds"] is None
    assert "the protocol, 2 techniques x 2 seeds x 1 epoch(s), command to table: " in done.stdout


def test_smoke_run_reports_each_technique_with_its_flops_and_share_of_the_peak(passed):
    done, doc = passed
    peak = doc["peak"]
    assert peak["datasheet_bf16_tflops"] is None and peak["measured_bf16_tflops"] > 0
    rows = {row["technique"]: row for row in doc["techniques"]}
    assert list(rows) == ["baseline", "progressive-resizing"]
    for row in rows.values():
        assert row["status"] == "done" and row["device"] == "cpu" and row["epochs"] == 1.0
        assert row["images_per_second"] > 0 and row["train_seconds"] > 0 and row["eval_seconds"] > 0
        assert all(math.isfinite(v) for v in row["metrics"].values()) and 0 < row["metrics"]["mse"] < 0.5
        assert math.isclose(row["achieved_tflops"], row["images_per_second"] * row["flops_per_image"] / 1e12)
        assert math.isclose(row["share_of_measured_bf16_peak"], row["achieved_tflops"] / peak["measured_bf16_tflops"])
        assert row["share_of_datasheet_bf16_peak"] is None
        assert math.isclose(sum(p["fraction"] for p in row["flops_by_phase"]), 1.0)
        assert math.isclose(row["flops_per_image"],
                            sum(p["fraction"] * p["flops_per_image"] for p in row["flops_by_phase"]))
    # Progressive resizing trains the Baseline's model: at full size it costs what the Baseline does,
    # at 16 px less, and so less on the whole.
    base = rows["baseline"]["flops_per_image"]
    small, full = rows["progressive-resizing"]["flops_by_phase"]
    assert (small["image_size"], full["image_size"]) == (16, 32)
    assert full["flops_per_image"] == base and 0 < small["flops_per_image"] < base
    assert math.isclose(sum(r["train_seconds"] for r in rows.values()), doc["protocol_train_seconds_total"])
    # The table: one line per technique, with its images/s.
    table = done.stdout.splitlines()
    line = next(text for text in table if text.strip().startswith("baseline"))
    assert f"{rows['baseline']['images_per_second']:,.0f}" in line


def test_a_failing_step_fails_the_check_loudly_and_the_others_still_run(tmp_path):
    # A CUDA test that cannot run fails under AEFRAME_REQUIRE_CUDA=1; a data directory that does not exist
    # fails the protocol.
    # (The smoke run above shows flops, benchmarks and ray passing; here the steps around the failures.)
    done, doc = smoke(tmp_path, "--data-dir", str(tmp_path / "nowhere"), "--skip", "graphs", "--skip", "flops",
                      "--skip", "benchmarks", "--skip", "ray", env={"AEFRAME_REQUIRE_CUDA": "1"})
    assert done.returncode == 1
    assert doc["ok"] is False and doc["failed_steps"] == ["protocol", "tests"]
    assert {name: step["status"] for name, step in doc["steps"].items()} == {
        "peak": "ok", "graphs": "skipped (asked for)", "protocol": "failed", "flops": "skipped (asked for)",
        "tests": "failed",
        "benchmarks": "skipped (asked for)", "ray": "skipped (asked for)"}
    assert doc["tests"]["errors"] == doc["tests"]["total"] >= 8
    assert all(row["status"] == "not run" for row in doc["techniques"])
    lines = done.stderr.splitlines()
    assert any(line.startswith("gpu-check: FAILED step tests: exit code 1; ") and "AEFRAME_REQUIRE_CUDA=1" in line
               for line in lines)
    assert (f"gpu-check: FAILED step protocol: --data-dir {tmp_path / 'nowhere'} is not a directory: give the folder "
            "holding Fashion-MNIST's four files") in done.stderr
    assert lines[-1] == f"gpu-check: FAILED: protocol, tests; everything is in {tmp_path / 'gpu-check.json'}"


def test_only_runs_the_steps_named_and_commit_names_the_commit(tmp_path):
    # The device machine takes the check in two calls (--only), and its copy's .git can be stale (--commit).
    done, doc = smoke(tmp_path, "--only", "peak", "--commit", "0123abc")
    assert done.returncode == 0, done.stderr
    assert {name: step["status"] for name, step in doc["steps"].items()} == {
        "peak": "ok", **{name: "skipped (asked for)" for name in STEPS[1:]}}
    assert doc["environment"]["aeframe_commit"] == "0123abc"
    assert doc["environment"]["aeframe_commit_from"] == "--commit"
    assert doc["peak"]["measured_bf16_tflops"] > 0 and not doc.get("ray_cells")
    both = gpu_check("--device", "cpu", "--smoke", "--only", "ray", "--skip", "peak", cwd=tmp_path)
    assert both.returncode == 2 and both.stderr.strip().splitlines()[-1].endswith("give --only or --skip, not both")


def test_steps_are_held_to_their_time_limits_and_the_checks_budget(tmp_path):
    done, doc = smoke(tmp_path, "--skip", "peak", "--skip", "graphs", "--skip", "tests", "--skip", "flops", "--skip",
                      "ray", "--timeout", "protocol=2", "--max-seconds", "12")
    assert done.returncode == 1
    steps = doc["steps"]
    assert {steps[name]["status"] for name in ("peak", "graphs", "tests", "flops", "ray")} == {"skipped (asked for)"}
    assert steps["protocol"]["problems"] == ["stopped after its time limit of 2 s", "baseline: no result in the store",
                                             "progressive-resizing: no result in the store"]
    assert steps["protocol"]["seconds"] >= 2  # held to its limit; no upper bound, which a loaded machine would break
    assert steps["benchmarks"]["problems"] == ["not started: the check's 12 s (--max-seconds) are spent"]
    assert doc["failed_steps"] == ["protocol", "benchmarks"] and doc["benchmarks"] is None


def test_a_folder_holding_the_four_files_is_linked_where_aeframe_reads_them(tmp_path, registry):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from gpu_check import CheckProblem, fashion_mnist_dir

    # Five training and three test images: not Debian's 60,000, so what loads came from these files.
    write_mnist(tmp_path / "flat", fake_mnist(np.random.default_rng(0)), gz=True)
    data_dir = fashion_mnist_dir(tmp_path / "flat", tmp_path / "work")
    loaded = registry.datasets["fashion-mnist"].load(data_dir, {"view": "native"})
    assert (len(loaded.train.images), len(loaded.test.images)) == (5, 3)
    # An aeframe data directory is taken as it is; a folder without the files is refused, saying what it needs.
    assert fashion_mnist_dir(data_dir, tmp_path / "again") == data_dir
    with pytest.raises(CheckProblem, match=r"--data-dir .* holds no Fashion-MNIST: it needs Fashion-MNIST's four files"):
        fashion_mnist_dir(tmp_path / "work", tmp_path / "more")
