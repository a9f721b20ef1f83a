"""``--precision auto``: the fastest precision whose results stay within tolerance, measured on this device.

Precision is a condition of a whole run (every row of a table shares it), so it is chosen once per
device, threads and torch version, on a probe: a small convolutional autoencoder of the study's
kind (3x32x32 images, batch 128). For each precision the device can compute in:

- **speed**: training steps of the probe, in both memory layouts and, on a GPU, both eager and
  captured in a CUDA graph (:mod:`aeframe.speed.graphs`), interleaved in rounds; a precision's rate
  is that of its fastest way (each cell's layout and step mode are chosen later anyway). Eager
  alone, a launch-bound probe would rate every precision by its launches and bf16 only by its casts;
  graphed, the math shows;
- **tolerance**: from the same initial weights and batches as fp32, (a) the reconstructions of a
  test batch differ from fp32's by at most ``FORWARD_TOLERANCE`` on average (pixel values in
  [0, 1]); (b) after ``TRAIN_STEPS`` training steps, the test MSE is within ``TRAINED_TOLERANCE``
  (relative) of fp32's; (c) every loss is finite.

fp32 is the reference and always qualifies. A lower precision is chosen only when it qualifies and
is at least ``MIN_GAIN`` times as fast as the best more precise one: a gain inside the timing noise
is not worth changing every number's rounding. The result is cached (:mod:`aeframe.speed.cache`).
"""
from __future__ import annotations

import copy
import json
import time
from dataclasses import asdict, dataclass, field, fields
from statistics import median
from typing import Any, Callable, Mapping

import torch
from torch import nn
from torch.nn import functional as F

from aeframe.cells.record import busy_share
from aeframe.cells.settings import Speed
from aeframe.speed.cache import SpeedCache, entry_key, finite_number
from aeframe.speed.contention import CpuShareMeter
from aeframe.speed.graphs import TrainingSteps, obstacle
from aeframe.speed.numerics import speed_model
from aeframe.speed.rehearsal import block_steps
from aeframe.speed.resolve import cuda_has_bf16
from aeframe.speed.step import Stepper, synchronize

FORWARD_TOLERANCE = 5e-3
TRAINED_TOLERANCE = 0.05
MIN_GAIN = 1.05
TRAIN_STEPS = 12
ROUNDS = 3
BATCH = 128
SIDE = 32
# The precisions in order of preference: each later one must earn its place by speed.
ORDER = ("fp32", "bf16", "fp16")
# The source of a choice taken from the store's earlier cells rather than measured.
KEPT = "kept"


def candidates(device: torch.device) -> list[str]:
    """The precisions ``device`` can train in: fp32; bf16 where supported (on a CPU without native bf16
    it is emulated, which the measurement shows); fp16 on GPUs and on CPUs with AMX-FP16."""
    found = ["fp32"]
    if device.type != "cuda" or cuda_has_bf16(device):
        found.append("bf16")
    if device.type == "cuda" or getattr(torch.cpu, "_is_amx_fp16_supported", lambda: False)():
        found.append("fp16")
    return found


@dataclass(frozen=True)
class Measurement:
    """One precision on the probe: its training rate and how far its results are from fp32's."""

    images_per_second: float
    forward_error: float  # mean |difference| of reconstructions from fp32's, same weights
    trained_mse_change: float  # relative change of the test MSE after TRAIN_STEPS steps
    finite: bool
    graphed: bool = False  # the rate is that of the graphed step (faster than eager here)

    @property
    def within_tolerance(self) -> bool:
        return (self.finite and self.forward_error <= FORWARD_TOLERANCE
                and abs(self.trained_mse_change) <= TRAINED_TOLERANCE)


@dataclass(frozen=True)
class PrecisionChoice:
    """The chosen precision, whether it was measured now or cached, and every candidate's measurement."""

    precision: str
    source: str  # "measured", "cached" or KEPT
    measurements: dict[str, Measurement] = field(default_factory=dict)

    def describe(self) -> str:
        """One line for people: the choice and the rates behind it."""
        rates = ", ".join(f"{name} {m.images_per_second:,.0f} img/s" + (" graphed" if m.graphed else "")
                          + ("" if m.within_tolerance else " (outside tolerance)")
                          for name, m in self.measurements.items())
        if self.source == KEPT:
            return (f"precision {self.precision} (as the store's cells from an earlier run on this machine, so that "
                    "this run resumes them; a new store, or an explicit --precision, measures again)")
        how = "measured now" if self.source == "measured" else "measured earlier on this machine"
        return f"precision {self.precision} ({how} on a probe model: {rates})"

    def to_json(self) -> dict[str, Any]:
        return {"precision": self.precision, "measurements": {k: asdict(v) for k, v in self.measurements.items()}}


