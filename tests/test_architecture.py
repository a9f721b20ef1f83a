"""The layout is the architecture: every package is a layer that imports only the layers below it (the
import-linter contracts in pyproject.toml, which CI also runs as ``lint-imports``), no module imports
one that imports it back, and every package says what it is for and what it may import."""
from __future__ import annotations

import ast
import tomllib
from pathlib import Path

import grimp
import pytest
from importlinter.cli import EXIT_STATUS_SUCCESS, lint_imports

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = sorted(p for p in (ROOT / "aeframe").iterdir() if (p / "__init__.py").is_file())


def _contracts() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]


def test_every_import_linter_contract_is_kept(capsys):
    status = lint_imports(str(ROOT / "pyproject.toml"), no_cache=True, no_logo=True)
    printed = capsys.readouterr().out
    assert status == EXIT_STATUS_SUCCESS, printed[-3000:]
    assert f"Contracts: {len(_contracts()['contracts'])} kept, 0 broken." in printed


def test_the_layers_contract_names_every_package_and_top_level_module():
    layers = next(c for c in _contracts()["contracts"] if c["type"] == "layers")
    named = {name.strip() for layer in layers["layers"] for name in layer.split("|")}
    modules = {p.stem for p in (ROOT / "aeframe").glob("*.py") if p.stem != "__init__"}
    assert named == {p.name for p in PACKAGES} | modules
    assert layers["exhaustive"] is True  # a new package or module must be placed before lint-imports passes


def _cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan's algorithm, without recursion)."""
    edges = {m: sorted(graph.find_modules_directly_imported_by(m)) for m in graph.modules}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    for start in sorted(edges):
        if start in index:
            continue
        work = [(start, 0)]
        while work:
            node, i = work.pop()
            if i == 0:
                index[node] = low[node] = len(index)
                stack.append(node)
                on_stack.add(node)
            if i < len(edges[node]):
                work.append((node, i + 1))
                child = edges[node][i]
                if child not in index:
                    work.append((child, 0))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            for child in edges[node]:
                if child in on_stack:
                    low[node] = min(low[node], low[child])
            if low[node] == index[node]:
                group = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.append(member)
                    if member == node:
                        break
                if len(group) > 1:
                    found.append(sorted(group))
    return found


def test_no_module_imports_one_that_imports_it_back_type_only_imports_included():
    graph = grimp.build_graph("aeframe", "aeframe_builtins", exclude_type_checking_imports=False, cache_dir=None)
    assert len(graph.modules) > 100
    assert _cycles(graph) == []


def test_the_cycle_check_finds_a_cycle():
    graph = grimp.ImportGraph()
    for module in ("p", "p.a", "p.b", "p.c"):
        graph.add_module(module)
    graph.add_import(importer="p.a", imported="p.b")
    graph.add_import(importer="p.b", imported="p.c")
    graph.add_import(importer="p.c", imported="p.a")
    assert _cycles(graph) == [["p.a", "p.b", "p.c"]]


@pytest.mark.parametrize("package", PACKAGES + sorted(p for p in (ROOT / "plugins").iterdir()
                                                      if (p / "__init__.py").is_file()), ids=lambda p: p.name)
def test_every_package_says_what_it_is_for(package):
    doc = ast.get_docstring(ast.parse((package / "__init__.py").read_text()))
    assert doc and len(doc) > 60, f"{package.name}/__init__.py needs a docstring saying what the package is for"
    if package.parent.name == "aeframe":
        assert "import" in doc, f"{package.name}/__init__.py must say what it may import"
    # The docstring alone: no code, so that importing a package never imports its modules.
    body = ast.parse((package / "__init__.py").read_text()).body
    assert all(isinstance(node, (ast.Expr, ast.ImportFrom)) for node in body)
