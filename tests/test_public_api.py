"""The built-ins use aeframe's public plugin API only, so they stay proof that a third party can do
everything they do."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

import aeframe
import aeframe.executors

PLUGINS = Path(__file__).resolve().parent.parent / "plugins"
# The public modules, and the names each exports to plugins.
PUBLIC = {"aeframe": aeframe.__all__, "aeframe.executors": aeframe.executors.__all__}
BUILTIN_MODULES = sorted(PLUGINS.rglob("*.py"))


def private_imports(source: str) -> list[str]:
    """Every import of aeframe other than ``from aeframe import <name in aeframe.__all__>`` (or the same from
    ``aeframe.executors``), as written."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [f"import {a.name}" for a in node.names if a.name.startswith("aeframe.")]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module is not None:
            if node.module in PUBLIC:
                found += [f"from {node.module} import {a.name} (not in {node.module}.__all__)" for a in node.names
                          if a.name not in PUBLIC[node.module]]
            elif node.module.startswith("aeframe."):
                found.append(f"from {node.module} import {', '.join(a.name for a in node.names)}")
    return found


def test_every_builtin_module_is_checked():
    assert len(BUILTIN_MODULES) > 30 and {p.parent.name for p in BUILTIN_MODULES} == {
        "plugins", "techniques", "datasets", "metrics", "executors"}


@pytest.mark.parametrize("path", BUILTIN_MODULES, ids=lambda path: str(path.relative_to(PLUGINS)))
def test_builtins_import_only_the_public_api(path):
    assert private_imports(path.read_text()) == [], (
        f"{path.name} must import from aeframe only `from aeframe import ...` (and `from aeframe.executors import ...`)")


def test_the_check_sees_every_kind_of_private_import():
    source = ("import aeframe.registry.plugins\nfrom aeframe.data.splits import to_unit\nfrom aeframe import Technique, SpecError\n"
              "from aeframe.executors import CellSpec, run_order\n"
              "from aeframe_builtins.techniques.layers import Autoencoder\nimport aeframe\n")
    assert private_imports(source) == ["import aeframe.registry.plugins", "from aeframe.data.splits import to_unit",
                                       "from aeframe import SpecError (not in aeframe.__all__)",
                                       "from aeframe.executors import run_order (not in aeframe.executors.__all__)"]


@pytest.mark.parametrize("module, name", [(m, n) for m, names in PUBLIC.items() for n in names])
def test_every_public_name_resolves(module, name):
    public = __import__(module, fromlist=["_"])
    assert getattr(public, name) is not None
    assert name in dir(public)


@pytest.mark.parametrize("name", ["Preparation", "CellOrder", "order_of", "run_order", "failed_order", "shippable",
                                  "unshipped", "train_cells", "prepare_metrics", "warm_up", "ExecutorSession",
                                  "ExecutorSettings", "Work", "RunProgress", "resolve_device", "UsageProblem"])
def test_names_plugins_imported_before_0_2_still_resolve_with_a_warning_saying_where_they_went(name):
    with pytest.warns(DeprecationWarning, match=rf"aeframe\.{name} is no longer part of the plugin API; docs/plugins.md"):
        assert getattr(aeframe, name) is not None
    assert name not in aeframe.__all__


def test_a_name_that_never_was_is_an_attribute_error_naming_the_api():
    with pytest.raises(AttributeError, match="the plugin API is what aeframe.__all__ lists"):
        aeframe.Tecnique