def pick(measurements: dict[str, Measurement]) -> str:
    """The precision the rule above picks (see the module's docstring)."""
    chosen = "fp32"
    for name in ORDER[1:]:
        found = measurements.get(name)
        if found is not None and found.within_tolerance and \
                found.images_per_second >= MIN_GAIN * measurements[chosen].images_per_second:
            chosen = name
    return chosen


def precision_problem(entry: dict[str, Any]) -> str | None:
    """Why a cached precision ``entry`` cannot be used (its precision unknown, a measurement of another
    shape or out of range); None when it can."""
    if entry.get("precision") not in ORDER:
        return f"precision {json.dumps(entry.get('precision'))[:40]} is none of {', '.join(ORDER)}"
    measurements = entry.get("measurements")
    if not isinstance(measurements, dict):
        return "its measurements are not a mapping"
    for name, found in measurements.items():
        if not isinstance(found, dict) or set(found) != {f.name for f in fields(Measurement)}:
            return f"the measurement of {name} has other fields than {', '.join(f.name for f in fields(Measurement))}"
        numbers = [found["images_per_second"], found["forward_error"], found["trained_mse_change"]]
        if not all(finite_number(n) for n in numbers) or min(numbers[:2]) < 0:
            return f"the measurement of {name} holds a rate or an error that is not a finite number (or is negative)"
        if not (isinstance(found["finite"], bool) and isinstance(found["graphed"], bool)):
            return f"the measurement of {name} says finite or graphed with other than true or false"
    return None


def precision_key(device_name: str, torch_version: str) -> str:
    # probe 2: rates include the graphed step on a GPU
    return entry_key("precision", device=device_name, torch=torch_version, probe=2)


def choose_precision(device: torch.device, device_name: str, cache: SpeedCache,
                     say: Callable[[str], None] = lambda _: None,
                     kept: Mapping[str, str] | None = None) -> PrecisionChoice:
    """The precision ``--precision auto`` means on ``device`` (named ``device_name``, threads included).

    ``kept`` maps a :func:`precision_key` to the precision auto chose for the cells a run's store
    already holds from that machine state. It comes first: precision is part of a cell's key, so a
    choice measured again (the machine busier, the cache lost) could otherwise miss every cell the
    same command trained before.
    """
    key = precision_key(device_name, torch.__version__.split("+")[0])
    if kept and kept.get(key) in ORDER:
        return PrecisionChoice(kept[key], KEPT)
    found = cache.get(key, precision_problem)
    if found is not None:
        measured = {k: Measurement(**v) for k, v in found["measurements"].items()}
        return PrecisionChoice(found["precision"], "cached", measured)
    say(f"measuring which precision trains fastest within tolerance on {device_name} (once; cached in {cache.path})")
    meter = CpuShareMeter(torch.get_num_threads())
    meter.start()
    measured = measure(device, candidates(device))
    meter.stop()
    choice = PrecisionChoice(pick(measured), "measured", measured)
    if busy_share(meter.share()):
        # Not kept: a choice made on a shared machine would stay for every later run.
        say(f"the machine was busy while the precision was measured (the process got {meter.share():.0%} of "
            "its CPU): this run uses the result, the next measures again")
    else:
        cache.put(key, choice.to_json())
    return choice


class ProbeAutoencoder(nn.Module):
    """Conv-BN-ReLU stages pooled twice, a linear bottleneck, and upsampling conv stages back."""

    def __init__(self, channels: int = 3, side: int = SIDE, latent: int = 256):
        super().__init__()

        def stage(c_in: int, c_out: int) -> list[nn.Module]:
            return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]

        grid = side // 4
        self.encoder = nn.Sequential(*stage(channels, 16), nn.MaxPool2d(2), *stage(16, 32), nn.MaxPool2d(2),
                                     nn.Flatten(), nn.Linear(32 * grid * grid, latent))
        self.decoder = nn.Sequential(nn.Linear(latent, 32 * grid * grid), nn.Unflatten(1, (32, grid, grid)),
                                     nn.Upsample(scale_factor=2), *stage(32, 16), nn.Upsample(scale_factor=2),
                                     nn.Conv2d(16, channels, 3, padding=1), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))


