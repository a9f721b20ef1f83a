"""What a model returns, and how that becomes the loss a training step minimises.

A model returns its reconstruction, either alone (a tensor) or as a :class:`ModelOutput` with named
auxiliary loss terms: a VAE's KL divergence, a VQ-VAE's commitment loss, a sparsity penalty. The
technique's loss (the *reconstruction loss*, a part that techniques provide, wrap or replace) compares
only the reconstruction with the target; the model's own terms are added to it by the core. So a
technique that wraps or replaces the loss of a VAE keeps its KL term, and evaluation and the metrics
only ever see the reconstruction.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Mapping

from aeframe.errors import AeframeError

if TYPE_CHECKING:
    import torch

#: The name under which the training curve records the reconstruction loss; no model term may take it.
RECONSTRUCTION = "reconstruction"


@dataclass
class ModelOutput:
    """A model's output with loss terms of its own.

    image: the reconstruction, (N, C, H, W) in [0, 1] like the input: what the loss compares with the
           target, and all that evaluation and the metrics see.
    terms: name -> scalar tensor. Each term is added to the reconstruction loss as it is, so weight it
           in the model (a beta-VAE returns ``beta * kl``). The training curve records every term per
           epoch. A model may return terms in training mode only; evaluation ignores them.
    """

    image: torch.Tensor
    terms: Mapping[str, torch.Tensor] = field(default_factory=dict)


def as_output(value: Any) -> ModelOutput:
    """``value`` as a :class:`ModelOutput`: a tensor becomes one without terms."""
    if isinstance(value, ModelOutput):
        return value
    if hasattr(value, "shape") and hasattr(value, "dtype"):
        return ModelOutput(value)
    raise AeframeError(
        f"a model returned a {type(value).__name__}; return the reconstruction as a tensor, or "
        "aeframe.ModelOutput(image, terms={...}) to add loss terms of its own"
    )


def reconstruction(value: Any) -> torch.Tensor:
    """The reconstruction in a model's output, whichever form the output takes."""
    return as_output(value).image


def convert(value: Any, fn: Callable[[torch.Tensor], torch.Tensor]) -> Any:
    """The output with ``fn`` applied to the image and to every term, in the form it came in."""
    if isinstance(value, ModelOutput):
        return ModelOutput(fn(value.image), {name: fn(term) for name, term in value.terms.items()})
    return fn(value)


def training_loss(
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], output: Any, target: torch.Tensor
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The loss to minimise for ``output`` against ``target``, and its named parts.

    The loss is ``loss_fn(reconstruction, target)`` plus every term of the model's output; the parts
    are ``{"reconstruction": ..., **terms}``. Terms must be scalar tensors under names other than
    ``"reconstruction"``; anything else is an error that names the term.
    """
    out = as_output(output)
    main = loss_fn(out.image, target)
    parts = {RECONSTRUCTION: main}
    total = main
    for name, term in out.terms.items():
        if name == RECONSTRUCTION or not isinstance(name, str):
            raise AeframeError(f"a model's output has a term named {name!r}; name its terms anything but "
                               f"{RECONSTRUCTION!r}, which is the loss's own")
        if not (hasattr(term, "dim") and term.dim() == 0):
            what = f"has shape {tuple(term.shape)}" if hasattr(term, "shape") else f"is a {type(term).__name__}"
            raise AeframeError(f"the model's output term {name!r} {what}, not a scalar tensor; reduce it "
                               "(e.g. .mean()) before returning it")
        total = total + term
        parts[name] = term
    return total, parts
