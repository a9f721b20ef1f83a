"""The reference classifier behind Classifier Accuracy: its recipe, training and cache.

Trained once per dataset (and view) on the original training split and cached; its accuracy on
the original test images is the table's "Original Image" reference. The study used an
ImageNet-pretrained ResNet34; this one is a small CNN trained from scratch, so it needs nothing
from the network and trains in minutes on a CPU. Imported only when the metric is prepared: it
needs torch, which listing plugins must not import.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from aeframe import (
    CellContext,
    ImageData,
    Stepper,
    epoch_order,
    one_cycle_beta1,
    one_cycle_lr,
    to_unit,
    write_atomically,
)

# Everything that decides the classifier; part of the cache key, and shown under the tables.
RECIPE = {
    "model": "3 conv3x3-BN-ReLU blocks (32, 64, 128), each followed by a 2x2 max-pool; global average pool; linear",
    # Steps, not epochs: 6 epochs of a small dataset are few steps (1,438 images made 30), of a huge
    # one more than a reference needs. Fashion-MNIST's 60,000 images keep their 6 epochs (1,404
    # steps); 1,438 images get 300 steps (test accuracy 0.63 at 30 steps, 0.99 at 300); a few hundred
    # images stop at 100 epochs, past which they are memorised (256 images: 0.69 at 100, 0.73 at 300).
    "epochs": 6,
    "min_steps": 300,
    "max_steps": 2000,
    "max_epochs": 100,
    "batch": 256,  # or the whole training split when it is smaller
    "optimizer": "AdamW betas (0.9, 0.99), weight decay 5e-4, one-cycle to 4e-3",
    "augmentation": "random translation by up to 2 pixels",
    "label_smoothing": 0.1,
    "precision": "bf16 autocast, channels_last",
    # The running statistics a few hundred momentum-0.1 updates leave behind lag the weights they
    # were collected under; recomputed once the weights are final, they describe the final network.
    "batchnorm": "running statistics recomputed after training over up to 20 unaugmented training batches",
    "seed": 0,
    "version": 2,
}
_EVAL_BATCH = 1000
_BN_BATCHES = 20
# Clearly above chance: at least 1.5 x chance (halfway to perfect when chance is over 1/3), and a
# one-sided binomial test against chance at p < 0.001.
CHANCE_FACTOR = 1.5
CHANCE_P = 0.001
# What moves the cache directory (aeframe's workspace reads it): the way out of a cache that cannot be written.
CACHE_ENV = "AEFRAME_CACHE"
# The facts a cached classifier must have, each a finite number in its range: the table and its notes read them.
_FACT_RANGES = {"reference_accuracy": (0.0, 1.0), "chance": (0.0, 1.0), "chance_p": (0.0, 1.0),
                "train_seconds": (0.0, math.inf), "epochs": (0.0, math.inf)}


def _block(c_in: int, c_out: int) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]


def reference_classifier(channels: int, classes: int) -> nn.Sequential:
    """The small CNN of ``RECIPE``: input [0, 1] images, output class logits."""
    return nn.Sequential(
        *_block(channels, 32), nn.MaxPool2d(2),
        *_block(32, 64), nn.MaxPool2d(2),
        *_block(64, 128), nn.MaxPool2d(2),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(128, classes),
    )


def training_steps(train_images: int) -> tuple[int, int]:
    """(batch size, steps) of ``RECIPE`` for a training split of ``train_images`` images."""
    batch = min(RECIPE["batch"], train_images)
    per_epoch = train_images // batch
    steps = min(max(RECIPE["epochs"] * per_epoch, RECIPE["min_steps"]), RECIPE["max_steps"])
    return batch, min(steps, RECIPE["max_epochs"] * per_epoch)


def _translate(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Shift each image by up to 2 pixels in each direction (zero fill): one draw per batch side."""
    dx, dy = (int(v) for v in torch.randint(-2, 3, (2,), generator=gen, device=x.device))
    return torch.roll(nn.functional.pad(x, (2, 2, 2, 2)), (dy, dx), dims=(2, 3))[..., 2:-2, 2:-2]


