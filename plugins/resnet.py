"""The study's ResNet34 autoencoders (seed-protocol.md sections 2.5 and 4): "Pretraining" and "Resnet w/o pretrain".

Both use torchvision's ResNet34 without its pooling and classifier (conv1 ... layer4) as the
encoder, then a max-and-average concat pool (1024-d for 512 channels; on a 32x32 input the map is
1x1, so the two halves are equal) and the Baseline's decoder from 1024 features. The model is
21,284,672 + 1,577,433 parameters at 3x32x32.

``resnet`` trains everything from torchvision's random initialisation with the study protocol.
``pretrained-resnet`` starts the body from other weights and freezes all of it (BatchNorm affine
included) for the first run; BatchNorm stays in train mode, so its running statistics still
follow the new data, as in the study. The second run unfreezes everything with a fresh optimizer
and the study's 10 parameter groups at geometric rates 1e-6 ... 1e-2. Its weights come from
ImageNet (the study's choice), from a state-dict file, or from pretraining the body as a
classifier on another registered dataset here, cached for reuse.
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from collections import OrderedDict
from pathlib import Path

import torch
from torch import nn

from aeframe import CellContext, DatasetUnavailable, ImageData, Param, Technique, TechniqueUnavailable, hookimpl
from aeframe.data import epoch_order, resize_uint8, to_unit
from aeframe.protocol import (
    STUDY_BATCH_SIZE,
    STUDY_FIRST_LR,
    ImageNetNormalize,
    adamw,
    one_cycle_beta1,
    one_cycle_lr,
    study_schedule,
)
from aeframe.schedule import Schedule
from aeframe_builtins.layers import Autoencoder, study_decoder
from aeframe_builtins.pretrained import hub_checkpoints, imagenet_weights, load_weights_file
from aeframe_builtins.study_rates import DISCRIMINATIVE, geometric, second_run_lr

LATENT = 1024
# torchvision's ResNet34_Weights.IMAGENET1K_V1 (a test checks they agree).
WEIGHTS_URL = "https://download.pytorch.org/models/resnet34-b627a593.pth"
STUDY_CHECKPOINT = "resnet34-333f7ec4.pth"  # the older file the study downloaded (torchvision 0.5)
BODY_LAYERS = ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4")
PRETRAINED = "pretrained-resnet"
CHANNELS = "the ResNet34 encoder takes grey or RGB images, not {} channels"
# Fixed, so that a body pretrained once serves every later cell, whatever its seed.
PRETRAIN_SEED = 0
# Two epochs reach ~99 % test accuracy on the default shapes in about 1-2 minutes on a 2-core CPU.
PRETRAIN_EPOCHS = 2
# Part of the cache key: change it whenever the classifier recipe below changes.
PRETRAIN_RECIPE = {"recipe": 1, "batch": STUDY_BATCH_SIZE, "max_lr": STUDY_FIRST_LR, "seed": PRETRAIN_SEED, "flip": True}


class ResnetBody(nn.Sequential):
    """ResNet34's conv1 ... layer4 under torchvision's names, so its state dict keys are torchvision's."""


class ConcatPool(nn.Module):
    """Global max pool and global average pool, concatenated on channels (max first)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x.amax(dim=(2, 3), keepdim=True), x.mean(dim=(2, 3), keepdim=True)], dim=1)


class GreyToRGB(nn.Module):
    """Repeats a single grey channel three times: the body's first convolution wants RGB."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.expand(-1, 3, -1, -1)


def resnet34_body() -> ResnetBody:
    """A randomly initialised ResNet34 without avgpool and fc (torchvision's init, global RNG)."""
    from torchvision.models import resnet34  # deferred: importing torchvision slows every command

    children = dict(resnet34(weights=None).named_children())
    return ResnetBody(OrderedDict((name, children[name]) for name in BODY_LAYERS))


def resnet_encoder(channels: int) -> nn.Sequential:
    """The body, then the concat pool and a flatten to 1024 features."""
    layers: list[tuple[str, nn.Module]] = [("grey_to_rgb", GreyToRGB())] if channels == 1 else []
    layers += [("body", resnet34_body()), ("pool", ConcatPool()), ("flatten", nn.Flatten())]
    return nn.Sequential(OrderedDict(layers))


