"""Where the pretrained ResNet34 body's weights come from, besides ImageNet: loading a state dict
into the body, and pretraining the body as a classifier of a registered dataset, cached for reuse.

Imported only when ``pretrained-resnet`` builds its model: it needs torch, which registering the
techniques must not import.
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
    STUDY_BATCH_SIZE,
    STUDY_FIRST_LR,
    CellContext,
    DatasetUnavailable,
    ImageData,
    ImageNetNormalize,
    Stepper,
    TechniqueUnavailable,
    adamw,
    epoch_order,
    one_cycle_beta1,
    one_cycle_lr,
    resize_uint8,
    to_unit,
    write_atomically,
)
from aeframe_builtins.techniques.names import PRETRAINED
from aeframe_builtins.techniques.pretrained import load_weights_file
from aeframe_builtins.techniques.resnet_model import CHANNELS, LATENT, resnet34_body, resnet_encoder

# Fixed, so that a body pretrained once serves every later cell, whatever its seed.
PRETRAIN_SEED = 0
# Part of the cache key: change it whenever the classifier recipe below changes.
PRETRAIN_RECIPE = {"recipe": 1, "batch": STUDY_BATCH_SIZE, "max_lr": STUDY_FIRST_LR, "seed": PRETRAIN_SEED, "flip": True}
# What moves the cache directory (aeframe's workspace reads it): the way out of a cache that cannot be written.
CACHE_ENV = "AEFRAME_CACHE"
# Bodies pretrained in this process that the cache could not keep, by cache file, with what they cost:
# later cells of the run reuse them instead of pretraining again (and failing to keep them again).
_UNKEPT: dict[Path, tuple[dict[str, torch.Tensor], float]] = {}


def _prefix_of_body(state: dict[str, torch.Tensor]) -> str | None:
    """The key prefix under which ``state`` holds a ResNet body ('' for torchvision's own files)."""
    for key in state:
        if key.endswith("conv1.weight"):
            prefix = key[: -len("conv1.weight")]
            if f"{prefix}layer1.0.conv1.weight" in state:
                return prefix
    return None


def load_body(body: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Load ResNet34 weights into ``body`` from a state dict of torchvision's resnet34 or of the body alone.

    Also accepted: the same keys under a prefix (``module.`` of DataParallel, ``encoder.body.`` of
    a saved autoencoder). Anything else is refused naming ``source``.
    """
    prefix = _prefix_of_body(state)
    if prefix is None:
        raise TechniqueUnavailable(
            f"{PRETRAINED}: {source} holds no ResNet34 weights (no conv1.weight and layer1.0.conv1.weight keys); "
            "give a state dict of torchvision's resnet34, or of its layers conv1 ... layer4"
        )
    stripped = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    own = {k: v for k, v in stripped.items() if not k.startswith("fc.")}
    try:
        body.load_state_dict(own, strict=True)
    except RuntimeError as exc:
        detail = " ".join(str(exc).split())
        raise TechniqueUnavailable(f"{PRETRAINED}: {source} does not fit ResNet34 ({detail[:300]})") from exc


def pretrain_cache_file(cache_dir: Path, dataset: str, fingerprint: str, shape: tuple[int, int, int],
                        epochs: int) -> Path:
    """Where the body pretrained on ``dataset`` (whose data has ``fingerprint``) for this cell shape and
    length is kept: other data, even under the same name, is another file."""
    key = json.dumps({**PRETRAIN_RECIPE, "dataset": dataset, "data": fingerprint, "shape": list(shape),
                      "epochs": epochs}, sort_keys=True)
    digest = hashlib.sha256(key.encode()).hexdigest()[:10]
    side = "x".join(str(s) for s in shape)
    return cache_dir / PRETRAINED / f"resnet34-body-{dataset}-{side}-{epochs}ep-{digest}.pt"


def _say(text: str) -> None:
    print(f"{PRETRAINED}: {text}", file=sys.stderr, flush=True)


def _as_cell_images(images: torch.Tensor, shape: tuple[int, int, int]) -> torch.Tensor:
    """uint8 images converted to the cell's channels (grey repeated, colour to luma) and side."""
    channels, side = shape[0], shape[1]
    if images.shape[1] != channels:
        if channels == 3:
            images = images.expand(-1, 3, -1, -1)
        else:
            luma = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
            images = (images.float() * luma).sum(1, keepdim=True).round_().clamp_(0, 255).to(torch.uint8)
    if images.shape[-1] != side or images.shape[-2] != side:
        images = resize_uint8(images.contiguous(), side)
    return images.contiguous()


def _accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    model.eval()
    correct = 0
    with torch.no_grad():
        for start in range(0, len(images), 512):
            logits = model(to_unit(images[start : start + 512]))
            correct += int((logits.argmax(1) == labels[start : start + 512]).sum())
    model.train()
    return correct / max(len(images), 1)


def _classified(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The classification loss of ``images`` and the logits it came from."""
    logits = model(images)
    return nn.functional.cross_entropy(logits, labels), logits


def train_classifier_body(data: ImageData, name: str, shape: tuple[int, int, int], epochs: int,
                          device: torch.device) -> dict[str, torch.Tensor]:
    """Train ResNet34 + concat pool + linear head to classify ``data``; return the body's weights (on CPU).

    The input goes through the autoencoder's own front (ImageNet normalisation, grey to RGB) at the
    cell's shape, so the body learns on what it will see. The recipe is the study's protocol
    without its lighting: AdamW, one one-cycle run at 3e-3, batch 128 in a fresh random order each
    epoch, random horizontal flips (the study's classifiers flipped too). Seeded with
    ``PRETRAIN_SEED``, leaving the caller's random state as it was.
    """
    if data.shape[0] not in (1, 3):
        raise TechniqueUnavailable(f"{PRETRAINED}: cannot pretrain on {name}: " + CHANNELS.format(data.shape[0]))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(PRETRAIN_SEED)
        encoder = resnet_encoder(shape[0])
        head = nn.Linear(LATENT, len(data.classes))
    model = nn.Sequential(ImageNetNormalize(shape[0]), encoder, head).to(device)
    images = _as_cell_images(data.train.images, shape).to(device)
    labels = data.train.labels.to(device)
    steps_per_epoch = len(images) // STUDY_BATCH_SIZE
    if steps_per_epoch == 0:
        raise TechniqueUnavailable(
            f"{PRETRAINED}: {name} has {len(images)} training images, "
            f"fewer than one batch of {STUDY_BATCH_SIZE} to pretrain on"
        )
    generator = torch.Generator(device=device).manual_seed(PRETRAIN_SEED)
    optimizer = adamw([{"params": list(model.parameters())}])
    stepper = Stepper()
    total, step = epochs * steps_per_epoch, 0
    model.train()
    for epoch in range(1, epochs + 1):
        started = time.monotonic()
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), device=device, dtype=torch.long)
        for indices in epoch_order(len(images), STUDY_BATCH_SIZE, generator, device):
            q = step / total
            for group in optimizer.param_groups:
                group["lr"] = one_cycle_lr(q, STUDY_FIRST_LR)
                group["betas"] = (one_cycle_beta1(q), group["betas"][1])
            x = to_unit(images[indices])
            flip = torch.rand((len(x), 1, 1, 1), generator=generator, device=device) < 0.5
            x = torch.where(flip, x.flip(3), x)
            target = labels[indices]
            loss, logits = stepper.step(optimizer, lambda: _classified(model, x, target))
            loss_sum += loss.detach()
            correct += (logits.detach().argmax(1) == target).sum()
            step += 1
        seen = steps_per_epoch * STUDY_BATCH_SIZE
        _say(f"pretraining on {name}: epoch {epoch}/{epochs} loss {float(loss_sum) / steps_per_epoch:.4f} "
             f"train accuracy {int(correct) / seen:.3f} ({time.monotonic() - started:.0f}s)")
    if len(data.test):
        test_images = _as_cell_images(data.test.images, shape).to(device)
        _say(f"pretraining on {name}: test accuracy {_accuracy(model, test_images, data.test.labels.to(device)):.3f}")
    return {k: v.detach().cpu().clone() for k, v in encoder.body.state_dict().items()}


def pretrained_on_dataset(ctx: CellContext, name: str, epochs: int) -> tuple[dict[str, torch.Tensor], str]:
    """The body's weights from classifying dataset ``name``: from the cache, else trained and cached.

    The dataset is loaded first even when the cache holds a body (once per run: the workspace keeps
    it), since its fingerprint is part of the cache key.
    """
    try:
        data = ctx.load_dataset(name)
    except DatasetUnavailable as exc:  # an unknown name, or a dataset whose files are not here
        raise TechniqueUnavailable(
            f"{PRETRAINED}[weights={name}] cannot pretrain on dataset {name}: {exc}; weights takes imagenet, "
            "weights=PATH to a state-dict file (a path with '/' or ending in .pt/.pth), or weights=DATASET"
        ) from exc
    path = pretrain_cache_file(ctx.cache_dir, name, data.fingerprint(), ctx.shape, epochs)
    what = (f"pretrained the ResNet34 body as a classifier of {name} ({len(data.train):,} images, "
            f"{epochs} epoch{'s' if epochs != 1 else ''})")
    if path in _UNKEPT:
        state, seconds = _UNKEPT[path]
        ctx.prepared_outside_budget(what, seconds, reused=True)
        return state, f"{path} (kept in memory: the cache could not hold it)"
    # Judged only under the lock: out of it, a file being replaced is not worth a warning.
    state = _cached_body(path, what, ctx, quiet=True)
    if state is not None:
        return state, str(path)
    with ctx.deriving(path, _cannot_keep) as locked:
        state = _cached_body(path, what, ctx)  # another process sharing the cache may have pretrained it
        if state is not None:
            return state, str(path)
        _say(f"pretraining the ResNet34 body as a classifier of {name} ({len(data.train)} images, {epochs} epochs); "
             f"kept in {path} for later cells")
        started = time.perf_counter()
        state = train_classifier_body(data, name, ctx.shape, epochs, ctx.device)
        seconds = time.perf_counter() - started
        if not (locked and _keep(path, state, seconds)):
            _UNKEPT[path] = (state, seconds)
    ctx.prepared_outside_budget(what, seconds)
    return state, str(path)


def _cannot_keep(exc: OSError) -> None:
    """A cache that cannot be written costs the next run a pretraining, not this run's cells."""
    _say(f"warning: cannot keep the pretrained body in the cache: {exc.filename}: {exc.strerror or exc}; this run "
         f"uses it from memory and the next pretrains it again; free space there or point {CACHE_ENV} at another "
         "directory")


def _keep(path: Path, state: dict[str, torch.Tensor], seconds: float) -> bool:
    """Cache the body and what it cost; False (having warned) when the cache cannot hold them.

    The cost first: a reader that finds the body finds its cost beside it.
    """
    try:
        write_atomically(_cost_file(path), lambda partial: partial.write_text(json.dumps({"seconds": seconds})))
        write_atomically(path, lambda partial: torch.save(state, partial))
    except OSError as exc:
        with contextlib.suppress(OSError):
            _cost_file(path).unlink(missing_ok=True)
        _cannot_keep(exc)
        return False
    return True


def body_problem(state: dict[str, Any]) -> str | None:
    """Why ``state`` (read from the cache) is not a ResNet34 body's weights; None when it is.

    Compared with a body made on the meta device, which allocates nothing.
    """
    with torch.device("meta"):
        expected = resnet34_body().state_dict()
    if set(state) != set(expected):
        return "does not hold the ResNet34 body's layers"
    for key, value in state.items():
        if not isinstance(value, torch.Tensor) or value.shape != expected[key].shape:
            return f"has {key} of another shape than the ResNet34 body's"
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            return f"has {key} with weights that are not finite"
    return None


def _cached_body(path: Path, what: str, ctx: CellContext, quiet: bool = False) -> dict | None:
    """The pretrained body kept at ``path``, reported as reused work; None when it is not there or unusable
    (unless ``quiet``, said, and the file removed: it is pretrained again)."""
    if not path.is_file():
        return None
    try:
        state = load_weights_file(path, PRETRAINED)
        problem = body_problem(state)
    except TechniqueUnavailable:
        problem = "cannot be read"
    if problem is not None:
        if not quiet:
            _say(f"warning: ignoring the cached {path}: it {problem}; pretraining again")
            with contextlib.suppress(OSError):
                path.unlink()
        return None
    _say(f"using cached {path}")
    ctx.prepared_outside_budget(what, _cost_of(path), reused=True)
    return state


def _cost_file(path: Path) -> Path:
    return path.with_suffix(".cost.json")


def _cost_of(path: Path) -> float | None:
    """The seconds the cached body took to pretrain; None for a body cached before they were kept, or a cost
    that is no number of seconds (it is shown in the table, never trusted)."""
    try:
        seconds = json.loads(_cost_file(path).read_text())["seconds"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    ok = isinstance(seconds, (int, float)) and not isinstance(seconds, bool) and math.isfinite(seconds) and seconds >= 0
    return float(seconds) if ok else None
