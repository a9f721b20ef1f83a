"""What share of the GPU a technique's training uses: its FLOPs per image, and the GPU's bf16 peak.

FLOPs are those torch.utils.flop_counter counts (matrix products and convolutions, forward and
backward; elementwise work, normalisation and the optimizer are not counted) over one training step
of the technique's model and loss, per phase, weighted by the phases' shares of the budget. The
peak is the datasheet's dense bf16 tensor-core figure where the GPU is in the table below, and one
measured on the spot with a large bf16 matrix product.
"""
from __future__ import annotations

import re
import time
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from aeframe.contract.output import training_loss
from aeframe.planning.plan import resolve_technique
from aeframe.contract.technique import CellContext

# NVIDIA's datasheet figures for dense bf16 on the tensor cores (TFLOP/s, without sparsity), by a
# pattern of the name torch reports. First match wins: the H100's variants differ.
DATASHEET_BF16_TFLOPS: tuple[tuple[str, float], ...] = (
    (r"\bH200\b", 989.0),
    (r"\bGH200\b", 989.0),
    (r"\bH100\b.*\bNVL\b", 835.0),
    (r"\bH100\b.*\bPCIe\b", 756.0),
    (r"\bH100\b", 989.0),  # SXM
    (r"\bA100\b", 312.0),
    (r"\bL40S\b", 362.0),
    (r"\bL4\b", 121.0),
)


def datasheet_bf16_tflops(device_name: str) -> float | None:
    """The datasheet's dense bf16 peak of the GPU called ``device_name``, or None when not in the table."""
    for pattern, tflops in DATASHEET_BF16_TFLOPS:
        if re.search(pattern, device_name, re.IGNORECASE):
            return tflops
    return None


def measured_bf16_tflops(device: torch.device, side: int, repeats: int = 3) -> dict[str, Any]:
    """The best rate of ``side``-cubed bf16 matrix products on ``device``, after a warm-up that lets
    the clocks rise and the library pick its kernel. Timed between device synchronisations."""
    is_cuda = device.type == "cuda"

    def sync() -> None:
        if is_cuda:
            torch.cuda.synchronize(device)

    a = torch.randn(side, side, device=device, dtype=torch.bfloat16)
    b = torch.randn(side, side, device=device, dtype=torch.bfloat16)
    out = torch.empty(side, side, device=device, dtype=torch.bfloat16)
    products = 50 if is_cuda else 3
    for _ in range(products):
        torch.mm(a, b, out=out)
    sync()
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        for _ in range(products):
            torch.mm(a, b, out=out)
        sync()
        best = min(best, time.perf_counter() - started)
    del a, b, out
    if is_cuda:
        torch.cuda.empty_cache()
    tflops = 2 * side**3 * products / best / 1e12
    return {"tflops": tflops, "matmul": f"{side}x{side} @ {side}x{side} bf16", "products_per_timing": products,
            "timings": repeats}


def training_flops(technique: str, registry, context: CellContext) -> dict[str, Any]:
    """FLOPs per training image of ``technique`` on images of ``context.shape``: one forward, loss and
    backward per phase (after the phase's ``on_start``, at its image size), weighted by phase fraction."""
    torch.manual_seed(context.seed)
    built = resolve_technique(technique, registry).build(context)
    model, batch = built.model, built.schedule.batch_size
    channels, side = context.shape[0], context.shape[-1]
    model.train()
    phases = []
    for phase in built.schedule.phases:
        if phase.on_start is not None:
            phase.on_start(model)
        size = phase.image_size or side
        images = torch.rand(batch, channels, size, size, device=context.device)
        with FlopCounterMode(display=False) as counter:
            loss, _ = training_loss(built.loss, model(images), images)
            loss.backward()
        model.zero_grad(set_to_none=True)
        phases.append({"phase": phase.name, "fraction": phase.fraction, "image_size": size,
                       "flops_per_image": counter.get_total_flops() / batch})
    return {
        "flops_per_image": sum(p["fraction"] * p["flops_per_image"] for p in phases),
        "batch_size": batch,
        "phases": phases,
    }
