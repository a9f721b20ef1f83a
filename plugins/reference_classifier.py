"""The reference classifier behind Classifier Accuracy: its recipe, training and cache.

Trained once per dataset (and view) on the original training split and cached; its accuracy on
the original test images is the table's "Original Image" reference. The study used an
ImageNet-pretrained ResNet34; this one is a small CNN trained from scratch, so it needs nothing
from the network and trains in minutes on a CPU. Imported only when the metric is prepared: it
needs torch, which listing plugins must not import.
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from aeframe import CellContext, ImageData, epoch_order, one_cycle_beta1, one_cycle_lr, to_unit

# Everything that decides the classifier; part of the cache key, and shown under the tables.
RECIPE = {
    "model": "3 conv3x3-BN-ReLU blocks (32, 64, 128), each followed by a 2x2 max-pool; global average pool; linear",
    "epochs": 6,
    "batch": 256,
    "optimizer": "AdamW betas (0.9, 0.99), weight decay 5e-4, one-cycle to 4e-3",
    "augmentation": "random translation by up to 2 pixels",
    "label_smoothing": 0.1,
    "precision": "bf16 autocast, channels_last",
    "seed": 0,
    "version": 1,
}
_EVAL_BATCH = 1000


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


def train_reference(data: ImageData, device: torch.device, name: str) -> tuple[nn.Module, dict[str, Any]]:
    """Train the reference classifier on ``data``'s training split; report its test accuracy.

    Seeds torch's global generator (callers that must keep theirs wrap this in ``fork_rng``).
    """
    torch.manual_seed(RECIPE["seed"])
    model = reference_classifier(data.shape[0], len(data.classes)).to(device, memory_format=torch.channels_last)
    images, labels = data.train.images.to(device), data.train.labels.to(device)
    gen = torch.Generator(device=device).manual_seed(RECIPE["seed"])
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.99), weight_decay=5e-4)
    steps = len(images) // RECIPE["batch"]
    total = RECIPE["epochs"] * steps
    started, step = time.perf_counter(), 0
    for epoch in range(1, RECIPE["epochs"] + 1):
        model.train()
        loss_sum = torch.zeros((), device=device)
        for indices in epoch_order(len(images), RECIPE["batch"], gen, device):
            q = step / total
            for group in optimizer.param_groups:
                group["lr"] = one_cycle_lr(q, 4e-3)
                group["betas"] = (one_cycle_beta1(q), group["betas"][1])
            x = _translate(to_unit(images[indices]), gen).contiguous(memory_format=torch.channels_last)
            # bf16 halves the cost on CPUs with bf16 units and on GPUs; the accuracy is unaffected.
            with torch.autocast(device.type, dtype=torch.bfloat16):
                logits = model(x)
            loss = nn.functional.cross_entropy(logits.float(), labels[indices], label_smoothing=RECIPE["label_smoothing"])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_sum += loss.detach()
            step += 1
        print(f"classifier-accuracy: reference classifier for {name}: epoch {epoch}/{RECIPE['epochs']} "
              f"loss {float(loss_sum) / max(steps, 1):.4f} ({time.perf_counter() - started:.0f}s)",
              file=sys.stderr, flush=True)
    seconds = time.perf_counter() - started
    test_accuracy = accuracy(model, data.test.images.to(device), data.test.labels.to(device))
    print(f"classifier-accuracy: reference classifier for {name}: test accuracy {test_accuracy:.4f}",
          file=sys.stderr, flush=True)
    return model, {"reference_accuracy": test_accuracy, "train_seconds": seconds, "recipe": RECIPE}


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
        return _load_or_train(context)


def _load_or_train(context: CellContext) -> tuple[nn.Module, dict[str, Any]]:
    data: ImageData = context.load_dataset(context.dataset_spec)
    weights, facts_file = cache_paths(context.cache_dir, context.dataset_spec, data)
    model = reference_classifier(data.shape[0], len(data.classes))
    if weights.is_file() and facts_file.is_file():
        try:
            model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
            return model.to(context.device).eval(), json.loads(facts_file.read_text())
        except Exception:  # a damaged cache file is trained again, not trusted
            pass
    model, facts = train_reference(data, context.device, context.dataset_spec)
    weights.parent.mkdir(parents=True, exist_ok=True)
    partial = weights.with_suffix(f".tmp{os.getpid()}")
    torch.save({k: v.cpu() for k, v in model.state_dict().items()}, partial)
    partial.replace(weights)  # whole file or none: a killed run leaves no half-written cache
    facts_file.write_text(json.dumps(facts, indent=2))
    return model.eval(), facts