def resnet_autoencoder(shape: tuple[int, int, int]) -> Autoencoder:
    """The study's ResNet34 autoencoder for images of ``shape`` (C, H, W), C being 1 or 3."""
    if shape[0] not in (1, 3):
        raise ValueError(CHANNELS.format(shape[0]))
    decoder = study_decoder(shape, LATENT)  # first, so that an unusable shape fails before the big body is built
    return Autoencoder(shape[0], resnet_encoder(shape[0]), decoder)


def find_body(model: nn.Module) -> ResnetBody:
    """The one ResNet body inside ``model`` (which other techniques' wrappers may have wrapped)."""
    bodies = [m for m in model.modules() if isinstance(m, ResnetBody)]
    if len(bodies) != 1:
        raise ValueError(f"expected one ResNet34 body in the model, found {len(bodies)}")
    return bodies[0]


def study_groups(model: nn.Module) -> list[list[nn.Parameter]]:
    """The study's 10 parameter groups: conv1, bn1, relu, maxpool, layer1 ... layer4, concat pool, decoder.

    relu, maxpool and the pool hold no parameters; their groups stay empty (AdamW accepts empty
    groups) so that every real group keeps the rate the study gave it. The last group holds every
    parameter outside the body: the decoder, plus whatever a wrapping technique added.
    """
    body = find_body(model)
    groups = [list(getattr(body, name).parameters()) for name in BODY_LAYERS]
    groups.append([])  # the concat pool and flatten
    in_body = {id(p) for p in body.parameters()}
    groups.append([p for p in model.parameters() if id(p) not in in_body])
    return groups


def unfreeze(model: nn.Module) -> None:
    model.requires_grad_(True)


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


def is_path(text: str) -> bool:
    """Whether ``weights=text`` names a file rather than a dataset."""
    return "/" in text or text.endswith((".pt", ".pth")) or Path(text).expanduser().is_file()


def pretrain_cache_file(cache_dir: Path, dataset: str, shape: tuple[int, int, int], epochs: int) -> Path:
    """Where the body pretrained on ``dataset`` for this cell shape and length is kept."""
    key = json.dumps({**PRETRAIN_RECIPE, "dataset": dataset, "shape": list(shape), "epochs": epochs}, sort_keys=True)
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
            logits = model(x)
            loss = nn.functional.cross_entropy(logits, labels[indices])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_sum += loss.detach()
            correct += (logits.detach().argmax(1) == labels[indices]).sum()
            step += 1
        seen = steps_per_epoch * STUDY_BATCH_SIZE
        _say(f"pretraining on {name}: epoch {epoch}/{epochs} loss {float(loss_sum) / steps_per_epoch:.4f} "
             f"train accuracy {int(correct) / seen:.3f} ({time.monotonic() - started:.0f}s)")
    if len(data.test):
        test_images = _as_cell_images(data.test.images, shape).to(device)
        _say(f"pretraining on {name}: test accuracy {_accuracy(model, test_images, data.test.labels.to(device)):.3f}")
    return {k: v.detach().cpu().clone() for k, v in encoder.body.state_dict().items()}


def pretrained_on_dataset(ctx: CellContext, name: str, epochs: int) -> tuple[dict[str, torch.Tensor], str]:
    """The body's weights from classifying dataset ``name``: from the cache, else trained and cached."""
    path = pretrain_cache_file(ctx.cache_dir, name, ctx.shape, epochs)
    if path.is_file():
        try:
            state = load_weights_file(path, PRETRAINED)
        except TechniqueUnavailable:
            _say(f"cannot read the cached {path}; pretraining again")
        else:
            _say(f"using cached {path}")
            return state, str(path)
    try:
        data = ctx.load_dataset(name)
    except DatasetUnavailable as exc:  # an unknown name, or a dataset whose files are not here
        raise TechniqueUnavailable(
            f"{PRETRAINED}[weights={name}] cannot pretrain on dataset {name}: {exc}; weights takes imagenet, "
            "weights=PATH to a state-dict file (a path with '/' or ending in .pt/.pth), or weights=DATASET"
        ) from exc
    _say(f"pretraining the ResNet34 body as a classifier of {name} ({len(data.train)} images, {epochs} epochs); "
         f"kept in {path} for later cells")
    state = train_classifier_body(data, name, ctx.shape, epochs, ctx.device)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
    torch.save(state, partial)
    os.replace(partial, path)  # atomic: an interrupted run never leaves a truncated cache file
    return state, str(path)


