#!/usr/bin/env python3
"""The GPU check: everything aeframe does on a CUDA GPU, run and measured by one command.

On a CUDA machine it runs, one after another (each step runs even when an earlier one failed):

  peak        the GPU's bf16 peak: the datasheet's dense figure (where the GPU is in the table
              of gpu_peak.py) and one measured on the spot with 8192^3 bf16 matrix products
  graphs      per technique, one epoch's images/s three ways in one process, interleaved in rounds:
              aeframe eager, aeframe with CUDA-graphed steps, and a plain PyTorch loop captured by
              hand (bf16, shapes at the study's 3x32x32 and batch 128); the goal: graphed aeframe at
              least 0.9x the hand-captured loop
  protocol    the study's full protocol: aeframe bench --epochs 15 --seeds 5 on fashion-mnist, all
              six built-in techniques (--stand-ins: the two ImageNet ones train their offline
              stand-ins where the weights cannot be had), --device cuda, default speed settings
              (precision, layout and step mode measured), --cells-per-device auto, into a fresh
              store: the leaderboard's store; the goal: at most 5 minutes from command to table
  flops       training FLOPs per image of each technique (torch.utils.flop_counter, one forward,
              loss and backward per phase at the phase's image size, weighted by phase fraction)
  tests       pytest -m cuda tests/ with AEFRAME_REQUIRE_CUDA=1 (a skipped CUDA test fails)
  benchmarks  pytest benchmarks/ --benchmark-only with AEFRAME_BENCH_DEVICE set to the device and
              AEFRAME_BENCH_ROUNDS=2 (unless set), without the two ImageNet techniques at their
              defaults (offline they only try a download; their offline forms are benchmarked)
  ray         the ray executor on the device: aeframe bench --executor ray --gpus-per-cell 1, two
              techniques x two seeds on shapes, one epoch; each cell must be done, and recorded
              as trained on the GPU Ray gave it (stats placement). Needs Ray (aeframe[ray])

and writes ONE JSON file (--output) with the environment, each step's status and duration, the
tests' results, the benchmark figures and, per technique, images/s, training and evaluation
seconds, epochs, test metrics, FLOPs per image, achieved TFLOP/s and its share of the bf16 peak.
The check's own process never touches the GPU (the peak and the FLOP count run in processes of
their own, gpu_measure.py): a process holding a CUDA context while aeframe trains would count as
another process on the GPU and mark every cell as trained on a busy machine.
A table per technique is printed at the end. The JSON is rewritten after every step, so a run
stopped from outside keeps what was done. Logs of each step, the protocol's store and its
markdown tables go to a folder next to the JSON (<output>-logs/).

Exit status: 0 when every step passed; 1 when any step failed or (on a GPU) skipped something,
each failing step named on stderr; 2 when the check cannot run here (no CUDA GPU without
--smoke, bad options).

Held to a limit: the whole check gets --max-seconds (default 900), each process step at most its
own limit (peak 120 s, graphs 150 s, protocol 420 s, flops 180 s, tests 240 s, benchmarks 240 s,
ray 120 s; --timeout changes one) within what is left after keeping 30 s for the FLOP count,
120 s for the tests and 60 s for Ray. A device session of 15 minutes takes the first call
(peak, graphs, protocol, flops); the second (tests, benchmarks, ray) where time is left. A step stopped at its limit fails, and
what it finished is kept (the protocol stores each technique as it ends). To rerun some steps
only: --skip STEP (repeatable), and -t TECHNIQUE for some techniques of the protocol.

On the project's device machine (torch with CUDA in /opt/torch/.venv, no internet, 10 minutes a
call), from the repository root, in two calls to the same warm machine. Beforehand, here:
Fashion-MNIST's four .gz files into .gpu-data/
(mkdir -p .gpu-data && cp /usr/share/datasets/fashion-mnist/*.gz .gpu-data/), and Ray, which
that machine lacks, packed into .gpu-ray/ by benchmarks/pack-ray.sh; both folders are carried.
Each call installs aeframe first:

  /opt/torch/.venv/bin/python3 -m pip install --no-deps --no-build-isolation -e . && \\
  PYTHON=/opt/torch/.venv/bin/python3 bash benchmarks/gpu-check.sh --data-dir .gpu-data \\
      --only peak --only graphs --only protocol --only flops --output $OUT/gpu-check-1.json

and the second, with Ray unpacked (mkdir -p /tmp/site && tar -xJf .gpu-ray/ray-site.tar.xz -C
/tmp/site && export PYTHONPATH=/tmp/site), the same with --only tests --only benchmarks
--only ray --output $OUT/gpu-check-2.json. Add --commit HASH to both: the copy's git history,
where it has one, can be older than its files. docs/speed.md has the two calls in full.

Without a GPU, `--device cpu --smoke` runs the same steps in miniature (shapes dataset, one
epoch, two techniques, two seeds packed two at a time, two-step benchmarks of the Baseline): a
check of the check itself.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from gpu_steps import Step, benchmark_summary, junit_summary, run_process, tail, timed  # noqa: E402

FULL_DATASET = "fashion-mnist"
FULL_EPOCHS = 15
SMOKE_DATASET = "shapes[train=256,test=64]"
SMOKE_EPOCHS = 1
# The protocol's seeds and packing: the study's five, as many at once as the GPU allows; the smoke run
# packs two seeds two at a time, so that the worker processes run on a CPU too.
FULL_SEEDS, SMOKE_SEEDS = 5, 2
FULL_PACKING, SMOKE_PACKING = "auto", "2"
# The graphs step: the study's image shape and batch, 128 steps an epoch; two timed rounds.
GRAPHS_DATASET = "shapes[train=16384,test=256]"
GRAPHS_ROUNDS, SMOKE_GRAPHS_ROUNDS = 2, 1
GOAL_GRAPHED_VS_PLAIN = 0.9
# Two phases at two image sizes, so the smoke run exercises the phase-weighted FLOP count.
SMOKE_TECHNIQUES = ("baseline", "progressive-resizing")
# The smoke run's benchmarks: the Baseline's training loops, enough to show the step and its JSON work.
SMOKE_BENCHMARKS = "training_loops and baseline"
GPU_BENCH_ROUNDS = 2
# The protocol's numbers first, on a fresh GPU, so that a budget running out costs the least.
STEP_NAMES = ("peak", "graphs", "protocol", "flops", "tests", "benchmarks", "ray")
SKIPPABLE = STEP_NAMES
# The most seconds each process step may take, and the least kept for it while earlier steps run,
# all within --max-seconds. Measured on one H200 (docs/speed.md): about 11 minutes in all, so the
# device machine's 10-minute calls take it in two parts (--only).
TIMEOUTS = {"peak": 120.0, "graphs": 150.0, "protocol": 420.0, "flops": 180.0, "tests": 240.0, "benchmarks": 240.0,
            "ray": 120.0}
KEPT_FOR = {"flops": 30.0, "tests": 120.0, "ray": 60.0}
# The ray step: enough cells that two are queued behind one GPU, small enough to take a minute.
RAY_DATASET, RAY_TECHNIQUES, RAY_SEEDS, RAY_EPOCHS = "shapes[train=2048,test=512]", ("baseline", "pixel-shuffle"), 2, 1
MAX_SECONDS, SMOKE_MAX_SECONDS = 900.0, 1800.0
SMOKE_TIMEOUT = 900.0
PEAK_SIDE = {"cuda": 8192, "cpu": 512}
# The goal for the protocol on one H200: six techniques x five seeds x 15 epochs, command to table.
GOAL_PROTOCOL_SECONDS = 300.0
CUDA_ONLY = "needs a CUDA GPU"


class CheckProblem(Exception):
    """Something that stops one step, with the one line that says what to do."""


def say(text: str) -> None:
    print(f"gpu-check: {text}", file=sys.stderr, flush=True)


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="gpu-check", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    default_output = Path(os.environ["OUT"]) / "gpu-check.json" if os.environ.get("OUT") else Path("gpu-check.json")
    parser.add_argument("--device", default="cuda", help="cuda, cuda:N, or cpu (with --smoke) [default: cuda]")
    parser.add_argument("--smoke", action="store_true",
                        help="the steps in miniature: shapes dataset, 1 epoch, two techniques, tiny benchmarks")
    parser.add_argument("--output", type=Path, default=default_output,
                        help="the JSON file [default: $OUT/gpu-check.json when $OUT is set, else ./gpu-check.json]")
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="a folder with Fashion-MNIST's four files (.gz or plain, as Debian's "
                             "/usr/share/datasets/fashion-mnist), or an aeframe data directory "
                             "[default: aeframe's own: $AEFRAME_DATA or the per-user cache, then the Debian path]")
    parser.add_argument("--cache-dir", type=Path, default=None,
                        help="AEFRAME_CACHE of every step: where the reference classifiers and the pretrained "
                             "encoder are kept [default: a fresh folder, removed at the end]")
    parser.add_argument("--epochs", type=int, default=None,
                        help=f"epochs of the protocol [default: {FULL_EPOCHS}, the study's; {SMOKE_EPOCHS} with --smoke]")
    parser.add_argument("--seeds", type=int, default=None,
                        help=f"seeds of the protocol [default: {FULL_SEEDS}, the study's; {SMOKE_SEEDS} with --smoke]")
    parser.add_argument("-t", "--technique", action="append", default=None,
                        help="run the protocol for this technique only (repeatable) [default: all six]")
    parser.add_argument("--skip", action="append", default=[], choices=SKIPPABLE,
                        help="leave out a step, e.g. for a rerun of the others (repeatable)")
    parser.add_argument("--only", action="append", default=[], choices=STEP_NAMES,
                        help="run this step and leave out the others (repeatable); the device machine's "
                             "10-minute calls take the check in two parts")
    parser.add_argument("--timeout", action="append", default=[], metavar="STEP=SECONDS",
                        help="another time limit for a step "
                             f"[default: {', '.join(f'{k} {v:.0f}' for k, v in TIMEOUTS.items())}]")
    parser.add_argument("--commit", default=None,
                        help="the aeframe commit to record where the tree has no git history (a copy of a "
                             "checkout, as on the device machine) [default: git's answer]")
    parser.add_argument("--max-seconds", type=float, default=None,
                        help=f"the whole check's time: a step that would end later is stopped (and fails), so "
                             f"the JSON is written in time [default: {MAX_SECONDS:.0f}; {SMOKE_MAX_SECONDS:.0f} "
                             "with --smoke]")
    args = parser.parse_args(argv)
    if args.only:
        if args.skip:
            parser.error("give --only or --skip, not both")
        args.skip = [name for name in STEP_NAMES if name not in args.only]
    if args.max_seconds is None:
        args.max_seconds = SMOKE_MAX_SECONDS if args.smoke else MAX_SECONDS
    args.timeouts = dict(TIMEOUTS) if not args.smoke else {name: SMOKE_TIMEOUT for name in TIMEOUTS}
    for text in args.timeout:
        name, _, seconds = text.partition("=")
        try:
            value = float(seconds)
        except ValueError:
            value = -1.0
        if name not in TIMEOUTS or value <= 0:
            parser.error(f"--timeout {text!r}: give STEP=SECONDS with STEP one of {', '.join(TIMEOUTS)}")
        args.timeouts[name] = value
    if args.epochs is not None and args.epochs < 1:
        parser.error("--epochs must be at least 1")
    if args.seeds is not None and args.seeds < 1:
        parser.error("--seeds must be at least 1")
    return args


def resolve_device(args: argparse.Namespace):
    """The torch device to check, or a CheckProblem saying why the check cannot run here."""
    import torch

    from aeframe.execution.environment import resolve_device as aeframe_device
    from aeframe.errors import UsageProblem

    text = args.device.strip().lower()
    if text.startswith("cuda") and not torch.cuda.is_available():
        raise CheckProblem(f"{CUDA_ONLY}, and torch {torch.__version__} sees none (torch.cuda.is_available() is "
                           "False); without a GPU, `--device cpu --smoke` checks the check itself")
    if text == "cpu" and not args.smoke:
        raise CheckProblem(f"{CUDA_ONLY}: the full protocol on a CPU takes hours; add --smoke for the CPU smoke run")
    if text != "cpu" and not text.startswith("cuda"):
        raise CheckProblem(f"--device {args.device!r}: use cuda, cuda:N or cpu")
    try:
        return aeframe_device(text)
    except UsageProblem as exc:
        raise CheckProblem(str(exc)) from None


def nvidia_driver() -> str | None:
    try:
        done = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                              capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    lines = done.stdout.strip().splitlines()
    return lines[0].strip() if done.returncode == 0 and lines else None


def package_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def environment(device, commit: str | None = None) -> dict[str, Any]:
    """What this process can say without touching the GPU; the peak step adds the GPU's own description."""
    import torch

    import aeframe
    from aeframe.execution.environment import source_revision

    found: dict[str, Any] = {
        "device": str(device),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "triton": package_version("triton"),
        "aeframe": aeframe.__version__,
        # --commit wins: a copied tree can carry a stale .git (the device machine's copy did).
        "aeframe_commit": commit or source_revision(),
        "aeframe_commit_from": "--commit" if commit else ("git" if source_revision() else None),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
    }
    if device.type == "cuda":
        found["driver"] = nvidia_driver()
    return found


