"""The leaderboard page (``aeframe report --docs PAGE``): the tables and pictures of a store, with
everything a reader needs to trust or redo them: the commands, the code and library versions, the
device, and each technique's training protocol.
"""
from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from tabulate import tabulate

from aeframe.grouping import group
from aeframe.metric import Metric
from aeframe.provenance import protocols, provenance
from aeframe.record import CellRecord
from aeframe.report import Figures, render

_NOT_RECORDED = "(not recorded: these cells were run through the Python API)"


def leaderboard_page(
    records: Sequence[CellRecord],
    metrics: Sequence[Metric],
    page: Path,
    report_command: str,
    generated: datetime,
    figures: Figures | None = None,
) -> str:
    """The markdown of the page written at ``page``; ``report_command`` is the command that writes it."""
    found = provenance(records)
    parts = [
        "# Leaderboard",
        f"<!-- Written by `{report_command}`; edit the code or rerun it, not this file. -->",
        _intro(records, found, generated),
        "## How to reproduce",
        _reproduce(found, report_command),
        "## Provenance",
        _provenance(found, generated),
        "## Training protocol",
        _protocols(records),
        render(records, metrics, "markdown", figures, link_base=page.parent).rstrip("\n"),
    ]
    return "\n\n".join(parts) + "\n"


def _intro(records: Sequence[CellRecord], found: dict[str, Any], generated: datetime) -> str:
    done = [r for r in records if r.status == "done"]
    span = f", finished between {found['finished'][0]} and {found['finished'][1]}" if found["finished"] else ""
    return (
        "Autoencoder training techniques from the study \"Applying Modern Best Practices to Autoencoders\" "
        "(2020), each trained under the same fixed budget and evaluated the same way by aeframe. "
        f"This page was generated on {generated:%Y-%m-%d} from {len(done)} finished cells "
        f"({len(records)} stored){span}. Each table states its budget, seeds, device and versions."
    )


def _reproduce(found: dict[str, Any], report_command: str) -> str:
    bench = found["commands"] or [_NOT_RECORDED]
    lines = ["From a clone of the aeframe repository at the commit named under Provenance, after the "
             "README's setup, run:", "", "```sh", *bench, report_command, "```", ""]
    lines.append("A bench command resumes: cells already in its store are not trained again "
                 "(`--rerun` trains them anew). Timings depend on the device and on what else runs on it. "
                 "Under an epoch budget a rerun on the CPU gives the same metrics; under a time budget "
                 "they depend on how many steps fit in it.")
    return "\n".join(lines)


def _provenance(found: dict[str, Any], generated: datetime) -> str:
    versions = found["versions"]

    def joined(name: str) -> str:
        return ", ".join(map(str, versions.get(name, []))) or "unknown"

    commits = ", ".join(f"git {c}" for c in found["commits"]) or "no git commit recorded (not run from a clone)"
    cuda = joined("cuda") if "cuda" in versions else "not used (every cell ran on the CPU)"
    if "cuda" in versions and "cpu" in found["device_types"]:
        cuda += "; some cells ran on the CPU"
    rows = [
        ["aeframe", f"{joined('aeframe')} ({commits})"],
        ["torch", joined("torch")],
        ["torchvision", joined("torchvision")],
        ["CUDA", cuda],
        ["Python", joined("python")],
        ["Device", "; ".join(found["devices"]) or "unknown"],
        ["Page generated", generated.isoformat(timespec="seconds")],
    ]
    return tabulate(rows, headers=["What", "Value"], tablefmt="pipe", disable_numparse=True)


def _protocols(records: Sequence[CellRecord]) -> str:
    """One row per technique: its batch size and phases (share of the budget, peak learning rates, image size)."""
    rows: dict[str, list[str]] = {}
    for section in group(records):
        for table in section.tables.values():
            for label, protocol in protocols(table.rows).items():
                rows.setdefault(label, [label.replace("|", "\\|"), str(protocol.get("batch_size", "–")),
                                        _phases_text(protocol.get("phases") or [])])
    intro = ("Every technique trains with the study's recipe unless its row says otherwise: AdamW, a "
             "one-cycle learning rate in each phase, dihedral flips and lighting changes as augmentation "
             "(docs/protocol.md has the details). A phase's share is of the whole budget, epochs or seconds.")
    if not rows:
        return intro
    table = tabulate(list(rows.values()), headers=["Method", "Batch", "Phases: share of the budget, peak learning rate"],
                     tablefmt="pipe", disable_numparse=True)
    return intro + "\n\n" + table


def _phases_text(phases: Sequence[dict[str, Any]]) -> str:
    texts = []
    for phase in phases:
        rates = "/".join(f"{lr:g}" for lr in phase.get("max_lr") or [])
        size = f", {phase['image_size']} px" if phase.get("image_size") else ""
        texts.append(f"{phase.get('name', '?')}: {phase.get('fraction', 0):.0%} at {rates}{size}")
    return "; ".join(texts) or "–"
