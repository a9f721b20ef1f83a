"""Entry-point discovery: real dist-info folders on sys.path, loaded as pip would have installed them."""
from __future__ import annotations

import sys
import textwrap

import pytest

from aeframe.registry.plugins import build_registry

GOOD = '''
from aeframe import Technique, hookimpl
from aeframe_builtins.techniques.baseline import Baseline

class Wider(Technique):
    name, title, base = "wider", "Wider", "baseline"
    description = "a third-party technique"

    def wrap_model(self, model, ctx):
        return model

@hookimpl
def register_techniques(register):
    register(Wider())
'''
BROKEN_IMPORT = "import a_module_that_does_not_exist\n"
BAD_REGISTRATION = '''
from aeframe import Technique, hookimpl

class Fine(Technique):
    name, title, base = "fine-but-withdrawn", "Fine", "baseline"
    def wrap_loss(self, loss, ctx):
        return loss

@hookimpl
def register_techniques(register):
    register(Fine())
    register("not a technique")
'''
CLASH = '''
from aeframe import Technique, hookimpl

class Impostor(Technique):
    name, title = "baseline", "Impostor"
    def build_model(self, ctx):
        return None

@hookimpl
def register_techniques(register):
    register(Impostor())
'''
TYPO_HOOK = '''
from aeframe import hookimpl

@hookimpl
def register_technique(register):
    pass
'''


def install_fake(tmp_path, monkeypatch, dist: str, module: str, source: str, ep_name: str | None = None) -> None:
    """Write ``dist``-0.1.dist-info with an ``aeframe`` entry point, and the module it names."""
    # Wheels name the folder after the normalised distribution name (dashes become underscores).
    info = tmp_path / f"{dist.replace('-', '_')}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[aeframe]\n{ep_name or dist} = {module}\n")
    (tmp_path / f"{module}.py").write_text(textwrap.dedent(source))
    monkeypatch.syspath_prepend(str(tmp_path))


@pytest.fixture(autouse=True)
def forget_fake_modules():
    before = set(sys.modules)
    yield
    for name in set(sys.modules) - before:
        if name.startswith("fake_"):
            del sys.modules[name]


def test_third_party_plugin_found_through_its_dist_info(tmp_path, monkeypatch):
    install_fake(tmp_path, monkeypatch, "aeframe-wider", "fake_wider", GOOD, "wider")
    registry = build_registry(autoload=True)
    assert "wider" in registry.techniques and "baseline" in registry.techniques
    info = next(p for p in registry.plugins if p.name == "wider")
    assert (info.dist, info.version, info.builtin) == ("aeframe-wider", "0.1", False)
    assert info.hooks == ["register_techniques"] and info.registered == {"technique": ["wider"]}
    assert registry.warnings == []


def test_broken_plugin_beside_a_good_one_is_reported_and_skipped(tmp_path, monkeypatch):
    install_fake(tmp_path, monkeypatch, "aeframe-wider", "fake_wider", GOOD, "wider")
    install_fake(tmp_path, monkeypatch, "aeframe-broken", "fake_broken", BROKEN_IMPORT, "broken")
    registry = build_registry(autoload=True)
    assert "wider" in registry.techniques
    broken = next(p for p in registry.plugins if p.name == "broken")
    assert broken.error == "ModuleNotFoundError: No module named 'a_module_that_does_not_exist'"
    assert registry.warnings == [
        "plugin 'broken' (aeframe-broken 0.1) failed to load: "
        "ModuleNotFoundError: No module named 'a_module_that_does_not_exist'; skipped"
    ]


def test_invalid_registration_withdraws_everything_the_plugin_registered(tmp_path, monkeypatch):
    install_fake(tmp_path, monkeypatch, "aeframe-bad", "fake_bad", BAD_REGISTRATION, "bad")
    registry = build_registry(autoload=True)
    assert "fine-but-withdrawn" not in registry.techniques
    bad = next(p for p in registry.plugins if p.name == "bad")
    assert bad.error == "InvalidPlugin: registered a str, not an aeframe.Technique"
    assert bad.registered == {}
    assert "plugin 'bad' (aeframe-bad 0.1) is broken" in registry.warnings[0]


