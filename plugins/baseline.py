"""The study's Baseline autoencoder (seed-protocol.md section 2.2) trained with its protocol.

For a 3x32x32 input: two conv stages that pool to 16x16 and 8x8, a 1000-d linear bottleneck, and a
decoder of two nearest-neighbour upsample blocks, clamped to [0, 1]: 3,080,629 parameters. Other
image sizes scale the pooled grids with the side (H/2, H/4), so the same design serves 1x28x28.
"""
from __future__ import annotations

from torch import nn

from aeframe import CellContext, Param, Technique, hookimpl
from aeframe.protocol import study_schedule
from aeframe.schedule import Schedule
from aeframe_builtins.layers import Autoencoder, study_decoder, study_encoder
from aeframe_builtins.study_rates import second_run_lr


def baseline_autoencoder(shape: tuple[int, int, int], latent: int = 1000) -> Autoencoder:
    return Autoencoder(shape[0], study_encoder(shape, latent), study_decoder(shape, latent))


class Baseline(Technique):
    name = "baseline"
    title = "Baseline"
    description = "the study's conv autoencoder: 1000-d linear bottleneck, nearest-neighbour upsampling, MSE loss"
    params = (Param("latent", int, 1000, "size of the bottleneck vector"),)
    reference = True  # every other row is compared with the Baseline, as in the study

    def build_model(self, ctx: CellContext) -> nn.Module:
        return baseline_autoencoder(ctx.shape, latent=ctx.params["latent"])

    def build_loss(self, ctx: CellContext):
        return nn.functional.mse_loss

    def build_schedule(self, ctx: CellContext) -> Schedule:
        return study_schedule(second_lr=second_run_lr(self.name, ctx.dataset))


@hookimpl
def register_techniques(register):
    register(Baseline())
