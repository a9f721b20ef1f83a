"""The check shared by techniques and datasets: every parameter has help and a valid default."""
from __future__ import annotations

from typing import Any, Callable, Sequence

from aeframe.contract.params import Param
from aeframe.errors import SpecError


def param_problems(params: Sequence[Param], check_params: Callable[[dict[str, Any]], None] | None = None) -> list[str]:
    """What is wrong with these declarations; empty when nothing is.

    A default is valid when typing it back as the user would (``name=<default>``) gives the same
    value and, with the other defaults, passes the plugin's own ``check_params``.
    """
    problems = []
    seen: set[str] = set()
    for p in params:
        if p.name in seen:
            problems.append(f"parameter {p.name!r} is declared twice")
        seen.add(p.name)
        if not str(p.help).strip():
            problems.append(f"parameter {p.name!r} has no help text; say what it changes and its unit")
        problems.extend(_default_problems(p))
    if check_params is not None and not problems:
        try:
            check_params({p.name: p.default for p in params})
        except ValueError as exc:
            problems.append(f"the defaults are refused by check_params: {exc}")
    return problems


def _default_problems(p: Param) -> list[str]:
    if p.default is None:
        return [f"parameter {p.name!r} has no default; give one the user could type"]
    if p.choices is not None and p.default not in p.choices:
        return [f"parameter {p.name!r}: default {p.default!r} is not one of its choices"]
    try:
        typed = p.parse(p.format(p.default), "default")
    except SpecError:
        return [f"parameter {p.name!r}: default {p.default!r} is not a valid {p.type_name}"]
    if typed != p.default:
        return [f"parameter {p.name!r}: default {p.default!r} reads back as {typed!r}; use a {p.type_name} value"]
    return []
