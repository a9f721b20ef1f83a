"""The leaderboard page (``aeframe report --docs PAGE``): the tables and pictures of a store, with
everything a reader needs to trust or redo them: the commands, the code and library versions, the
device, and each technique's training protocol.
"""
from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tabulate import tabulate

from aeframe.cells.durations import format_duration
from aeframe.cells.record import CellRecord, PhaseSummary
from aeframe.report.grouping import BEYOND, PART_TITLES
from aeframe.report.provenance import pinned_commands
from aeframe.report.render import Figures, Report, analyse
from aeframe.report.structure import SIGNIFICANCE
from aeframe.report.to_markdown import BUSY_MARKER, MARKER, MISSING, REFERENCE_ROW, STAND_IN_MARKER, markdown

if TYPE_CHECKING:
    from aeframe.contract.metric import Metric

_NOT_RECORDED = "(not recorded: these cells were run through the Python API)"


# The techniques page marks each technique's section with an anchor of this id, which the page links.
TECHNIQUE_ANCHOR_ID = "technique-{name}"
TECHNIQUE_ANCHOR = f'<a id="{TECHNIQUE_ANCHOR_ID}"></a>'


def leaderboard_page(
    records: Sequence[CellRecord],
    metrics: Sequence[Metric],
    page: Path,
    report_command: str,
    generated: datetime,
    figures: Figures | None = None,
) -> str:
    """The markdown of the page written at ``page``; ``report_command`` is the command that writes it."""
    # Beside the site's other pages (docs/), the page links them; elsewhere it names them.
    beside_docs = (page.parent / "protocol.md").is_file()
    techniques_page = page.parent / "techniques.md"
    documented = frozenset(re.findall(TECHNIQUE_ANCHOR.format(name="([a-z0-9-]+)"), techniques_page.read_text())
                           if beside_docs and techniques_page.is_file() else ())
    return page_markdown(analyse(records, metrics, figures, link_base=page.parent), report_command, generated,
                         beside_docs, documented)


def page_markdown(report: Report, report_command: str, generated: datetime, beside_docs: bool = False,
                  documented: frozenset[str] = frozenset()) -> str:
    """The page for an analysed report (its figures linked from the page's folder); ``beside_docs``: the
    page sits beside the site's pages and links them; ``documented``: the techniques whose section on
    the techniques page it links."""
    found = report.provenance
    parts = [
        "# Leaderboard",
        f"<!-- Written by `{report_command}`; edit the code or rerun it, not this file. -->",
        _intro(report, generated),
        "## How to read the tables",
        _legend(report, beside_docs, documented),
        "## How to reproduce",
        _reproduce(found, pinned_commands(report.cells), report_command),
        "## Provenance",
        _provenance(found, generated),
        "## Training protocol",
        _protocols(report, beside_docs),
        markdown(report).rstrip("\n"),
        "## How to cite",
        _how_to_cite(found, generated),
    ]
    return without_home_paths("\n\n".join(parts) + "\n")


# A home directory as the machine that ran the cells spelt it in its messages (a cache, a data folder).
_HOME = re.compile(r"(?<![\w.~/-])(?:/root|/home/[^/\s]+|/Users/[^/\s]+)(?=/|\b)")


def without_home_paths(text: str) -> str:
    """``text`` with each home directory written as ``~``: a published page names where a file goes, not
    whose machine made it (``/root/.cache/torch`` becomes ``~/.cache/torch``)."""
    return _HOME.sub("~", text)


STUDY_URL = "https://github.com/henriwoodcock/Applying-Modern-Best-Practices-to-Autoencoders"


def _intro(report: Report, generated: datetime) -> str:
    finished = report.provenance["finished"]
    span = f", finished between {finished[0]} and {finished[1]}" if finished else ""
    beyond = ", and techniques beyond it in tables of their own" if _beyond_the_study(report) else ""
    return (
        f"Autoencoder training techniques from the study [\"Applying Modern Best Practices to Autoencoders\"]"
        f"({STUDY_URL}) (2020){beyond}, each trained under the same fixed budget and evaluated the same way by "
        "aeframe. "
        f"This page was generated on {generated:%Y-%m-%d} from {report.done_count} finished cells "
        f"({len(report.cells)} stored){span}; {_total_time(report)}. Each table states its budget, seeds, "
        "device and versions."
    )