@torch.no_grad()
def accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    """Top-1 accuracy of ``model`` on uint8 ``images``."""
    model.eval()
    correct = torch.zeros((), dtype=torch.long, device=images.device)
    for start in range(0, len(images), _EVAL_BATCH):
        logits = model(to_unit(images[start : start + _EVAL_BATCH]))
        correct += (logits.argmax(1) == labels[start : start + _EVAL_BATCH]).sum()
    return int(correct) / max(len(images), 1)


def binomial_tail(successes: int, trials: int, p: float) -> float:
    """P(X >= successes) for X ~ Binomial(trials, p), summed in log space (no SciPy)."""
    if successes <= 0:
        return 1.0
    if p <= 0.0:
        return 0.0
    if p >= 1.0:
        return 1.0
    log_terms = [
        math.lgamma(trials + 1) - math.lgamma(k + 1) - math.lgamma(trials - k + 1) + k * math.log(p)
        + (trials - k) * math.log1p(-p)
        for k in range(successes, trials + 1)
    ]
    top = max(log_terms)
    return min(1.0, math.exp(top) * sum(math.exp(t - top) for t in log_terms))


def chance_verdict(test_accuracy: float, labels: torch.Tensor, classes: int) -> dict[str, Any]:
    """Whether ``test_accuracy`` on the test ``labels`` is clearly above chance.

    Chance is what always guessing the test split's most frequent label scores (1/classes for a
    balanced split). Clearly above it: at least ``CHANCE_FACTOR`` x chance (or halfway from chance to
    1 when that is lower) and a one-sided binomial test against chance at p < ``CHANCE_P``.
    """
    n = len(labels)
    chance = max(int(torch.bincount(labels.cpu(), minlength=classes).max()) / n if n else 0.0, 1 / max(classes, 1))
    needed = min(CHANCE_FACTOR * chance, (1 + chance) / 2)
    p_value = binomial_tail(round(test_accuracy * n), n, chance)
    return {"chance": chance, "chance_p": p_value, "at_chance": test_accuracy < needed or p_value >= CHANCE_P}


