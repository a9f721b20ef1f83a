"""Parameters that plugins declare, and the checking of ``key=value`` text against them."""
from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any, Collection, Sequence

from aeframe.errors import SpecError

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _parse_bool(text: str) -> bool:
    low = text.strip().lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    raise ValueError("expected true or false")


def _parse_list(item_type: type):
    def parse(text: str) -> tuple:
        parts = [p for p in text.replace(";", ",").split(",") if p.strip()]
        if not parts:
            raise ValueError("expected a comma-separated list")
        return tuple(item_type(p.strip()) for p in parts)

    return parse


_PARSERS = {
    int: int,
    float: float,
    str: str,
    bool: _parse_bool,
    "ints": _parse_list(int),
    "floats": _parse_list(float),
}
_TYPE_NAMES = {int: "int", float: "float", str: "str", bool: "bool", "ints": "ints", "floats": "floats"}


@dataclass(frozen=True)
class Param:
    """One parameter of a technique or dataset plugin.

    ``type`` is one of ``int``, ``float``, ``str``, ``bool``, ``"ints"`` or ``"floats"`` (the last
    two are comma-separated lists, e.g. ``sizes=16,32``). ``choices`` restricts the accepted values.
    """

    name: str
    type: Any
    default: Any
    help: str
    choices: Sequence[Any] | None = field(default=None)

    def __post_init__(self) -> None:
        if self.type not in _PARSERS:
            raise TypeError(f"parameter {self.name!r}: unsupported type {self.type!r}")
        if not self.help:
            raise TypeError(f"parameter {self.name!r} needs a help text")

    @property
    def type_name(self) -> str:
        return _TYPE_NAMES[self.type]

    def parse(self, text: str, owner: str) -> Any:
        """The typed value of ``text``, as the user gave it after ``key=``, checked against :attr:`choices`.

        Args:
            text: The value as typed: ``3``, ``0.5``, ``true``/``false`` (also ``yes``/``no``, ``on``/``off``,
                ``1``/``0``), or a comma-separated list (``16,32``) for ``"ints"`` and ``"floats"``.
            owner: Who declares the parameter, as error messages name it (``technique pixel-shuffle``).

        Returns:
            The value as :attr:`type`: an int, float, str or bool, or a tuple of ints or floats.

        Raises:
            SpecError: When ``text`` is not a value of that type, or not one of :attr:`choices`.
        """
        try:
            value = _PARSERS[self.type](text)
        except ValueError:
            raise SpecError(
                f"{owner}: bad value {text!r} for parameter {self.name!r} (expected {self.type_name}: {self.help})"
            ) from None
        if self.choices is not None and value not in self.choices:
            allowed = ", ".join(str(c) for c in self.choices)
            raise SpecError(f"{owner}: {self.name}={text} is not allowed; choose one of {allowed}")
        return value

    def format(self, value: Any) -> str:
        """``value`` as the user would type it: the inverse of :meth:`parse`.

        Args:
            value: A typed value of this parameter (a tuple for ``"ints"`` and ``"floats"``).

        Returns:
            The text: a tuple's items joined by commas, a bool as ``true`` or ``false``, anything else as ``str``.
        """
        if isinstance(value, tuple):
            return ",".join(str(v) for v in value)
        if isinstance(value, bool):
            return "true" if value else "false"
        return str(value)

    def describe(self) -> dict[str, Any]:
        """This parameter as plain data, as ``aeframe list techniques`` and ``aeframe list datasets`` show it.

        Returns:
            A dict of ``name``, ``type`` (its name: ``"int"``, ``"floats"``...), ``default`` and ``choices``
                formatted as the user would type them (None where there are none), and ``help``.
        """
        return {
            "name": self.name,
            "type": self.type_name,
            "default": self.format(self.default) if self.default is not None else None,
            "help": self.help,
            "choices": [self.format(c) for c in self.choices] if self.choices else None,
        }


def resolve_params(declared: Sequence[Param], given: dict[str, str], owner: str) -> dict[str, Any]:
    """Typed values for every declared parameter: the given text parsed, defaults for the rest.

    Unknown keys are refused, naming the close matches and what the plugin accepts.
    """
    by_name = {p.name: p for p in declared}
    for key in given:
        if key not in by_name:
            close = difflib.get_close_matches(key, list(by_name), n=3)
            hint = f"did you mean {', '.join(close)}? " if close else ""
            accepted = ", ".join(by_name) or "no parameters"
            raise SpecError(f"{owner}: unknown parameter {key!r}; {hint}it accepts: {accepted}")
    return {p.name: (p.parse(given[p.name], owner) if p.name in given else p.default) for p in declared}


def non_default(declared: Sequence[Param], values: dict[str, Any]) -> dict[str, str]:
    """The parameters whose value differs from the default, formatted as the user would type them."""
    return {p.name: p.format(values[p.name]) for p in declared if values.get(p.name) != p.default}


def formatted(declared: Sequence[Param], values: dict[str, Any], added_later: Collection[str] = ()) -> dict[str, str]:
    """Every declared parameter's value, formatted as the user would type it (for records).

    Parameters named in ``added_later`` are left out while at their default: cells stored before a
    plugin offered them were recorded without them, and must keep their keys."""
    return {p.name: p.format(values[p.name]) for p in declared
            if not (p.name in added_later and values.get(p.name) == p.default)}