def _beyond_the_study(report: Report) -> bool:
    """Whether some dataset's table is split into the study's techniques and those beyond it."""
    return any(table.part == BEYOND for dataset in report.datasets for table in dataset.tables)


def _total_time(report: Report) -> str:
    """What the page's cells cost, summed over the cells in its tables: training, evaluation and the
    untimed preparation (work outside the budget, where recorded, apart)."""
    shown = [cell for cell, in_table in zip(report.cells, report.in_table) if in_table]

    def summed(name: str) -> float:
        return sum(v for cell in shown if isinstance(v := cell.stats.get(name), (int, float)))

    total = summed("train_seconds") + summed("eval_seconds") + summed("prepare_seconds")
    outside = summed("outside_budget_seconds")
    extra = f", and {format_duration(outside)} of work outside the budget" if outside else ""
    return (f"together they took {format_duration(total)} of training, evaluation and preparation{extra} "
            "(summed over the cells)")


def _site_page(name: str, title: str, beside_docs: bool) -> str:
    """A link to one of the site's pages where the page sits beside them, else its path in a checkout."""
    return f"[{title}]({name})" if beside_docs else f"docs/{name}"


def _technique_links(report: Report, documented: frozenset[str]) -> str:
    """A link to the section of each documented technique of the tables, in the order they first appear."""
    names = dict.fromkeys(t.name for cell in report.cells for t in cell.config.techniques)
    linked = [f"[{name}](techniques.md#{TECHNIQUE_ANCHOR_ID.format(name=name)})" for name in names if name in documented]
    return f" ({', '.join(linked)})" if linked else ""


def _legend(report: Report, beside_docs: bool, documented: frozenset[str]) -> str:
    """One line for each sign and row a reader meets in the tables below."""
    budgets = {table.condition.budget.seconds is not None for d in report.datasets for table in d.tables}
    lines = [
        "- **x ± s**: the mean over the seeds and their standard deviation (the Seeds column counts them); "
        "a value alone is one seed's, or every seed's where they agree.",
        "- **Bold**: the best row of a column (rows that tie at the digits shown are all bold)"
        + ("; under a time budget every row trains for the budget, so no Training Time is bold." if True in budgets
           else "."),
        f"- **{MARKER}**: the row differs from the reference row (the Baseline) at p < {SIGNIFICANCE:g}, by a paired "
        "t-test over the seeds both have. The p-values of a table are Holm-corrected: sorted, the smallest "
        "multiplied by the number of tests, the next by one fewer, and so on, so that across the whole table the "
        f"chance of any false {MARKER} stays under {SIGNIFICANCE:g}.",
        f"- **{STAND_IN_MARKER}**: an offline stand-in for a study row whose ImageNet weights could not be had here; "
        "the line under the table says what differs.",
        f"- **{BUSY_MARKER}**: trained while the machine was busy; that row's time, epochs and images/s are not "
        "comparable with the others'.",
        f"- **{REFERENCE_ROW}**: the metrics of the test images themselves, unreconstructed (e.g. the reference "
        "classifier's accuracy on them): what a perfect reconstruction would score; metrics without such a value "
        f"show {MISSING}.",
        f"- **{MISSING}**: no value (not measured, or not applicable).",
        f"- The techniques: {_site_page('techniques.md', 'Techniques', beside_docs)}"
        f"{_technique_links(report, documented)}; the metrics: {_site_page('metrics.md', 'Metrics', beside_docs)}; "
        f"the study's protocol and aeframe's deviations from it: {_site_page('protocol.md', 'Protocol', beside_docs)}.",
    ]
    if _beyond_the_study(report):
        lines.append(_beyond_line())
    if any(cell.config.budget.epochs != 15 for cell in report.cells if cell.config.budget.epochs is not None) \
            or True in budgets:
        lines.append("- The study trained every model for 15 epochs on a GPU. Rows trained under another budget "
                     "(the tables say which) cannot be compared with the study's figures, only with each other.")
    return "\n".join(lines)


