"""What registration refuses: the checks a technique, dataset or metric must pass when its plugin loads.

Strict on purpose: a misspelt method or attribute would otherwise do nothing, silently (a
``wrap_modle`` never wraps, a ``titel`` never titles), and a technique that contributes nothing
would train its base under another name.
"""
from __future__ import annotations

import difflib
import math
from typing import Any, Mapping, Sequence

from aeframe.contract.events import EVENT_METHODS
from aeframe.contract.technique import LR_CURVE, LR_PARAM, OPTIMIZER, PART_METHODS, PARTS, PeakRate, RelativeRate, Technique


def technique_problems(technique: Technique) -> list[str]:
    """What in ``technique``'s declarations breaks the contract (empty when nothing does)."""
    problems = []
    name = technique.name
    problems += [f"technique {name!r} defines {member!r}, which is not a part method; "
                 f"{_suggest(member, PART_METHODS, 'one of ' + ', '.join(PART_METHODS))}"
                 for member in _own_members(technique) if member.startswith(("build_", "wrap_", "replace_"))
                 and member not in PART_METHODS]
    problems += [f"technique {name!r} defines {member!r}, which is not an event method; "
                 f"{_suggest(member, EVENT_METHODS, 'one of ' + ', '.join(EVENT_METHODS))}"
                 for member in _own_members(technique) if member.startswith("on_") and member not in EVENT_METHODS]
    contributes = (any(technique.provides(p) or technique.wraps(p) for p in (*PARTS, OPTIMIZER))
                   or technique.provides(LR_CURVE) or technique.learning_rates or technique.events())
    if not contributes:
        base = repr(technique.base) if technique.base else "(the reference technique)"
        problems.append(f"technique {name!r} provides, wraps, declares and acts on nothing, so it would train its "
                        f"base {base} under another name; define build_*/wrap_*/on_* methods")
    problems += _rate_problems(technique)
    names = [p.name for p in technique.params]
    if technique.learning_rates and LR_PARAM in names:
        problems.append(f"technique {name!r} declares learning_rates and a parameter {LR_PARAM!r}; aeframe adds "
                        f"{LR_PARAM!r} itself to techniques that declare rates: rename the parameter")
    return problems


def _rate_problems(technique: Technique) -> list[str]:
    rates = technique.learning_rates
    if not isinstance(rates, Mapping):
        return [f"technique {technique.name!r}: learning_rates must map phase names to rates, "
                f"not be a {type(rates).__name__}"]
    problems = []
    for phase, rate in rates.items():
        values = rate.values() if isinstance(rate, (PeakRate, RelativeRate)) else [rate]
        if not isinstance(phase, str) or not all(_valid_rate(v) for v in values):
            problems.append(f"technique {technique.name!r}: learning_rates[{phase!r}] = {rate!r}; give a positive "
                            "number, a tuple of them (one per parameter group), an aeframe.PeakRate or an "
                            "aeframe.RelativeRate")
    return problems


def _valid_rate(value: Any) -> bool:
    items = value if isinstance(value, tuple) and value else (value,)
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0 for v in items)


def _own_members(obj: Any) -> list[str]:
    """Public names the plugin's class (below aeframe's base classes) or the object itself defines."""
    names: set[str] = set(vars(obj)) if hasattr(obj, "__dict__") else set()
    for cls in type(obj).__mro__:
        if cls.__module__.startswith("aeframe.") or cls is object:
            continue
        names.update(vars(cls))
    return sorted(n for n in names if not n.startswith("_"))


def misspelt_members(obj: Any, base: type, extra: Sequence[str], owner: str) -> list[str]:
    """Members of ``obj`` that are not part of ``base``'s contract but are spelt almost like a part of it.

    A plugin's own helpers are welcome; a ``titel`` or ``wrap_modle`` would silently do nothing.
    """
    contract = {n for n in dir(base) if not n.startswith("_")} | set(extra)
    problems = []
    for member in _own_members(obj):
        if member in contract or member.startswith(("build_", "wrap_", "replace_")):
            continue
        close = difflib.get_close_matches(member, sorted(contract), n=1, cutoff=0.8)
        if close:
            problems.append(f"{owner} defines {member!r}; did you mean {close[0]!r}?")
    return problems


def _suggest(name: str, valid: Sequence[str], otherwise: str) -> str:
    close = difflib.get_close_matches(name, valid, n=1, cutoff=0.6)
    return f"did you mean {close[0]!r}?" if close else f"use {otherwise}"
