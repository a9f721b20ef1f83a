"""Parsing what users type after ``-t`` and ``-d``: ``name[key=value,...]`` joined with ``+``."""
from __future__ import annotations

import re
from dataclasses import dataclass

from aeframe.errors import SpecError

# A registered name, or one qualified with the distribution that registers it (``aeframe:denoising``),
# which a name two distributions register needs (aeframe.registry.plugins).
_NAME = re.compile(r"^(?:[A-Za-z0-9][A-Za-z0-9_.-]*:)?[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass(frozen=True)
class ComponentSpec:
    """One named plugin object with the parameter text the user gave (not yet typed or checked)."""

    name: str
    given: tuple[tuple[str, str], ...] = ()

    @property
    def given_dict(self) -> dict[str, str]:
        return dict(self.given)


def _split_top_level(text: str, sep: str) -> list[str]:
    parts, depth, current = [], 0, []
    for ch in text:
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
        if ch == sep and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    parts.append("".join(current))
    return parts


def _parse_params(body: str, whole: str) -> tuple[tuple[str, str], ...]:
    pairs: list[list[str]] = []
    for piece in body.split(","):
        if "=" in piece:
            key, value = piece.split("=", 1)
            key = key.strip()
            if not key:
                raise SpecError(f"malformed parameters in {whole!r}: empty name before '='")
            pairs.append([key, value.strip()])
        elif pairs and piece.strip():
            # A comma inside a list value: sizes=16,32 continues the previous value.
            pairs[-1][1] += "," + piece.strip()
        elif piece.strip():
            raise SpecError(f"malformed parameters in {whole!r}: {piece.strip()!r} is not key=value")
    keys = [k for k, _ in pairs]
    dupes = {k for k in keys if keys.count(k) > 1}
    if dupes:
        raise SpecError(f"parameter {sorted(dupes)[0]!r} given twice in {whole!r}")
    return tuple((k, v) for k, v in pairs)


def parse_component(text: str) -> ComponentSpec:
    """``name`` or ``name[key=value,...]`` → a :class:`ComponentSpec`."""
    text = text.strip()
    match = re.fullmatch(r"([^\[\]]+)(?:\[(.*)\])?", text, flags=re.S)
    if not match or text.count("[") > 1 or text.count("]") > 1:
        raise SpecError(f"malformed name {text!r}: expected name or name[key=value,...]")
    name, body = match.group(1).strip(), match.group(2)
    if not _NAME.match(name):
        raise SpecError(f"malformed name {name!r} in {text!r}: use letters, digits, '-', '_' and '.', with at most "
                        "one ':' after the name of the distribution that registers it (aeframe:baseline)")
    return ComponentSpec(name, _parse_params(body, text) if body else ())


def parse_combination(text: str) -> tuple[ComponentSpec, ...]:
    """``a+b[k=v]+c`` → the components in the order given (the order wrappers are applied in)."""
    if not text.strip():
        raise SpecError("empty technique name: expected e.g. -t baseline or -t pixel-shuffle+feature-loss")
    if text.count("[") != text.count("]"):
        raise SpecError(f"malformed name {text!r}: unbalanced brackets")
    return tuple(parse_component(part) for part in _split_top_level(text, "+"))