@torch.no_grad()
def _recompute_batchnorm(model: nn.Module, images: torch.Tensor, batch: int, device: torch.device) -> None:
    """Replace every BatchNorm's running statistics by their plain average over training batches."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in norms]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # a cumulative average: every batch weighs the same
    model.train()
    for start in range(0, min(len(images), _BN_BATCHES * batch), batch):
        x = to_unit(images[start : start + batch]).contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=torch.bfloat16):
            model(x)
    for norm, momentum in zip(norms, momenta):
        norm.momentum = momentum


def train_reference(data: ImageData, device: torch.device, name: str) -> tuple[nn.Module, dict[str, Any]]:
    """Train the reference classifier on ``data``'s training split; report its test accuracy.

    Seeds torch's global generator (callers that must keep theirs wrap this in ``fork_rng``).
    """
    if len(data.train.images) == 0:
        raise ValueError(f"{name} has no training images to train the reference classifier on")
    torch.manual_seed(RECIPE["seed"])
    model = reference_classifier(data.shape[0], len(data.classes)).to(device, memory_format=torch.channels_last)
    images, labels = data.train.images.to(device), data.train.labels.to(device)
    gen = torch.Generator(device=device).manual_seed(RECIPE["seed"])
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.99), weight_decay=5e-4)
    # bf16 halves the cost on CPUs with bf16 units and on GPUs; the accuracy is unaffected.
    stepper = Stepper("bf16", device.type)
    batch, total = training_steps(len(images))
    # About ten progress lines, whatever the length.
    report_every = max(total // 10, 1)
    started, step = time.perf_counter(), 0
    model.train()
    loss_sum, summed = torch.zeros((), device=device), 0
    while step < total:
        for indices in epoch_order(len(images), batch, gen, device):
            q = step / total
            for group in optimizer.param_groups:
                group["lr"] = one_cycle_lr(q, 4e-3)
                group["betas"] = (one_cycle_beta1(q), group["betas"][1])
            x = _translate(to_unit(images[indices]), gen).contiguous(memory_format=torch.channels_last)
            target = labels[indices]
            loss = stepper.step(optimizer, lambda: nn.functional.cross_entropy(
                model(x).float(), target, label_smoothing=RECIPE["label_smoothing"]))
            loss_sum += loss.detach()
            step, summed = step + 1, summed + 1
            if step % report_every == 0 or step == total:
                print(f"classifier-accuracy: reference classifier for {name}: step {step}/{total} "
                      f"loss {float(loss_sum) / summed:.4f} ({time.perf_counter() - started:.0f}s)",
                      file=sys.stderr, flush=True)
                loss_sum, summed = torch.zeros((), device=device), 0
            if step == total:
                break
    _recompute_batchnorm(model, images, batch, device)
    seconds = time.perf_counter() - started
    test_labels = data.test.labels.to(device)
    test_accuracy = accuracy(model, data.test.images.to(device), test_labels)
    print(f"classifier-accuracy: reference classifier for {name}: test accuracy {test_accuracy:.4f}",
          file=sys.stderr, flush=True)
    facts = {"reference_accuracy": test_accuracy, "train_seconds": seconds, "steps": total, "batch": batch,
             "epochs": total * batch / len(images), **chance_verdict(test_accuracy, test_labels, len(data.classes)),
             "recipe": RECIPE}
    return model, facts


def cache_paths(cache_dir: Path, dataset_spec: str, data: ImageData) -> tuple[Path, Path]:
    """The weights and facts files of the classifier of ``data`` (loaded from ``dataset_spec``).

    The data's fingerprint is in the key: a classifier is reused only for the very images and labels
    it was trained on, never for another data directory's files or another draw of a generator.
    """
    key = json.dumps({"dataset": dataset_spec, "shape": list(data.shape), "classes": len(data.classes),
                      "data": data.fingerprint(), **RECIPE}, sort_keys=True)
    digest = hashlib.sha256(key.encode()).hexdigest()[:12]
    stem = "".join(c if c.isalnum() or c in "-_" else "_" for c in dataset_spec)
    base = cache_dir / "classifier" / f"{stem}-{digest}"
    return base.with_suffix(".pt"), base.with_suffix(".json")


def obtain(context: CellContext) -> tuple[nn.Module, dict[str, Any]]:
    """The reference classifier of ``context``'s dataset on its device, in eval mode, and its facts.

    Loaded from the cache when there, trained (and cached) otherwise. The caller's random streams
    are left as they were.
    """
    with torch.random.fork_rng(devices=[]):
        model, facts = _load_or_train(context)
    if facts.get("at_chance"):
        print(f"warning: the reference classifier for {context.dataset_spec} is at chance (test accuracy "
              f"{facts['reference_accuracy']:.4f}, chance {facts['chance']:.4f}): Classifier Accuracy is not scored "
              "there", file=sys.stderr, flush=True)
    return model, facts


def describe_training(facts: dict[str, Any]) -> str:
    """``1,404 steps (6.0 epochs)``: how long the classifier behind ``facts`` trained."""
    if "steps" not in facts:  # a classifier cached by recipe 1, which counted epochs
        return f"{facts['recipe']['epochs']} epochs"
    return f"{facts['steps']:,} steps ({facts['epochs']:.1f} epochs)"


def at_chance_text(facts: dict[str, Any]) -> str:
    """``reference classifier at chance (0.10)``: its test accuracy, for the column and the warning."""
    return f"reference classifier at chance ({facts['reference_accuracy']:.2f})"


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def facts_problem(facts: Any) -> str | None:
    """Why ``facts`` (read from a cache file) are not the facts of a classifier of this ``RECIPE``; None when they are.

    The cache is a file anyone can edit and any version may have written: a wrong type read as trusted
    fails every later cell, or quietly drops the Original Image row.
    """
    if not isinstance(facts, dict):
        return f"holds a JSON {type(facts).__name__}, not an object of facts"
    if facts.get("recipe") != RECIPE:
        return "has another recipe than this aeframe's" if "recipe" in facts else "has no recipe"
    for name, (low, high) in _FACT_RANGES.items():
        value = facts.get(name)
        if not (_number(value) and low <= value <= high):
            return f"has {name} {json.dumps(value)[:40]}, not a number in [{low:g}, {high:g}]"
    for name in ("steps", "batch"):
        value = facts.get(name)
        if not (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
            return f"has {name} {json.dumps(value)[:40]}, not a whole number of at least 1"
    if not isinstance(facts.get("at_chance"), bool):
        return f"has at_chance {json.dumps(facts.get('at_chance'))[:40]}, not true or false"
    return None


def _read_facts(facts_file: Path) -> tuple[dict[str, Any] | None, str | None]:
    try:
        facts = json.loads(facts_file.read_text())
    except (OSError, ValueError) as exc:  # UnicodeDecodeError is a ValueError
        return None, f"cannot be read ({type(exc).__name__})"
    problem = facts_problem(facts)
    return (None, problem) if problem else (facts, None)


def _load_weights(weights: Path, model: nn.Module) -> str | None:
    """Load the cached ``weights`` into ``model``; why they cannot be used, or None."""
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated, foreign or of another torch: damaged files fail in many ways
        return f"cannot be read ({type(exc).__name__})"
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        return "holds no state dict of tensors"
    try:
        model.load_state_dict(state)  # strict: this recipe's layers, names and shapes
    except RuntimeError:
        return "does not fit this recipe's network"
    if not all(bool(torch.isfinite(v).all()) for v in state.values() if v.is_floating_point()):
        return "holds weights that are not finite"
    return None


def _cached(weights: Path, facts_file: Path, model: nn.Module) -> tuple[dict[str, Any] | None, str | None]:
    """The cached facts, with ``model`` given the cached weights; else None and why the entry cannot be
    used (None too when there is no entry at all)."""
    if not (weights.exists() or facts_file.exists()):
        return None, None
    for path in (facts_file, weights):
        if not path.is_file():
            return None, f"{path} is missing"
    facts, problem = _read_facts(facts_file)
    if problem is not None:
        return None, f"{facts_file} {problem}"
    problem = _load_weights(weights, model)
    return (facts, None) if problem is None else (None, f"{weights} {problem}")


def _warn(text: str) -> None:
    print(f"warning: {text}", file=sys.stderr, flush=True)


def _cannot_keep(exc: OSError) -> None:
    """A cache that cannot be written costs the next run a training, not this run's cells."""
    _warn(f"cannot keep the reference classifier in the cache: {exc.filename}: {exc.strerror or exc}; this run "
          f"uses it from memory and the next trains it again; free space there or point {CACHE_ENV} at another "
          "directory")


