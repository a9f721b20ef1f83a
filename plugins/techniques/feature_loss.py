"""Feature Loss (seed-protocol.md sections 2.6 and 3.2): the Baseline trained with a VGG feature loss.

The loss itself and the VGG16-bn it runs through are in :mod:`aeframe_builtins.techniques.vgg_loss`. The
model and the schedule are the Baseline's; the second one-cycle run's rate is the study's for this
technique (1e-4 on the MNIST family, 1e-3 elsewhere), declared as data.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Callable

from aeframe import CellContext, Param, Technique, TechniqueUnavailable, hookimpl
from aeframe_builtins.techniques.names import FEATURE_LOSS
from aeframe_builtins.techniques.study_rates import declared_rates

if TYPE_CHECKING:
    from torch import nn

NAME = FEATURE_LOSS

# Index in vgg16_bn().features of every ReLU, with its name in the VGG paper's block numbering.
RELUS = {
    2: "relu1_1", 5: "relu1_2",
    9: "relu2_1", 12: "relu2_2",
    16: "relu3_1", 19: "relu3_2", 22: "relu3_3",
    26: "relu4_1", 29: "relu4_2", 32: "relu4_3",
    36: "relu5_1", 39: "relu5_2", 42: "relu5_3",
}


class FeatureLoss(Technique):
    name = NAME
    cuda_graphs = True
    title = "Feature Loss"
    in_study = True
    description = "the Baseline trained with the study's VGG16-bn feature + Gram loss (relu1_2, relu2_2, relu3_3)"
    params = (
        Param("layers", "ints", (5, 12, 22),
              "vgg16_bn.features indices of the ReLUs compared (5, 12, 22 = relu1_2, relu2_2, relu3_3)"),
        Param("layer_weights", "floats", (30.0, 20.0, 10.0), "weight of each layer's feature MSE, one per layer"),
        Param("gram", float, 5000.0, "Gram-matrix MSE weight, multiplied by each layer's weight squared"),
        Param("pixel", float, 1.0, "weight of the pixel MSE between output and target"),
        Param("net", str, "imagenet", "VGG16-bn weights: imagenet (trained) or random (untrained, seeded; offline)",
              choices=("imagenet", "random")),
        Param("weights", str, "", "a vgg16_bn state dict file to use instead of torchvision's ImageNet checkpoint"),
    )
    base = "baseline"
    learning_rates = declared_rates(NAME)

    def check_params(self, params: dict[str, Any]) -> None:
        """Refuse settings that are valid one by one but not together."""
        layers, weights = params["layers"], params["layer_weights"]
        if len(layers) != len(weights):
            raise ValueError(
                f"layers has {len(layers)} entries but layer_weights has {len(weights)}; give one weight per layer"
            )
        wrong = [i for i in layers if i not in RELUS]
        if wrong:
            valid = ", ".join(f"{i} ({name})" for i, name in RELUS.items())
            raise ValueError(
                f"layers {', '.join(map(str, wrong))} {'is' if len(wrong) == 1 else 'are'} not a ReLU of "
                f"vgg16_bn.features; choose from {valid}"
            )
        weights_given = {"layer_weights": params["layer_weights"], "gram": (params["gram"],),
                         "pixel": (params["pixel"],)}
        for key, values in weights_given.items():
            if any(not math.isfinite(v) or v < 0 for v in values):
                raise ValueError(f"{key}={','.join(f'{v:g}' for v in values)}: weights must be finite and 0 or more")
        if not any(params["layer_weights"]) and params["pixel"] == 0:
            raise ValueError("every weight is 0, so the loss would be 0 whatever the model does; give a positive "
                             "layer_weights or pixel")
        if params["weights"] and params["net"] == "random":
            raise ValueError(
                "weights=PATH gives trained VGG weights and net=random an untrained VGG; give one or the other"
            )

    def stand_in(self, params: dict[str, Any]) -> tuple[dict[str, Any], str] | None:
        if params["net"] != "imagenet" or params["weights"]:
            return None
        return ({"net": "random"},
                "its features come from an untrained VGG16-bn, standing in for the ImageNet-trained one, which "
                "could not be had here; where it can, the same command trains the study's row")

    def build_loss(self, ctx: CellContext) -> nn.Module:
        """The feature loss, built on the CPU; the runner moves it to the cell's device with the model."""
        channels = ctx.shape[0]
        if channels not in (1, 3):
            raise TechniqueUnavailable(
                f"{NAME} compares images through VGG16-bn, which takes RGB or grey images; "
                f"{ctx.dataset} has {channels} channels"
            )
        from aeframe_builtins.techniques.vgg_loss import VGGFeatureLoss, vgg16_bn_features

        p = ctx.params
        features = vgg16_bn_features(p["net"], p["weights"], ctx.seed, depth=max(p["layers"]) + 1)
        return VGGFeatureLoss(features, p["layers"], p["layer_weights"], gram=p["gram"], pixel=p["pixel"])


@hookimpl
def register_techniques(register: Callable[..., None]) -> None:
    """Register ``feature-loss``."""
    register(FeatureLoss())
