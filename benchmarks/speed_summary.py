"""The numbers the speed benchmarks report: per-round rates, their ratios, and the end-of-session table.

Ratios are taken round by round (the three loops of a round ran back to back, so they shared the
machine's state) and the median over rounds is reported; so are the images/s.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from statistics import median

from tabulate import tabulate

from speed_config import GOAL_DEFAULT_VS_BEST, GOAL_VS_PLAIN


def verdict(ratio: float, goal: float) -> str:
    return "PASS" if ratio >= goal else "BELOW"


@dataclass
class LoopComparison:
    """One technique's images/s under each loop, one value per timed round."""

    technique: str
    rates: dict[str, list[float]]

    def rate(self, loop: str) -> float:
        return median(self.rates[loop])

    def ratio(self, loop: str, other: str) -> float:
        return median(a / b for a, b in zip(self.rates[loop], self.rates[other]))

    def extra_info(self) -> dict:
        vs_plain, vs_study = self.ratio("aeframe", "plain"), self.ratio("aeframe", "study")
        return {
            "images_per_second": {loop: self.rate(loop) for loop in self.rates},
            "images_per_second_rounds": self.rates,
            "ratio_aeframe_to_plain": vs_plain,
            "ratio_aeframe_to_study": vs_study,
            "goal_aeframe_to_plain": GOAL_VS_PLAIN,
            "verdict_aeframe_to_plain": verdict(vs_plain, GOAL_VS_PLAIN),
        }


def setting_name(speed) -> str:
    """A (precision, layout) pair as the tables show it: ``bf16 channels_last``."""
    return f"{speed.precision} {'channels_last' if speed.channels_last else 'contiguous'}"


@dataclass
class SettingsComparison:
    """One technique's images/s under aeframe's loop for each (precision, layout) pair, one value per round,
    and which pair aeframe's defaults chose."""

    technique: str
    default: str
    rates: dict[str, list[float]]

    def rate(self, setting: str) -> float:
        return median(self.rates[setting])

    @property
    def best(self) -> str:
        return max(self.rates, key=self.rate)

    def ratio(self) -> float:
        """Default over best, round by round (the settings of a round shared the machine's state)."""
        per_round = [self.rates[self.default][i] / max(found[i] for found in self.rates.values())
                     for i in range(len(self.rates[self.default]))]
        return median(per_round)

    def extra_info(self) -> dict:
        ratio = self.ratio()
        return {
            "default_setting": self.default,
            "best_setting": self.best,
            "images_per_second": {name: self.rate(name) for name in self.rates},
            "images_per_second_rounds": self.rates,
            "ratio_default_to_best": ratio,
            "goal_default_to_best": GOAL_DEFAULT_VS_BEST,
            "verdict_default_to_best": verdict(ratio, GOAL_DEFAULT_VS_BEST),
        }


@dataclass
class CellOverhead:
    """Whole ``aeframe bench`` cells, one value per round, against the parts their records account for."""

    wall: list[float]
    train: list[float]
    evaluation: list[float]
    prepare: list[float]  # the metrics' preparation (the reference classifier)
    cell_prepare: list[float]  # the cell's own, off its clock: resized copies, layout, warm-up
    start_and_imports: float
    precision_probe: float  # --precision auto's measurement with an empty cache, timed apart

    def overheads(self) -> list[float]:
        return [w - t - e - p - c for w, t, e, p, c in
                zip(self.wall, self.train, self.evaluation, self.prepare, self.cell_prepare)]

    def extra_info(self) -> dict:
        overhead = median(self.overheads())
        wall = median(self.wall)
        return {
            "wall_seconds": wall,
            "train_seconds": median(self.train),
            "eval_seconds": median(self.evaluation),
            "metric_prepare_seconds": median(self.prepare),
            "cell_prepare_seconds": median(self.cell_prepare),
            "precision_probe_seconds": self.precision_probe,
            "overhead_seconds": overhead,
            "overhead_share": overhead / wall,
            "interpreter_and_imports_seconds": self.start_and_imports,
            "rounds": {"wall": self.wall, "train": self.train, "eval": self.evaluation, "prepare": self.prepare,
                       "cell_prepare": self.cell_prepare},
        }


# The goals of issue 13: the ray executor's grid at most 0.9x local's wall time on this 2-core machine,
# and its overhead per cell against local under 1 s.
GOAL_RAY_VS_LOCAL = 0.9
GOAL_RAY_OVERHEAD_SECONDS = 1.0


@dataclass
class ExecutorComparison:
    """The same grid with ``local`` and with ``ray``, end to end, one value per round (interleaved)."""

    grid: str
    local: list[float]
    ray: list[float]

    def ratios(self) -> list[float]:
        return [r / l for r, l in zip(self.ray, self.local)]

    def line(self) -> str:
        ratio = median(self.ratios())
        return (f"{self.grid}: local {median(self.local):.1f} s, ray {median(self.ray):.1f} s (Ray's start included); "
                f"ray/local {ratio:.3f} (rounds {', '.join(f'{r:.3f}' for r in self.ratios())}) "
                f"{verdict_below(ratio, GOAL_RAY_VS_LOCAL)}")


