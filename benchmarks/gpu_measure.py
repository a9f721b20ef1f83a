#!/usr/bin/env python3
"""The GPU check's in-GPU measurements, each in a process of its own (run by gpu_check.py).

The check itself never touches the GPU: a process holding a CUDA context while ``aeframe bench``
trains counts as another process on its GPU, and aeframe would mark every cell as trained on a
busy machine. So the peak and the FLOP counts run here, and this process ends before the next step.

  gpu_measure.py peak --device D --side N --out FILE
      the GPU's description and its bf16 peak (datasheet and measured)
  gpu_measure.py flops --device D --dataset X --cache-dir DIR [--data-dir DIR] -t T ... --out FILE
      training FLOPs per image of each technique; a technique that fails is reported, the rest counted
  gpu_measure.py graphs --device D --dataset X --cache-dir DIR --precision P --rounds N -t T ... --out FILE
      per technique, one epoch's images/s three ways, interleaved in rounds after an untimed one:
      aeframe eager, aeframe graphed (--cuda-graphs), and a plain PyTorch loop captured by hand
      (benchmarks/speed_loops.py); a way that cannot run says why
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))


def describe_gpu(device) -> dict[str, Any]:
    """What the environment record says about the device (only CUDA devices have more than a name)."""
    import torch

    from aeframe.execution.environment import device_info

    found: dict[str, Any] = {"device_name": device_info(device)["name"]}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        found.update({
            "gpu": torch.cuda.get_device_name(device),
            "gpu_memory_gib": round(props.total_memory / 2**30, 1),
            "compute_capability": f"{props.major}.{props.minor}",
            "multiprocessors": props.multi_processor_count,
            "bf16_supported": torch.cuda.is_bf16_supported(),
            "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version(),
        })
    return found


def peak(args: argparse.Namespace) -> dict[str, Any]:
    from aeframe.execution.environment import resolve_device
    from gpu_peak import datasheet_bf16_tflops, measured_bf16_tflops

    device = resolve_device(args.device)
    gpu = describe_gpu(device)
    name = gpu.get("gpu")
    found: dict[str, Any] = {
        "datasheet_bf16_tflops": datasheet_bf16_tflops(name) if name else None,
        "datasheet_source": "NVIDIA datasheet, dense bf16 tensor-core peak (table in benchmarks/gpu_peak.py)",
    }
    if name and found["datasheet_bf16_tflops"] is None:
        found["datasheet_note"] = f"{name} is not in the table; the measured peak stands alone"
    measured = measured_bf16_tflops(device, args.side)
    found["measured_bf16_tflops"] = measured.pop("tflops")
    found["measured_with"] = measured
    return {"environment": gpu, "peak": found}


def flops(args: argparse.Namespace) -> dict[str, Any]:
    from aeframe.execution.environment import resolve_device
    from aeframe.data.loading import default_data_dir, make_workspace
    from aeframe.planning.plan import resolve_dataset
    from aeframe.registry.plugins import build_registry
    from aeframe.contract.technique import CellContext
    from gpu_peak import training_flops

    device = resolve_device(args.device)
    registry = build_registry(autoload=False)
    data_dir = Path(args.data_dir) if args.data_dir else default_data_dir()
    choice = resolve_dataset(args.dataset, registry)
    workspace = make_workspace(registry, data_dir, Path(args.cache_dir), lambda text: print(text, file=sys.stderr))
    context = CellContext(shape=tuple(choice.plugin.shape(choice.params)), dataset=choice.plugin.name,
                          num_classes=10,  # both datasets the check uses have ten classes
                          seed=0, device=device, data_dir=data_dir, cache_dir=Path(args.cache_dir),
                          load_dataset=workspace.load_dataset, dataset_spec=choice.label)
    found: dict[str, Any] = {}
    for technique in args.technique:
        try:
            found[technique] = training_flops(technique, registry, context)
        except Exception as exc:  # one technique's failure must not cost the others their count
            found[technique] = {"error": f"{type(exc).__name__}: {exc}"}
    return found


def graphs(args: argparse.Namespace) -> dict[str, Any]:
    from statistics import median

    from aeframe.cells.settings import Speed
    from aeframe.data.loading import default_data_dir, make_workspace
    from aeframe.execution.environment import resolve_device
    from aeframe.planning.plan import resolve_dataset, resolve_technique
    from aeframe.registry.plugins import build_registry
    from aeframe.speed.graphs import GraphUnavailable
    from speed_cells import build_fresh, cell_context, load_bench_data
    from speed_loops import aeframe_loop, plain_graphed_loop

    device = resolve_device(args.device)
    registry = build_registry(autoload=False)
    choice = resolve_dataset(args.dataset, registry)
    workspace = make_workspace(registry, default_data_dir(), Path(args.cache_dir),
                               lambda text: print(text, file=sys.stderr))
    data = load_bench_data(choice, device, workspace)
    speed = Speed(args.precision, False)
    ways = {"eager": lambda cell: aeframe_loop(cell, data),
            "graphed": lambda cell: aeframe_loop(cell, data, graphed=True),
            "plain_graphed": lambda cell: plain_graphed_loop(cell, data)}
    found: dict[str, Any] = {}
    for technique in args.technique:
        composition = resolve_technique(technique, registry)
        context = cell_context(data, choice, workspace)
        rates: dict[str, list[float]] = {way: [] for way in ways}
        reasons: dict[str, str] = {}
        try:
            for round_ in range(args.rounds + 1):  # round 0 pays each way's one-off set-up, untimed
                order = list(ways)[round_ % len(ways):] + list(ways)[:round_ % len(ways)]
                for way in order:
                    if way in reasons:
                        continue
                    cell = build_fresh(composition, context, speed)
                    try:
                        run = ways[way](cell)
                    except GraphUnavailable as exc:
                        reasons[way] = str(exc)
                        continue
                    if round_:
                        rates[way].append(run.images_per_second)
        except Exception as exc:  # one technique's failure must not cost the others their figures
            found[technique] = {"error": f"{type(exc).__name__}: {exc}"}
            continue
        rate = {way: median(values) if values else None for way, values in rates.items()}
        found[technique] = {
            "images_per_second": rate,
            "graphed_vs_eager": rate["graphed"] / rate["eager"] if rate["graphed"] and rate["eager"] else None,
            "graphed_vs_plain_graphed": (rate["graphed"] / rate["plain_graphed"]
                                         if rate["graphed"] and rate["plain_graphed"] else None),
            "unavailable": reasons,
        }
    return {"dataset": args.dataset, "training_images": len(data.cells.train), "precision": args.precision,
            "rounds": args.rounds, "techniques": found}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="gpu_measure", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    for name in ("peak", "flops", "graphs"):
        command = commands.add_parser(name)
        command.add_argument("--device", required=True)
        command.add_argument("--out", type=Path, required=True)
    commands.choices["peak"].add_argument("--side", type=int, required=True)
    flop_args = commands.choices["flops"]
    flop_args.add_argument("--dataset", required=True)
    flop_args.add_argument("--cache-dir", required=True)
    flop_args.add_argument("--data-dir", default=None)
    flop_args.add_argument("-t", "--technique", action="append", required=True)
    graph_args = commands.choices["graphs"]
    graph_args.add_argument("--dataset", required=True)
    graph_args.add_argument("--cache-dir", required=True)
    graph_args.add_argument("--precision", required=True)
    graph_args.add_argument("--rounds", type=int, default=2)
    graph_args.add_argument("-t", "--technique", action="append", required=True)
    args = parser.parse_args(argv)
    found = {"peak": peak, "flops": flops, "graphs": graphs}[args.command](args)
    args.out.write_text(json.dumps(found, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
