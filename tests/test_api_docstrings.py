"""The API reference renders each documented argument and return value as a table (Google-style
docstrings, parsed by griffe as mkdocstrings parses them): so every public function, method and hook
documents each of its arguments, and what it returns where it returns something."""
from __future__ import annotations

import inspect
import logging
from pathlib import Path

import pytest

import aeframe
import aeframe.executors
from aeframe.contract import hookspecs

griffe = pytest.importorskip("griffe", reason="griffe comes with the docs extra (mkdocstrings)")

ROOT = Path(__file__).resolve().parent.parent


def _public_callables() -> dict[str, object]:
    """Every function exported by aeframe and aeframe.executors, every public method their classes
    define, and every hook: {qualified name: function}."""
    found = {}
    for module in (aeframe, aeframe.executors):
        for name in module.__all__:
            obj = getattr(module, name)
            if inspect.isclass(obj):
                for attr, member in vars(obj).items():
                    member = member.__func__ if isinstance(member, (staticmethod, classmethod)) else member
                    if not attr.startswith("_") and inspect.isfunction(member):
                        found[f"{name}.{attr}"] = member
            elif inspect.isfunction(obj):
                found[name] = obj
    for name in ("register_techniques", "register_datasets", "register_metrics", "register_executors"):
        found[f"hook {name}"] = getattr(hookspecs, name)
    return found


CALLABLES = _public_callables()


def _sections(function) -> dict[str, list[str]]:
    logging.getLogger("griffe").setLevel(logging.ERROR)  # a missing annotation is not this test's business
    parsed = griffe.Docstring(inspect.getdoc(function) or "").parse("google")
    sections: dict[str, list[str]] = {}
    for section in parsed:
        values = section.value if isinstance(section.value, list) else [section.value]
        sections.setdefault(section.kind.value, []).extend(getattr(v, "name", "") for v in values)
    return sections


def _returns_something(function) -> bool:
    annotation = inspect.signature(function).return_annotation
    return annotation not in (inspect.Signature.empty, None, "None") and not str(annotation).startswith("NoReturn")


@pytest.mark.parametrize("name", sorted(CALLABLES))
def test_each_argument_and_return_value_is_documented_google_style(name):
    function = CALLABLES[name]
    sections = _sections(function)
    arguments = [p for p in inspect.signature(function).parameters if p not in ("self", "cls")]
    documented = sections.get("parameters", []) + sections.get("other parameters", [])
    assert [a for a in arguments if a.lstrip("*") not in documented] == [], f"{name}: an Args: section for each"
    assert not [d for d in documented if d.lstrip("*") not in [a.lstrip("*") for a in arguments]], (
        f"{name}: documents an argument it does not take")
    if _returns_something(function):
        assert sections.get("returns") or sections.get("yields"), f"{name}: a Returns: (or Yields:) section"


def test_the_site_parses_docstrings_as_google_style():
    assert "docstring_style: google" in (ROOT / "mkdocs.yml").read_text()


def test_no_docstring_keeps_sphinx_fields():
    # ":param x:" renders as plain text under the Google parser, the unstructured text this replaced.
    stale = [name for name, function in CALLABLES.items() if ":param " in (inspect.getdoc(function) or "")
             or ":returns:" in (inspect.getdoc(function) or "")]
    assert stale == []