def _beyond_line() -> str:
    """What the tables beyond the study hold, and why they are apart from the study's."""
    return (f"- **{PART_TITLES[BEYOND]}**: where a dataset has rows of techniques the study did not try (alone, or "
            "combined with one of its techniques), they are a table of their own under the study's, so that the "
            "study's table and its Holm correction stay as they would be without them. The Baseline leads both "
            f"tables and each row is compared with it ({MARKER}); a technique of the study that a combination pairs "
            "with is a row of both, so that the Combinations table under the second compares each pair with the "
            "better of its two alone.")


def _reproduce(found: dict[str, Any], commands: list[str], report_command: str) -> str:
    """The commands that trained the cells (each bench that named no technique pinned with ``-t``), then
    the one that wrote the page."""
    bench = commands or [_NOT_RECORDED]
    commits = found["commits"]
    # A store resumed after a commit holds cells of both: each keeps its own; the newest code reruns them all.
    at = ("the commit named under Provenance" if len(commits) <= 1 else
          f"the last of the {len(commits)} commits named under Provenance (the store was filled across "
          "them, each cell recording its own; the last one's code trains every row)")
    lines = [f"From a clone of the aeframe repository at {at}, after the README's setup, run:", "", "```sh",
             *bench, report_command, "```", ""]
    pinned = ""
    if set(commands) - set(found["commands"]):
        pinned = ("A command typed without `-t` is shown with a `-t` for each technique its cells trained: without "
                  "one, a bench trains every technique registered when it runs. ")
    lines.append(pinned + "A bench command resumes: cells already in its store are not trained again "
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


def _how_to_cite(found: dict[str, Any], generated: datetime) -> str:
    """The citation of this page: aeframe's version and the commits its cells ran from (CITATION.cff)."""
    version = ", ".join(map(str, found["versions"].get("aeframe", []))) or "unknown"
    commits = ", ".join(found["commits"]) or "no commit recorded"
    return (f"Cite aeframe as its `CITATION.cff` says, and name this page's numbers by the version and "
            f"commit they came from: aeframe {version}, commit {commits}, leaderboard generated on "
            f"{generated:%Y-%m-%d}. For example:\n\n"
            f"> The aeframe developers. *aeframe: a plugin-based benchmark of autoencoder training techniques*, "
            f"version {version}, leaderboard of {generated:%Y-%m-%d} (commit {commits}).")


def _protocols(report: Report, beside_docs: bool) -> str:
    """Per dataset, one row per technique: its batch size and phases (share of the budget, peak learning
    rates, image size), as that dataset's cells recorded them."""
    intro = ("Every technique trains with the study's recipe unless its row says otherwise: AdamW, a "
             "one-cycle learning rate in each phase, dihedral flips and lighting changes as augmentation "
             f"({_site_page('protocol.md', 'Protocol', beside_docs)} has the details). A phase's share is of the "
             "whole budget, epochs or seconds. "
             "The learning rates are each dataset's own, as its cells trained.")
    parts = [intro]
    for dataset, protocols in report.protocols.items():
        rows = [[label.replace("|", "\\|"), str(p.batch_size) if p.batch_size is not None else "–",
                 _phases_text(p.phases)] for label, p in protocols.items()]
        parts += [f"### {dataset}", tabulate(rows, headers=["Method", "Batch", "Phases: share of the budget, peak learning rate"],
                                              tablefmt="pipe", disable_numparse=True)]
    return "\n\n".join(parts)


def _phases_text(phases: Sequence[PhaseSummary]) -> str:
    texts = []
    for phase in phases:
        rates = "/".join(f"{lr:g}" for lr in phase.max_lr)
        if len(phase.max_lr) > 3:
            # Discriminative rates (one per layer group, ten for the ResNet) as a list would fill the line.
            rates = f"{phase.max_lr[0]:g} to {phase.max_lr[-1]:g} over {len(phase.max_lr)} layer groups"
        size = f", {phase.image_size} px" if phase.image_size else ""
        texts.append(f"{phase.name or '?'}: {phase.fraction or 0:.0%} at {rates}{size}")
    return "; ".join(texts) or "–"
