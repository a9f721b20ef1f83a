"""The study's ResNet34 autoencoders (seed-protocol.md sections 2.5 and 4): "Pretraining" and "Resnet w/o pretrain".

Both use the model of :mod:`aeframe_builtins.techniques.resnet_model`: torchvision's ResNet34 body, a concat
pool and the Baseline's decoder from 1024 features.

``resnet`` trains everything from torchvision's random initialisation with the study protocol, at
the study's second-run rate for it (declared: 1e-4 on the MNIST family, 1e-3 elsewhere).
``pretrained-resnet`` starts the body from other weights and freezes all of it (BatchNorm affine
included) for the first run; BatchNorm stays in train mode, so its running statistics still
follow the new data, as in the study. The second run unfreezes everything with a fresh optimizer
and the study's 10 parameter groups at geometric rates 1e-6 ... 1e-2 (declared). Its weights come
from ImageNet (the study's choice), from a state-dict file, or from pretraining the body as a
classifier on another registered dataset here, cached for reuse (:mod:`aeframe_builtins.techniques.resnet_weights`).
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from aeframe import CellContext, Param, Technique, TechniqueUnavailable, hookimpl
from aeframe_builtins.techniques.names import PRETRAINED
from aeframe_builtins.techniques.study_rates import SECOND_RUN, declared_rates

if TYPE_CHECKING:
    import torch
    from torch import nn

    from aeframe import Schedule

# torchvision's ResNet34_Weights.IMAGENET1K_V1 (a test checks they agree).
WEIGHTS_URL = "https://download.pytorch.org/models/resnet34-b627a593.pth"
STUDY_CHECKPOINT = "resnet34-333f7ec4.pth"  # the older file the study downloaded (torchvision 0.5)
# Two epochs reach ~99 % test accuracy on the default shapes in about 1-2 minutes on a 2-core CPU.
PRETRAIN_EPOCHS = 2


def is_path(text: str) -> bool:
    """Whether ``weights=text`` names a file rather than a dataset."""
    if "/" in text or text.endswith((".pt", ".pth")):
        return True
    try:
        return Path(text).expanduser().is_file()
    except (OSError, ValueError):  # a name too long for a file (or with a NUL) names none
        return False


def _autoencoder(shape: tuple[int, int, int]) -> nn.Module:
    from aeframe_builtins.techniques.resnet_model import CHANNELS, resnet_autoencoder

    # Another channel count is a dataset this model cannot take: skip the cell rather than fail it.
    if shape[0] not in (1, 3):
        raise TechniqueUnavailable(CHANNELS.format(shape[0]))
    return resnet_autoencoder(shape)


class Resnet(Technique):
    name = "resnet"
    cuda_graphs = True
    title = "Resnet w/o pretrain"
    in_study = True
    description = "ResNet34 encoder (randomly initialised, all trainable) + the Baseline's decoder, MSE loss"
    base = "baseline"
    learning_rates = declared_rates("resnet")

    def build_model(self, ctx: CellContext) -> nn.Module:
        return _autoencoder(ctx.shape)


class PretrainedResnet(Technique):
    name = PRETRAINED
    cuda_graphs = True
    title = "Pretraining"
    in_study = True
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
    learning_rates = declared_rates(PRETRAINED)

    def check_params(self, params: dict[str, Any]) -> None:
        weights, epochs = params["weights"].strip(), params["pretrain_epochs"]
        if not weights:
            raise ValueError("weights is empty; give imagenet, a PATH or a DATASET name")
        if epochs < 1:
            raise ValueError(f"pretrain_epochs={epochs}; give 1 or more")
        if epochs != PRETRAIN_EPOCHS and (weights == "imagenet" or is_path(weights)):
            raise ValueError("pretrain_epochs applies only to weights=DATASET")

    def stand_in(self, params: dict[str, Any]) -> tuple[dict[str, Any], str] | None:
        if params["weights"].strip() != "imagenet":
            return None
        return ({"weights": "shapes"},
                "its ResNet34 encoder is pretrained on Shapes, standing in for the ImageNet weights, which "
                "could not be had here; where they can, the same command trains the study's row")

    def body_weights(self, ctx: CellContext) -> tuple[dict[str, torch.Tensor], str]:
        """The state dict to start the body from, and where it came from (for messages)."""
        from aeframe_builtins.techniques.pretrained import hub_checkpoints, imagenet_weights, load_weights_file
        from aeframe_builtins.techniques.resnet_weights import pretrained_on_dataset

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
        from aeframe_builtins.techniques.resnet_model import find_body
        from aeframe_builtins.techniques.resnet_weights import load_body

        model = _autoencoder(ctx.shape)
        if ctx.inspecting:  # only its shape is looked at: the weights would be thrown away
            return model
        body = find_body(model)
        state, source = self.body_weights(ctx)
        load_body(body, state, source)
        body.requires_grad_(False)
        return model

    def build_schedule(self, ctx: CellContext) -> Schedule:
        from aeframe import study_schedule
        from aeframe_builtins.techniques.resnet_model import study_groups, unfreeze

        # Run 1 keeps one group at 3e-3: the frozen body gets no gradients, so AdamW leaves it alone.
        # Run 2 has one rate per group; its declared rates fill them (and lr= scales them together).
        groups = self.learning_rates[SECOND_RUN].default
        return study_schedule(second_lr=groups, fresh_optimizer=True, on_start=unfreeze, param_groups=study_groups)


@hookimpl
def register_techniques(register: Callable[..., None]) -> None:
    """Register ``resnet`` and ``pretrained-resnet``."""
    register(Resnet())
    register(PretrainedResnet())