def finite(value: Any) -> Any:
    """``value`` with every non-finite float as None: JSON has no NaN."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value


def fashion_mnist_dir(given: Path | None, work: Path) -> Path | None:
    """The aeframe data directory that holds the Fashion-MNIST files of ``given`` (None: aeframe's default).

    A folder with the four files themselves (as Debian installs them) is linked into the layout
    aeframe reads, ``<data>/FashionMNIST/raw/``, under ``work``.
    """
    if given is None:
        return None
    from aeframe_builtins.datasets.mnist_family import FILE_NAMES

    where = "Fashion-MNIST's four files (train-images-idx3-ubyte.gz ..., as /usr/share/datasets/fashion-mnist has them)"
    if not given.is_dir():
        raise CheckProblem(f"--data-dir {given} is not a directory: give the folder holding {where}")

    def files(folder: Path) -> list[Path] | None:
        found = [next((p for p in (folder / n, folder / f"{n}.gz") if p.is_file()), None) for n in FILE_NAMES]
        return None if None in found else found

    if files(given / "FashionMNIST" / "raw") is not None:
        return given
    own = files(given)
    if own is None:
        raise CheckProblem(f"--data-dir {given} holds no Fashion-MNIST: it needs {where}, "
                           "or FashionMNIST/raw/ with them")
    raw = work / "data" / "FashionMNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for path in own:
        link = raw / path.name
        if not link.exists():
            link.symlink_to(path.resolve())
    return work / "data"


def imagenet_defaults_left_out() -> str:
    """A ``-k`` expression leaving out the benchmarks of the two ImageNet techniques at their defaults.

    Offline they are skipped after a download attempt, and their offline forms, which the protocol
    runs, are benchmarked instead (same architectures, other weights).
    """
    from speed_config import OFFLINE_FORMS

    return " and ".join(f"not {form.split('[')[0]}]" for form in OFFLINE_FORMS)


def _remove_store(store: Path) -> None:
    """A step's store from an earlier check, gone: each check starts from a fresh one."""
    for stale in (store, Path(f"{store}-wal"), Path(f"{store}-shm")):
        stale.unlink(missing_ok=True)


def _stored(store: Path) -> list:
    """The records a step's ``aeframe bench`` left in ``store`` (none when it wrote no store)."""
    from aeframe.store.sqlite_store import Store

    if not store.is_file():
        return []
    with Store(store, write=False) as opened:
        return opened.records()


def expected_skip(message: str) -> bool:
    """Skips that are no failure: a plain test under --benchmark-only, and ImageNet weights offline."""
    return "non-benchmark" in message or "ImageNet weights" in message


def aeframe_command() -> list[str]:
    script = Path(sys.executable).with_name("aeframe")
    if script.is_file():
        return [str(script)]
    return [sys.executable, "-c", "from aeframe.cli import cli; cli(prog_name='aeframe')"]


class Check:
    """One run of the check: its settings, each step's outcome, and the JSON they make."""

    def __init__(self, args: argparse.Namespace, device) -> None:
        from aeframe.registry.plugins import build_registry

        self.args, self.device = args, device
        self.cuda = device.type == "cuda"
        self.smoke = args.smoke
        self.output = args.output.resolve()
        self.output.parent.mkdir(parents=True, exist_ok=True)
        self.logs = self.output.with_name(self.output.stem + "-logs")
        self.logs.mkdir(parents=True, exist_ok=True)
        self.work = Path(tempfile.mkdtemp(prefix="aeframe-gpu-check-"))
        self.cache = args.cache_dir.resolve() if args.cache_dir else self.work / "cache"
        self.cache.mkdir(parents=True, exist_ok=True)
        self.registry = build_registry(autoload=False)
        self.dataset = SMOKE_DATASET if self.smoke else FULL_DATASET
        self.epochs = args.epochs or (SMOKE_EPOCHS if self.smoke else FULL_EPOCHS)
        self.techniques = args.technique or (list(SMOKE_TECHNIQUES) if self.smoke else self._all_techniques())
        self.seeds = args.seeds or (SMOKE_SEEDS if self.smoke else FULL_SEEDS)
        self.packing = SMOKE_PACKING if self.smoke else FULL_PACKING
        self.steps = {name: Step(name) for name in STEP_NAMES}
        self.started = time.perf_counter()
        self.deadline = self.started + args.max_seconds
        self.doc: dict[str, Any] = {
            "check": "aeframe GPU check (benchmarks/gpu_check.py)",
            "mode": "smoke" if self.smoke else "full",
            "command": [sys.executable, *sys.argv],
            "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "environment": environment(device, args.commit),
            "settings": {"dataset": self.dataset, "epochs": self.epochs, "seeds": self.seeds,
                         "cells_per_device": self.packing, "techniques": self.techniques,
                         "device": str(device), "speed": "aeframe's defaults (--precision auto, default layout)",
                         "data_dir": str(args.data_dir) if args.data_dir else None,
                         "cache_dir": str(args.cache_dir) if args.cache_dir else "fresh", "timeouts": args.timeouts,
                         "max_seconds": args.max_seconds,
                         "skipped_steps": sorted(set(args.skip))},
            "logs": str(self.logs),
        }
        self.peak: dict[str, Any] = {}
        self.tests: dict[str, Any] | None = None
        self.benchmarks: list[dict[str, Any]] | None = None
        self.results: dict[str, dict[str, Any]] = {}
        self.flops: dict[str, dict[str, Any]] = {}
        self.ray_cells: list[dict[str, Any]] | None = None
        self.graphs: dict[str, Any] | None = None

    def _all_techniques(self) -> list[str]:
        from speed_config import OFFLINE_FORMS

        offline = {form.split("[")[0]: form for form in OFFLINE_FORMS}
        return [offline.get(name, name) for name in sorted(self.registry.techniques)]

    def _limit(self, name: str) -> float:
        """Seconds step ``name`` may run: its own limit, within what the later steps leave of the whole."""
        later = STEP_NAMES[STEP_NAMES.index(name) + 1:]
        kept = sum(KEPT_FOR.get(other, 0.0) for other in later if other not in self.args.skip)
        left = self.deadline - time.perf_counter() - kept
        if left < 10:
            raise CheckProblem(f"not started: the check's {self.args.max_seconds:.0f} s (--max-seconds) are spent")
        return min(self.args.timeouts[name], left)

    def _env(self, **extra: str) -> dict[str, str]:
        # The steps' pytest runs are sessions of their own, even when the check itself runs inside a pytest-xdist
        # worker (its smoke test): pytest-benchmark turns itself off where it sees xdist's variables.
        inherited = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_XDIST_")}
        return {**inherited, "PYTHONUNBUFFERED": "1", "AEFRAME_CACHE": str(self.cache), **extra}

    # The steps. Each one records its own failures; none raises.

    def run(self) -> None:
        for index, name in enumerate(STEP_NAMES, 1):
            step = self.steps[name]
            if name in self.args.skip:
                step.status = "skipped (asked for)"
                say(f"[{index}/{len(STEP_NAMES)}] {name}: skipped, as asked")
                continue
            say(f"[{index}/{len(STEP_NAMES)}] {name} ...")
            with timed(step):
                try:
                    getattr(self, f"_{name}")(step)
                except CheckProblem as exc:
                    step.fail(str(exc))
                except Exception as exc:  # one step's bug must not cost the others their run
                    step.fail(f"{type(exc).__name__}: {exc}")
            if step.status == "not run":
                step.status = "ok"
            say(f"[{index}/{len(STEP_NAMES)}] {name}: {step.status} in {step.seconds:.1f} s"
                + (f" ({'; '.join(step.problems)})" if step.problems else ""))
            self.write()

    def _measure(self, step: Step, name: str, *args: str) -> Any:
        """Run ``gpu_measure.py NAME ARGS`` (a process of its own: see there) and return what it wrote."""
        out = self.logs / f"{name}.json"
        out.unlink(missing_ok=True)
        command = [sys.executable, str(HERE / "gpu_measure.py"), name, "--device", str(self.device), "--out", str(out),
                   *args]
        run_process(step, command, ROOT, self._env(), self.logs / f"{name}.log", self._limit(name))
        if not out.is_file():
            raise CheckProblem(f"gpu_measure.py {name} wrote nothing")
        return json.loads(out.read_text())

    def _peak(self, step: Step) -> None:
        found = self._measure(step, "peak", "--side", str(PEAK_SIDE[self.device.type]))
        self.doc["environment"].update(found["environment"])
        self.peak = found["peak"]
        say(f"bf16 peak: measured {self.peak['measured_bf16_tflops']:.3g} TFLOP/s, datasheet "
            f"{self.peak['datasheet_bf16_tflops'] or 'unknown'}")

    def _graphs(self, step: Step) -> None:
        precision = "bf16" if self.cuda else "fp32"
        args = ["--dataset", SMOKE_DATASET if self.smoke else GRAPHS_DATASET, "--cache-dir", str(self.cache),
                "--precision", precision, "--rounds", str(SMOKE_GRAPHS_ROUNDS if self.smoke else GRAPHS_ROUNDS)]
        for technique in self.techniques:
            args += ["-t", technique]
        self.graphs = self._measure(step, "graphs", *args)
        for technique, found in self.graphs["techniques"].items():
            if "error" in found:
                step.fail(f"{technique}: {found['error']}")
            elif not found["images_per_second"]["eager"]:
                step.fail(f"{technique}: the eager step was not measured")
            elif self.cuda:
                # A step aeframe cannot capture is a finding (the reason is in the JSON), not a failure.
                ratio = found["graphed_vs_plain_graphed"]
                found["goal_met"] = ratio is not None and ratio >= GOAL_GRAPHED_VS_PLAIN

    def _tests(self, step: Step) -> None:
        report = self.logs / "tests.xml"
        report.unlink(missing_ok=True)
        command = [sys.executable, "-m", "pytest", "-m", "cuda", "tests/", "-p", "no:cacheprovider", "-q",
                   f"--junitxml={report}"]
        env = self._env(AEFRAME_REQUIRE_CUDA="1") if self.cuda else self._env()
        run_process(step, command, ROOT, env, self.logs / "tests.log", self._limit("tests"))
        if not report.is_file():
            raise CheckProblem("pytest wrote no JUnit report")
        self.tests = junit_summary(report)
        bad = [case for case in self.tests["not_passed"] if case["outcome"] != "skipped" or self.cuda]
        shown = 5  # the JSON has them all
        step.problems += [f"{case['test']}: {case['outcome']}: {case['message']}" for case in bad[:shown]]
        if len(bad) > shown:
            step.problems.append(f"and {len(bad) - shown} more (see the JSON's tests)")
        if self.cuda and self.tests["skipped"]:
            step.fail(f"{self.tests['skipped']} CUDA test(s) skipped on a GPU")
        if self.tests["total"] == 0:
            step.fail("no CUDA tests were collected")
        if step.problems and step.status != "failed":
            step.status = "failed"

    def _protocol(self, step: Step) -> None:
        from aeframe.cells.record import DONE

        data_dir = fashion_mnist_dir(self.args.data_dir, self.work)
        store = self.logs / "protocol.sqlite"
        _remove_store(store)
        command = [*aeframe_command(), "bench", "-d", self.dataset, "--epochs", str(self.epochs),
                   "--seeds", str(self.seeds), "--cells-per-device", self.packing, "--stand-ins",
                   "--device", str(self.device), "--store", str(store), "--output", str(self.logs / "protocol.md")]
        # The techniques by name: where the ImageNet weights cannot be had, --stand-ins trains the offline
        # form in the row's place, marked as a stand-in in the tables.
        for technique in self.protocol_names():
            command += ["-t", technique]
        if data_dir is not None:
            command += ["--data-dir", str(data_dir)]
        began = time.perf_counter()
        run_process(step, command, ROOT, self._env(AEFRAME_DISABLE_PLUGIN_AUTOLOAD="1"), self.logs / "protocol.log",
                    self._limit("protocol"))
        self.doc["protocol_seconds"] = round(time.perf_counter() - began, 1)  # command to table
        records = _stored(store)
        for technique, name in zip(self.techniques, self.protocol_names()):
            base = name.split("[")[0]
            mine = [r for r in records if [t.name for t in r.config.techniques] == [base]]
            done = [r for r in mine if r.status == DONE]
            if not mine:
                step.fail(f"{technique}: no result in the store")
                self.results[technique] = {"label": base, "status": "missing"}
                continue
            # The row's times are those of a cell that trained alone (--cells-per-device packs the rest).
            alone = [r for r in done if not r.stats.packed]
            record = (alone or done or mine)[-1]
            row = self._row(record, record.config.label)
            row["seeds_done"] = len(done)
            row["seeds_packed"] = sum(1 for r in done if r.stats.packed)
            self.results[technique] = row
            if not done:
                failed = mine[-1]
                step.fail(f"{technique}: {failed.status}: "
                          f"{(failed.error or '').splitlines()[0] if failed.error else ''}")
                continue
            if len(done) < self.seeds:
                step.fail(f"{technique}: {len(done)} of {self.seeds} seeds done")
            if row["device"] != self.device.type:
                step.fail(f"{technique}: trained on {row['device']}, not {self.device.type}")
            if not math.isclose(row["epochs"] or 0.0, self.epochs):
                step.fail(f"{technique}: trained {row['epochs']} epochs of {self.epochs}")
            bad = [name for name, value in record.metrics.items() if not math.isfinite(value)]
            if bad or not record.metrics:
                step.fail(f"{technique}: metrics not finite: {', '.join(bad) or 'none stored'}")

    def protocol_names(self) -> list[str]:
        """The protocol's techniques: each offline form by its own name (--stand-ins trains the form
        where the named technique cannot run); techniques given with -t as given."""
        if self.args.technique:
            return list(self.techniques)
        return [technique.split("[")[0] for technique in self.techniques]

    @staticmethod
    def _row(record, label: str) -> dict[str, Any]:
        stats = record.stats
        return {
            "label": label,
            "status": record.status,
            "error": (record.error or "").splitlines()[0] if record.error else None,
            "device": record.config.device.type,
            "device_name": record.config.device.name,
            "speed": record.config.speed.to_json(),
            "images_per_second": stats.get("images_per_second"),
            "train_seconds": stats.get("train_seconds"),
            "eval_seconds": stats.get("eval_seconds"),
            "compile_seconds": stats.get("compile_seconds"),
            "epochs": stats.get("epochs"),
            "steps": stats.get("steps"),
            "params": stats.get("params"),
            "metrics": dict(record.metrics),
            "stats": stats.to_json(),  # everything the record keeps: preparation, layout, CPU share, classifier ...
        }

    def _flops(self, step: Step) -> None:
        try:
            data_dir = fashion_mnist_dir(self.args.data_dir, self.work)
        except CheckProblem:
            data_dir = None  # the protocol step has said what is wrong with it; not needed here
        args = ["--dataset", self.dataset, "--cache-dir", str(self.cache)]
        if data_dir is not None:
            args += ["--data-dir", str(data_dir)]
        for technique in self.techniques:
            args += ["-t", technique]
        for technique, found in self._measure(step, "flops", *args).items():
            if "error" in found:
                step.fail(f"{technique}: FLOPs not counted: {found['error']}")
            else:
                self.flops[technique] = found

    def _benchmarks(self, step: Step) -> None:
        report, figures = self.logs / "benchmarks.xml", self.logs / "benchmarks.json"
        report.unlink(missing_ok=True)
        figures.unlink(missing_ok=True)
        command = [sys.executable, "-m", "pytest", "benchmarks/", "--benchmark-only", f"--benchmark-json={figures}",
                   f"--junitxml={report}", "-p", "no:cacheprovider", "-q"]
        extra = {"AEFRAME_BENCH_DEVICE": str(self.device)}
        if self.smoke:
            command += ["-k", SMOKE_BENCHMARKS]
            extra.update(AEFRAME_BENCH_STEPS="2", AEFRAME_BENCH_ROUNDS="1")
        else:
            command += ["-k", imagenet_defaults_left_out()]
            # The executors' benchmark compares CPU cells (--cpus-per-cell); Ray on the GPU is the ray step.
            command += ["--ignore", str(HERE / "test_executors.py")]
            # Two timed rounds after the warm-up, not three, to fit a device call: a GPU's rounds vary little.
            extra["AEFRAME_BENCH_ROUNDS"] = os.environ.get("AEFRAME_BENCH_ROUNDS") or str(GPU_BENCH_ROUNDS)
        self.doc["settings"]["benchmark_environment"] = extra
        run_process(step, command, ROOT, self._env(**extra), self.logs / "benchmarks.log",
                    self._limit("benchmarks"))
        if report.is_file():
            summary = junit_summary(report)
            self.doc["benchmark_tests"] = summary
            skipped = [c for c in summary["not_passed"] if c["outcome"] == "skipped" and not expected_skip(c["message"])]
            if self.cuda and skipped:
                step.fail(f"{len(skipped)} benchmark(s) skipped on a GPU: "
                          + "; ".join(f"{c['test']}: {c['message']}" for c in skipped))
        if not figures.is_file():
            raise CheckProblem("pytest-benchmark wrote no JSON")
        self.benchmarks = benchmark_summary(figures)
        if not self.benchmarks:
            step.fail("no benchmark ran")

    def _ray(self, step: Step) -> None:
        from importlib.util import find_spec

        from aeframe.cells.record import DONE

        if find_spec("ray") is None:
            raise CheckProblem("Ray is not installed here: pip install -e '.[ray]' in aeframe's clone (on the project's "
                               "device machine, carry it: benchmarks/DEVICE.md), or --skip ray")
        store = self.logs / "ray.sqlite"
        _remove_store(store)
        dataset = SMOKE_DATASET if self.smoke else RAY_DATASET
        command = [*aeframe_command(), "bench", "--executor", "ray", "-d", dataset, "--epochs", str(RAY_EPOCHS),
                   "--seeds", str(RAY_SEEDS), "--device", self.device.type, "--store", str(store),
                   "--output", str(self.logs / "ray.md")]
        # On a GPU the form: one whole GPU per cell, so the cells queue behind it one at a time.
        command += ["--gpus-per-cell", "1"] if self.cuda else ["--cpus-per-cell", "1"]
        for technique in RAY_TECHNIQUES:
            command += ["-t", technique]
        run_process(step, command, ROOT, self._env(AEFRAME_DISABLE_PLUGIN_AUTOLOAD="1"), self.logs / "ray.log",
                    self._limit("ray"))
        records = _stored(store)
        self.ray_cells = []
        for record in records:
            placement = record.stats.get("placement") or {}
            self.ray_cells.append({"label": record.config.label, "seed": record.config.seed,
                                   "status": record.status, "train_seconds": record.stats.get("train_seconds"),
                                   **{key: placement.get(key) for key in
                                      ("node", "device", "gpu_ids", "gpus", "cpus", "started", "ended")}})
        expected = len(RAY_TECHNIQUES) * RAY_SEEDS
        if len(records) != expected:
            step.fail(f"{len(records)} cell(s) in the store, not {expected}")
        for cell in self.ray_cells:
            name = f"{cell['label']} seed {cell['seed']}"
            if cell["status"] != DONE:
                step.fail(f"{name}: {cell['status']}")
            elif not str(cell["device"] or "").startswith(self.device.type):
                step.fail(f"{name}: placed on {cell['device']!r}, not on the {self.device.type}")
            elif self.cuda and cell["gpus"] != 1:
                step.fail(f"{name}: reserved {cell['gpus']} GPU(s), not 1")

    # The outcome.

    def technique_rows(self) -> list[dict[str, Any]]:
        datasheet = self.peak.get("datasheet_bf16_tflops")
        measured = self.peak.get("measured_bf16_tflops")
        rows = []
        for technique in self.techniques:
            row: dict[str, Any] = {"technique": technique,
                                   **self.results.get(technique, {"status": "not run"})}
            counted = self.flops.get(technique)
            row["flops_per_image"] = counted["flops_per_image"] if counted else None
            row["flops_by_phase"] = counted["phases"] if counted else None
            rate, flops = row.get("images_per_second"), row["flops_per_image"]
            achieved = rate * flops / 1e12 if rate and flops else None
            row["achieved_tflops"] = achieved
            row["share_of_datasheet_bf16_peak"] = achieved / datasheet if achieved and datasheet else None
            row["share_of_measured_bf16_peak"] = achieved / measured if achieved and measured else None
            rows.append(row)
        return rows

    def failed(self) -> list[str]:
        return [name for name, step in self.steps.items() if step.status == "failed"]

    def write(self) -> None:
        rows = self.technique_rows()
        trained = [r["train_seconds"] for r in rows if r.get("train_seconds") is not None]
        self.doc.update({
            "seconds": round(time.perf_counter() - self.started, 1),
            "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "ok": not self.failed() and all(s.status != "not run" for s in self.steps.values()),
            "failed_steps": self.failed(),
            "steps": {name: step.to_json() for name, step in self.steps.items()},
            "peak": self.peak,
            "tests": self.tests,
            "benchmarks": self.benchmarks,
            "techniques": rows,
            "ray_cells": self.ray_cells,
            "protocol_train_seconds_total": sum(trained) if trained else None,
            "protocol_seconds": self.doc.get("protocol_seconds"),
            "goal_protocol_seconds": GOAL_PROTOCOL_SECONDS if not self.smoke else None,
            "graphs": self.graphs,
            "flops_note": "matrix products and convolutions counted by torch.utils.flop_counter over one forward, "
                          "loss and backward per phase, weighted by phase fraction; elementwise work, "
                          "normalisation, augmentation and the optimizer are not counted",
        })
        partial = self.output.with_name(self.output.name + ".partial")
        partial.write_text(json.dumps(finite(self.doc), indent=2, allow_nan=False) + "\n")
        partial.replace(self.output)

    def table(self) -> str:
        from tabulate import tabulate

        def number(value, fmt: str) -> str:
            return "–" if value is None else format(value, fmt)

        lines = []
        for row in self.technique_rows():
            metrics = row.get("metrics") or {}
            lines.append([row["technique"], row.get("status"), number(row.get("images_per_second"), ",.0f"),
                          number(row.get("train_seconds"), ".1f"), number(row.get("eval_seconds"), ".1f"),
                          number(row.get("epochs"), ".2f"), number(metrics.get("mse"), ".6f"),
                          number(row["flops_per_image"] and row["flops_per_image"] / 1e9, ".3f"),
                          number(row["achieved_tflops"], ".2f"),
                          number(row["share_of_datasheet_bf16_peak"] and 100 * row["share_of_datasheet_bf16_peak"], ".2f"),
                          number(row["share_of_measured_bf16_peak"] and 100 * row["share_of_measured_bf16_peak"], ".2f")])
        return tabulate(lines, headers=["technique", "status", "images/s", "train s", "eval s", "epochs", "test MSE",
                                        "GFLOP/image", "TFLOP/s", "% bf16 datasheet", "% bf16 measured"],
                        disable_numparse=True, stralign="right")

    def finish(self) -> int:
        self.write()
        print(f"{self.dataset}, {self.epochs} epoch(s), {self.doc['environment'].get('device_name', self.device)}:")
        print(self.table())
        total = self.doc["protocol_train_seconds_total"]
        if total is not None:
            print(f"training time of one seed of each technique (trained alone): {total:.1f} s")
        wall = self.doc.get("protocol_seconds")
        if wall is not None and self.steps["protocol"].status == "ok":
            goal = f" (goal on one H200: at most {GOAL_PROTOCOL_SECONDS:.0f} s)" if not self.smoke else ""
            print(f"the protocol, {len(self.techniques)} techniques x {self.seeds} seeds x {self.epochs} epoch(s), "
                  f"command to table: {wall:.0f} s{goal}")
        for technique, found in ((self.graphs or {}).get("techniques") or {}).items():
            if "error" in found:
                continue
            rate = found["images_per_second"]
            shown = ", ".join(f"{way} {value:,.0f}" if value else f"{way} –" for way, value in rate.items())
            print(f"graphs: {technique}: images/s {shown}")
        for cell in self.ray_cells or []:
            print(f"ray: {cell['label']} seed {cell['seed']}: {cell['status']} on {cell['device']} "
                  f"(node {cell['node']}, GPU ids {cell['gpu_ids']}, {cell['gpus']} GPU reserved)")
        print("steps: " + ", ".join(f"{n} {s.status} {s.seconds:.0f} s" for n, s in self.steps.items())
              + f"; total {self.doc['seconds']:.0f} s")
        shutil.rmtree(self.work, ignore_errors=True)
        failed = self.failed()
        for name in failed:
            step = self.steps[name]
            say(f"FAILED step {name}: {'; '.join(step.problems)}")
            if step.log:
                say(f"last lines of {step.log}:\n{tail(step.log)}")
        if failed:
            say(f"FAILED: {', '.join(failed)}; everything is in {self.output}")
            return 1
        say(f"all steps passed in {self.doc['seconds']:.0f} s; everything is in {self.output}")
        return 0


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    try:
        device = resolve_device(args)
    except CheckProblem as exc:
        say(str(exc))
        return 2
    check = Check(args, device)
    try:
        check.run()
    finally:
        code = check.finish()
    return code


if __name__ == "__main__":
    sys.exit(main())