def _autoencoder(shape: tuple[int, int, int]) -> Autoencoder:
    # Another channel count is a dataset this model cannot take: skip the cell rather than fail it.
    if shape[0] not in (1, 3):
        raise TechniqueUnavailable(CHANNELS.format(shape[0]))
    return resnet_autoencoder(shape)


class Resnet(Technique):
    name = "resnet"
    title = "Resnet w/o pretrain"
    description = "ResNet34 encoder (randomly initialised, all trainable) + the Baseline's decoder, MSE loss"
    base = "baseline"

    def build_model(self, ctx: CellContext) -> nn.Module:
        return _autoencoder(ctx.shape)

    def build_schedule(self, ctx: CellContext) -> Schedule:
        return study_schedule(second_lr=second_run_lr(self.name, ctx.dataset))


class PretrainedResnet(Technique):
    name = PRETRAINED
    title = "Pretraining"
    description = (
        "ResNet34 encoder from pretrained weights, frozen for run 1, then all unfrozen with 10 groups at 1e-6 ... 1e-2"
    )
    base = "baseline"
    params = (
        Param(
            "weights",
            str,
            "imagenet",
            "where the encoder's weights come from: imagenet (torchvision's ImageNet weights), a PATH to a "
            "state-dict file, or a registered DATASET to pretrain the encoder on as a classifier first (cached)",
        ),
        Param("pretrain_epochs", int, PRETRAIN_EPOCHS, "epochs of classifier pretraining with weights=DATASET"),
    )

    def check_params(self, params: dict) -> None:
        weights, epochs = params["weights"].strip(), params["pretrain_epochs"]
        if not weights:
            raise ValueError("weights is empty; give imagenet, a PATH or a DATASET name")
        if epochs < 1:
            raise ValueError(f"pretrain_epochs={epochs}; give 1 or more")
        if epochs != PRETRAIN_EPOCHS and (weights == "imagenet" or is_path(weights)):
            raise ValueError("pretrain_epochs applies only to weights=DATASET")

    def body_weights(self, ctx: CellContext) -> tuple[dict[str, torch.Tensor], str]:
        """The state dict to start the body from, and where it came from (for messages)."""
        weights = ctx.params["weights"].strip()
        if weights == "imagenet":
            state = imagenet_weights(
                WEIGHTS_URL,
                owner=PRETRAINED,
                alternative=f"{PRETRAINED}[weights=DATASET] pretrains the encoder on a registered dataset "
                "(e.g. weights=shapes)",
                also_accept=(STUDY_CHECKPOINT,),
            )
            return state, f"the ImageNet weights in {hub_checkpoints()}"
        if is_path(weights):
            path = Path(weights).expanduser()
            return load_weights_file(path, PRETRAINED), str(path)
        return pretrained_on_dataset(ctx, weights, ctx.params["pretrain_epochs"])

    def build_model(self, ctx: CellContext) -> nn.Module:
        model = _autoencoder(ctx.shape)
        body = find_body(model)
        state, source = self.body_weights(ctx)
        load_body(body, state, source)
        body.requires_grad_(False)
        return model

    def build_schedule(self, ctx: CellContext) -> Schedule:
        # Run 1 keeps one group at 3e-3: the frozen body gets no gradients, so AdamW leaves it alone.
        return study_schedule(
            second_lr=geometric(*DISCRIMINATIVE, 10), fresh_optimizer=True, on_start=unfreeze, param_groups=study_groups
        )


@hookimpl
def register_techniques(register) -> None:
    """Register ``resnet`` and ``pretrained-resnet``."""
    register(Resnet())
    register(PretrainedResnet())
