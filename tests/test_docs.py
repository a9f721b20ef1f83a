"""Meta-tests in the manner of datasette: every hook is documented with its exact signature and tested."""
from pathlib import Path

import pytest

from aeframe import hookspecs

ROOT = Path(__file__).resolve().parent.parent
HOOKS = sorted(name for name in dir(hookspecs) if name.startswith("register_"))


def _signature(name: str) -> str:
    import inspect

    params = inspect.signature(getattr(hookspecs, name)).parameters
    return f"{name}({', '.join(params)})"


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_is_documented_with_its_signature(hook):
    docs = (ROOT / "docs" / "plugins.md").read_text()
    assert f"### {_signature(hook)}" in docs


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_has_a_test(hook):
    tests = "".join(p.read_text() for p in (ROOT / "tests").glob("test_*.py"))
    assert f"def test_hook_{hook}(" in tests


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_docstring_covers_its_arguments_and_result(hook):
    import inspect

    doc = getattr(hookspecs, hook).__doc__
    for arg in inspect.signature(getattr(hookspecs, hook)).parameters:
        assert f":param {arg}:" in doc
    assert ":returns:" in doc and "firstresult" in doc


def test_the_plugin_example_in_the_docs_runs(registry, workspace):
    """The technique example in docs/plugins.md, executed as written, trains a cell."""
    import re

    import torch

    from aeframe.budget import Budget
    from aeframe.cell import run_cell
    from aeframe.environment import device_info, versions
    from conftest import cell_data
    from aeframe.plan import plan_cells, resolve_dataset, resolve_technique
    from aeframe.plugins import Registry

    docs = (ROOT / "docs" / "plugins.md").read_text()
    source = re.search(r"### register_techniques\(register\).*?```python\n(.*?)```", docs, re.S).group(1)
    namespace: dict = {}
    exec(compile(source, "docs/plugins.md", "exec"), namespace)
    found = []
    namespace["register_techniques"](found.append)
    toys = Registry(techniques={**registry.techniques, "denoising": found[0]}, datasets=registry.datasets,
                    metrics=registry.metrics)
    comp = resolve_technique("denoising[sigma=0.3]", toys)
    assert comp.label == "Denoising [sigma=0.3]"
    cpu = torch.device("cpu")
    dataset = resolve_dataset("shapes[train=256,test=64]", toys)
    cell = plan_cells([comp], [dataset], 1, Budget(epochs=1), device_info(cpu), versions(), toys)[0]
    data = cell_data(dataset.label, toys)
    record = run_cell(cell, data, list(toys.metrics.values()), cpu, workspace)
    assert record.status == "done" and record.metrics["mse"] > 0
