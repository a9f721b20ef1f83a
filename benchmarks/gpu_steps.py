"""The GPU check's steps as processes: run one with a time limit and a log, and read what it left.

A step's command runs in a session of its own, so a time limit stops it with every process it
started (the benchmarks start ``aeframe bench`` processes of their own).
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Step:
    """One step's outcome, as the JSON holds it."""

    name: str
    status: str = "not run"  # ok, failed, skipped (asked for)
    seconds: float = 0.0
    exit_code: int | None = None
    command: list[str] = field(default_factory=list)
    log: str | None = None
    problems: list[str] = field(default_factory=list)

    def fail(self, problem: str) -> None:
        self.status = "failed"
        self.problems.append(problem)

    def to_json(self) -> dict[str, Any]:
        return {"status": self.status, "seconds": round(self.seconds, 2), "exit_code": self.exit_code,
                "command": self.command, "log": self.log, "problems": self.problems}


def run_process(step: Step, command: list[str], cwd: Path, env: dict[str, str], log: Path, timeout: float) -> None:
    """Run ``command`` with its output in ``log``; a non-zero exit or running past ``timeout`` fails ``step``."""
    step.command = command
    step.log = str(log)
    with open(log, "w") as out:
        process = subprocess.Popen(command, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            step.exit_code = process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            _stop(process)
            step.exit_code = process.returncode
            step.fail(f"stopped after its time limit of {timeout:.0f} s")
            return
        except BaseException:
            _stop(process)
            raise
    if step.exit_code != 0:
        step.fail(f"exit code {step.exit_code}")


def _stop(process: subprocess.Popen) -> None:
    for sig, grace in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=grace)
            return
        except subprocess.TimeoutExpired:
            continue


def tail(log: str | None, lines: int = 25) -> str:
    """The last ``lines`` lines of a step's log, for the failure message."""
    if not log or not Path(log).is_file():
        return ""
    # Progress bars redraw with carriage returns: each drawing counts as a line.
    text = Path(log).read_text(errors="replace").replace("\r", "\n")
    kept = [line for line in text.splitlines() if line.strip()]
    return "\n".join(kept[-lines:])


def junit_summary(path: Path) -> dict[str, Any]:
    """Counts of a pytest run's JUnit XML, with the names and first message lines of what did not pass."""
    root = ElementTree.parse(path).getroot()
    cases = root.iter("testcase")
    summary: dict[str, Any] = {"total": 0, "passed": 0, "failed": 0, "errors": 0, "skipped": 0, "seconds": 0.0,
                               "not_passed": []}
    for case in cases:
        summary["total"] += 1
        summary["seconds"] += float(case.get("time") or 0.0)
        name = f"{case.get('classname', '')}::{case.get('name', '')}"
        outcome = next((child for child in case if child.tag in ("failure", "error", "skipped")), None)
        if outcome is None:
            summary["passed"] += 1
            continue
        kind = {"failure": "failed", "error": "errors", "skipped": "skipped"}[outcome.tag]
        summary[kind] += 1
        message = (outcome.get("message") or outcome.text or "").strip().splitlines()
        summary["not_passed"].append({"test": name, "outcome": outcome.tag, "message": message[0] if message else ""})
    summary["seconds"] = round(summary["seconds"], 2)
    return summary


def benchmark_summary(path: Path) -> list[dict[str, Any]]:
    """Each benchmark of a pytest-benchmark JSON file: its name, timing statistics and extra_info."""
    data = json.loads(path.read_text())
    found = []
    for bench in data.get("benchmarks", []):
        stats = bench.get("stats", {})
        found.append({
            "name": bench.get("name"),
            "seconds": {k: stats.get(k) for k in ("min", "median", "mean", "max", "stddev")},
            "rounds": stats.get("rounds"),
            "extra_info": bench.get("extra_info", {}),
        })
    return found


def timed(step: Step):
    """A context manager that adds the time spent in it to ``step.seconds``."""
    return _Timed(step)


class _Timed:
    def __init__(self, step: Step):
        self.step = step

    def __enter__(self) -> Step:
        self.started = time.perf_counter()
        return self.step

    def __exit__(self, *exc) -> bool:
        self.step.seconds += time.perf_counter() - self.started
        return False