def probe_images(count: int, generator: torch.Generator) -> torch.Tensor:
    """Smooth random images in [0, 1]: noise at 8x8, upsampled (an autoencoder can learn them)."""
    coarse = torch.rand(count, 3, 8, 8, generator=generator)
    return F.interpolate(coarse, size=SIDE, mode="bilinear", align_corners=False)


class _Trainer:
    """The probe under one precision and layout, with AdamW, stepping through fixed batches."""

    def __init__(self, model: nn.Module, precision: str, channels_last: bool, device: torch.device,
                 graph_for: torch.Tensor | None = None):
        self.speed = Speed(precision, channels_last)
        self.device = device
        self.model = speed_model(copy.deepcopy(model), self.speed, device)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=1e-3)
        self.steps = TrainingSteps(self.model, _probe_loss, Stepper.of(self.speed, device), graphed=False)
        if graph_for is not None:  # capture for batches like this one; a failure leaves it eager
            self.steps.graphed = True
            self.steps.capture(self.optimizer, graph_for)
        self.losses: list[float] = []

    def step(self, batch: torch.Tensor, keep: bool = False) -> None:
        loss = self.steps.step(self.optimizer, batch)[0]
        if keep:
            self.losses.append(float(loss.detach()))

    @torch.no_grad()
    def reconstruct(self, batch: torch.Tensor) -> torch.Tensor:
        self.model.eval()
        out = self.model(batch)
        self.model.train()
        return out.float()


def _probe_loss(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(output.float(), target)


def measure(device: torch.device, precisions: list[str]) -> dict[str, Measurement]:
    """Rate and tolerance checks of each of ``precisions`` (fp32 first) on the probe."""
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(0)
        generator = torch.Generator().manual_seed(0)
        train = probe_images(4 * BATCH, generator).to(device).split(BATCH)
        test = probe_images(BATCH, generator).to(device)
        model = ProbeAutoencoder().to(device)
        rates = _rates(model, precisions, train[0], device)
        reference = _Trainer(model, "fp32", False, device)
        initial = reference.reconstruct(test)
        trained = _trained_mse(reference, train, test)
        found = {}
        for name in precisions:
            trainer = _Trainer(model, name, False, device)
            forward = float((trainer.reconstruct(test) - initial).abs().mean())
            mse = trained if name == "fp32" else _trained_mse(trainer, train, test)
            finite = all(torch.isfinite(torch.tensor(trainer.losses or [0.0]))) and torch.isfinite(torch.tensor(mse))
            rate, graphed = rates[name]
            found[name] = Measurement(rate, forward, (mse - trained) / trained if trained else 0.0, bool(finite),
                                      graphed)
    return found


def _trained_mse(trainer: _Trainer, train: tuple[torch.Tensor, ...], test: torch.Tensor) -> float:
    for step in range(TRAIN_STEPS):
        trainer.step(train[step % len(train)], keep=True)
    return float(F.mse_loss(trainer.reconstruct(test), test))


def _rates(model: nn.Module, precisions: list[str], batch: torch.Tensor, device: torch.device
           ) -> dict[str, tuple[float, bool]]:
    """Images/s per precision at its fastest layout and step mode, and whether that mode is graphed;
    every (precision, layout, mode) timed in interleaved rounds. Graphed only where it can be captured."""
    trainers: dict[tuple[str, bool, bool], _Trainer] = {}
    for p in precisions:
        for cl in (False, True):
            trainers[(p, cl, False)] = _Trainer(model, p, cl, device)
            if obstacle(device, p) is None:
                graphed = _Trainer(model, p, cl, device, graph_for=batch)
                if graphed.steps.graphed:
                    trainers[(p, cl, True)] = graphed
    for trainer in trainers.values():
        trainer.step(batch)  # the first step at a shape pays its set-up
    # Blocks long enough that timer and launch jitter stay small (a GPU step of this model is ~1 ms).
    one = min(_timed(trainer, batch, 1, device) for trainer in trainers.values())
    steps = block_steps(one)
    times: dict[tuple[str, bool, bool], list[float]] = {k: [] for k in trainers}
    for round_ in range(ROUNDS):
        order = list(trainers) if round_ % 2 == 0 else list(reversed(trainers))
        for k in order:
            times[k].append(_timed(trainers[k], batch, steps, device) / steps)
    rates = {}
    for p in precisions:
        rate, key = max((BATCH / median(times[k]), k) for k in trainers if k[0] == p)
        rates[p] = (rate, key[2])
    return rates


def _timed(trainer: _Trainer, batch: torch.Tensor, steps: int, device: torch.device) -> float:
    synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        trainer.step(batch)
    synchronize(device)
    return time.perf_counter() - start