@dataclass
class ExecutorOverhead:
    """What the ray executor adds to each cell against local, on a cluster already started."""

    cells: int
    local: list[float]
    ray: list[float]
    ray_start: float  # starting the local cluster, once, before the rounds

    def per_cell(self) -> list[float]:
        return [(r - l) / self.cells for r, l in zip(self.ray, self.local)]

    def line(self) -> str:
        overhead = median(self.per_cell())
        return (f"{self.cells} one-epoch cells one at a time, same threads: local {median(self.local):.1f} s, ray "
                f"{median(self.ray):.1f} s; overhead per cell {overhead:.2f} s (rounds "
                f"{', '.join(f'{o:.2f}' for o in self.per_cell())}) {verdict_below(overhead, GOAL_RAY_OVERHEAD_SECONDS)}; "
                f"starting the local Ray cluster, once per run, {self.ray_start:.1f} s")


def verdict_below(value: float, goal: float) -> str:
    return f"(goal <= {goal}: {'met' if value <= goal else 'NOT met'})"


@dataclass
class SpeedReport:
    """Everything measured in a session, rendered as the table printed at its end."""

    heading: str = ""
    comparisons: list[LoopComparison] = field(default_factory=list)
    settings: list[SettingsComparison] = field(default_factory=list)
    settings_heading: str = ""
    skipped: list[tuple[str, str]] = field(default_factory=list)
    cell: CellOverhead | None = None
    cell_heading: str = ""
    executors: list[str] = field(default_factory=list)  # lines of the executor benchmarks

    def lines(self) -> list[str]:
        out: list[str] = []
        if self.comparisons:
            out += [self.heading, "", self._loop_table(), ""]
        if self.settings:
            out += [self.settings_heading, "", self._settings_table(), ""]
        if self.comparisons or self.skipped or self.settings:
            skipped = dict(self.skipped)  # a technique skipped by both benchmarks is listed once
            out += [f"skipped {name}: {reason.splitlines()[0]}" for name, reason in skipped.items()]
        if self.cell is not None:
            if out:
                out.append("")
            out += [self.cell_heading, self._cell_line()]
        if self.executors:
            out += ([""] if out else []) + ["Executors (benchmarks/test_executors.py):", *self.executors]
        return out

    def _loop_table(self) -> str:
        rows = [
            [c.technique, f"{c.rate('aeframe'):,.0f}", f"{c.rate('plain'):,.0f}", f"{c.rate('study'):,.0f}",
             f"{c.ratio('aeframe', 'plain'):.3f} {verdict(c.ratio('aeframe', 'plain'), GOAL_VS_PLAIN)}",
             f"{c.ratio('aeframe', 'study'):.3f}"]
            for c in self.comparisons
        ]
        headers = ["technique", "(a) aeframe img/s", "(b) plain img/s", "(c) study img/s",
                   f"a/b (goal >= {GOAL_VS_PLAIN})", "a/c"]
        return tabulate(rows, headers, tablefmt="github", colalign=("left",) + ("right",) * 5)

    def _settings_table(self) -> str:
        plain = {c.technique: c for c in self.comparisons}
        rows = []
        for s in self.settings:
            loops = plain.get(s.technique)
            rows.append([
                s.technique, f"{s.rate(s.default):,.0f} ({s.default})", f"{s.rate(s.best):,.0f} ({s.best})",
                f"{s.ratio():.3f} {verdict(s.ratio(), GOAL_DEFAULT_VS_BEST)}",
                f"{loops.rate('plain'):,.0f}" if loops else "–",
                f"{loops.ratio('aeframe', 'plain'):.3f} {verdict(loops.ratio('aeframe', 'plain'), GOAL_VS_PLAIN)}"
                if loops else "–",
            ])
        headers = ["technique", "default img/s (setting)", "best img/s (setting)",
                   f"default/best (goal >= {GOAL_DEFAULT_VS_BEST})", "plain loop img/s", f"aeframe/plain (goal >= {GOAL_VS_PLAIN})"]
        return tabulate(rows, headers, tablefmt="github", colalign=("left",) + ("right",) * 5)

    def _cell_line(self) -> str:
        info = self.cell.extra_info()
        return (f"wall {info['wall_seconds']:.2f} s = train {info['train_seconds']:.2f} s + eval "
                f"{info['eval_seconds']:.2f} s + metric prepare {info['metric_prepare_seconds']:.2f} s + cell prepare "
                f"{info['cell_prepare_seconds']:.2f} s + overhead {info['overhead_seconds']:.2f} s "
                f"({info['overhead_share']:.0%} of the wall time); of that overhead, a bare interpreter importing "
                f"torch, torchvision and aeframe takes {info['interpreter_and_imports_seconds']:.2f} s and "
                f"--precision auto's measurement (once per machine; each round's cache is empty) about "
                f"{info['precision_probe_seconds']:.2f} s")
