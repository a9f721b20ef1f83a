"""The built-ins use aeframe's public plugin API only, so they stay proof that a third party can do
everything they do."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

import aeframe

PLUGINS = Path(__file__).resolve().parent.parent / "plugins"


def private_imports(source: str) -> list[str]:
    """Every import of aeframe other than ``from aeframe import <name in aeframe.__all__>``, as written."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [f"import {a.name}" for a in node.names if a.name.startswith("aeframe.")]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module is not None:
            if node.module.startswith("aeframe."):
                found.append(f"from {node.module} import {', '.join(a.name for a in node.names)}")
            elif node.module == "aeframe":
                found += [f"from aeframe import {a.name} (not in aeframe.__all__)" for a in node.names
                          if a.name not in aeframe.__all__]
    return found


@pytest.mark.parametrize("path", sorted(PLUGINS.glob("*.py")), ids=lambda path: path.name)
def test_builtins_import_only_the_public_api(path):
    assert private_imports(path.read_text()) == [], f"{path.name} must import from aeframe only `from aeframe import ...`"


def test_the_check_sees_every_kind_of_private_import():
    source = ("import aeframe.registry.plugins\nfrom aeframe.data.splits import to_unit\nfrom aeframe import Technique, SpecError\n"
              "from aeframe_builtins.techniques.layers import Autoencoder\nimport aeframe\n")
    assert private_imports(source) == ["import aeframe.registry.plugins", "from aeframe.data.splits import to_unit",
                                       "from aeframe import SpecError (not in aeframe.__all__)"]


@pytest.mark.parametrize("name", aeframe.__all__)
def test_every_public_name_resolves(name):
    assert getattr(aeframe, name) is not None
    assert name in dir(aeframe)