def _discard(*paths: Path) -> None:
    for path in paths:
        with contextlib.suppress(OSError):  # what cannot be removed is overwritten, or warned about again
            path.unlink(missing_ok=True)


def _keep(weights: Path, facts_file: Path, model: nn.Module, facts: dict[str, Any]) -> None:
    """Cache the classifier: the weights first, so that facts without weights are never found."""
    state = {k: v.cpu() for k, v in model.state_dict().items()}
    try:
        write_atomically(weights, lambda partial: torch.save(state, partial))
        write_atomically(facts_file, lambda partial: partial.write_text(json.dumps(facts, indent=2)))
    except OSError as exc:
        _discard(weights)  # weights without facts are no entry: the next run would only warn about them
        _cannot_keep(exc)


def _load_or_train(context: CellContext) -> tuple[nn.Module, dict[str, Any]]:
    data: ImageData = context.load_dataset(context.dataset_spec)
    weights, facts_file = cache_paths(context.cache_dir, context.dataset_spec, data)
    model = reference_classifier(data.shape[0], len(data.classes))
    # Judged only under the lock: out of it, another process may be between writing the weights and the facts.
    facts, _ = _cached(weights, facts_file, model)
    if facts is not None:
        return model.to(context.device).eval(), facts
    with context.deriving(weights, _cannot_keep) as locked:
        facts, problem = _cached(weights, facts_file, model)  # another process may have trained it
        if facts is not None:
            return model.to(context.device).eval(), facts
        if problem is not None:
            _warn(f"ignoring the cached reference classifier: {problem}; training it again")
            _discard(weights, facts_file)
        model, facts = train_reference(data, context.device, context.dataset_spec)
        if locked:
            _keep(weights, facts_file, model, facts)
    return model.eval(), facts
