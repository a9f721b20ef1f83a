"""Third-party techniques that change process-wide state, and one that records what it finds: the tests
register this module through an entry point and check that what one cell sets never reaches the next.

``KINDS`` names each kind of state with how to read it and how a plugin would change it; ``SEEN`` is
where ``reads-state`` writes what it read, kind by kind, when its model is wrapped.
"""
from __future__ import annotations

import hashlib
import random
from typing import Any, Callable, NamedTuple

import numpy
import torch

from aeframe import Param, Technique, hookimpl

SEEN: dict[str, Any] = {}


class Kind(NamedTuple):
    read: Callable[[], Any]
    change: Callable[[], None]


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _other_threads() -> None:
    torch.set_num_threads(2 if torch.get_num_threads() == 1 else 1)


def _flip(owner: Any, attribute: str) -> Kind:
    return Kind(lambda: getattr(owner, attribute), lambda: setattr(owner, attribute, not getattr(owner, attribute)))


KINDS: dict[str, Kind] = {
    "threads": Kind(torch.get_num_threads, _other_threads),
    "torch-rng": Kind(lambda: _digest(torch.get_rng_state().numpy().tobytes()), lambda: torch.manual_seed(1234)),
    "python-rng": Kind(lambda: _digest(repr(random.getstate()).encode()), lambda: random.seed(1234)),
    "numpy-rng": Kind(lambda: _digest(repr(numpy.random.get_state()).encode()), lambda: numpy.random.seed(1234)),
    "default-dtype": Kind(torch.get_default_dtype, lambda: torch.set_default_dtype(torch.float64)),
    "anomaly-mode": Kind(torch.is_anomaly_enabled, lambda: torch.set_anomaly_enabled(True)),
    "matmul-precision": Kind(torch.get_float32_matmul_precision, lambda: torch.set_float32_matmul_precision("medium")),
    "cudnn-benchmark": _flip(torch.backends.cudnn, "benchmark"),
    "cudnn-deterministic": _flip(torch.backends.cudnn, "deterministic"),
    "cudnn-enabled": _flip(torch.backends.cudnn, "enabled"),
    "cudnn-allow-tf32": _flip(torch.backends.cudnn, "allow_tf32"),
    "cuda-matmul-allow-tf32": _flip(torch.backends.cuda.matmul, "allow_tf32"),
    "deterministic-algorithms": Kind(torch.are_deterministic_algorithms_enabled,
                                     lambda: torch.use_deterministic_algorithms(True)),
    "grad-mode": Kind(torch.is_grad_enabled, lambda: torch.set_grad_enabled(False)),
    "autocast": Kind(lambda: torch.is_autocast_enabled("cpu"), lambda: torch.set_autocast_enabled("cpu", True)),
}
# A cell seeds these itself before it builds its model, so a technique of the next cell finds them seeded
# whatever the cell before did; what they were when the run goes on after its cells still shows a leak.
RESEEDED = {"torch-rng", "python-rng"}


class SetsState(Technique):
    """The Baseline, after changing the kind of global state ``what`` names while it wraps the model."""

    name, title, base = "sets-state", "Sets State", "baseline"
    params = (Param("what", str, "threads", "the kind of global state to change (state_techniques.KINDS)"),)

    def wrap_model(self, model, ctx):
        KINDS[ctx.params["what"]].change()
        return model


class ReadsState(Technique):
    """The Baseline, recording every kind of global state in ``SEEN`` as it wraps the model."""

    name, title, base = "reads-state", "Reads State", "baseline"

    def wrap_model(self, model, ctx):
        SEEN.update({kind: found.read() for kind, found in KINDS.items()})
        return model


@hookimpl
def register_techniques(register):
    register(SetsState())
    register(ReadsState())