def test_name_clash_keeps_both_under_their_distributions_names(tmp_path, monkeypatch):
    # More in tests/test_name_clashes.py.
    install_fake(tmp_path, monkeypatch, "aeframe-impostor", "fake_impostor", CLASH, "impostor")
    registry = build_registry(autoload=True)
    assert "baseline" not in registry.techniques
    assert registry.techniques["aeframe:baseline"].title == "Baseline"
    assert registry.techniques["aeframe-impostor:baseline"].title == "Impostor"
    assert registry.ambiguous == {("technique", "baseline"): ["aeframe:baseline", "aeframe-impostor:baseline"]}
    # The built-ins that build on the Baseline still do, and it is still the reference.
    assert registry.techniques["pixel-shuffle"].base == "aeframe:baseline"
    assert registry.reference is registry.techniques["aeframe:baseline"]
    assert registry.warnings == []


def test_misspelled_hook_is_caught(tmp_path, monkeypatch):
    install_fake(tmp_path, monkeypatch, "aeframe-typo", "fake_typo", TYPO_HOOK, "typo")
    registry = build_registry(autoload=True)
    typo = next(p for p in registry.plugins if p.name == "typo")
    assert typo.error.startswith("PluginValidationError") and "register_technique" in typo.error


def test_disable_autoload_loads_builtins_only(tmp_path, monkeypatch):
    install_fake(tmp_path, monkeypatch, "aeframe-wider", "fake_wider", GOOD, "wider")
    monkeypatch.setenv("AEFRAME_DISABLE_PLUGIN_AUTOLOAD", "1")
    registry = build_registry()
    assert "wider" not in registry.techniques and "baseline" in registry.techniques
    wider = next(p for p in registry.plugins if p.name == "wider")
    assert wider.skipped == "AEFRAME_DISABLE_PLUGIN_AUTOLOAD is set"
    assert "fake_wider" not in sys.modules


def test_builtins_come_through_the_same_entry_points(registry):
    builtin = {p.name: p for p in registry.plugins if p.builtin}
    assert {"baseline", "shapes", "mnist_family", "cifar10", "pixel_metrics"} <= set(builtin)
    assert all(p.dist == "aeframe" and p.error is None for p in builtin.values())
    assert set(registry.datasets) == {"mnist", "fashion-mnist", "cifar10", "shapes"}
    assert set(registry.metrics) >= {"mae", "mse"}


def test_hook_register_techniques(registry):
    from aeframe import Technique

    assert all(isinstance(t, Technique) for t in registry.techniques.values())
    assert registry.plugin_of("technique", "baseline").name == "baseline" == registry.origin[("technique", "baseline")]


def test_hook_register_datasets(registry):
    from aeframe import DatasetPlugin

    assert all(isinstance(d, DatasetPlugin) for d in registry.datasets.values())


def test_hook_register_metrics(registry):
    assert registry.metrics["mse"].better == "lower" and registry.metrics["mae"].title == "MAE"


OLD_IMPORTS = '''
from aeframe import Technique, hookimpl
from aeframe.batches import to_unit

@hookimpl
def register_techniques(register):
    pass
'''


def test_a_plugin_written_for_0_1_that_imports_an_internal_module_is_told_what_to_change(tmp_path, monkeypatch):
    install_fake(tmp_path, monkeypatch, "aeframe-old", "fake_old", OLD_IMPORTS, "old")
    registry = build_registry(autoload=True)
    old = next(p for p in registry.plugins if p.name == "old")
    assert old.error == ("ModuleNotFoundError: No module named 'aeframe.batches'; import what a plugin needs from "
                         "aeframe itself (from aeframe import ...): docs/plugins.md, 'Plugins written for aeframe 0.1'")
