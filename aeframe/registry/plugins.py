"""Finding plugins and building the registry of techniques, datasets, metrics and executors.

Every plugin, built-in or third-party, is an entry point in the ``aeframe`` group. Each one is
loaded and called on its own: a plugin that fails to import, fails pluggy's signature checks,
raises in a hook or registers something invalid is recorded with its error, reported in one line
and skipped, and whatever it had registered is withdrawn. Built-ins (entry points of the ``aeframe``
distribution itself) load first, so on a name clash the built-in wins; the clash is reported.
``AEFRAME_DISABLE_PLUGIN_AUTOLOAD=1`` loads the built-ins only.
"""
from __future__ import annotations

import difflib
import os
import re
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points
from typing import Any, Callable, Iterable

import pluggy

from aeframe.contract import hookspecs
from aeframe.contract.dataset import DatasetPlugin
from aeframe.contract.executor import Executor
from aeframe.contract.metric import Metric
from aeframe.contract.params import Param
from aeframe.contract.technique import PART_METHODS, Technique
from aeframe.errors import SpecError, describe
from aeframe.registry.checks import misspelt_members, technique_problems

GROUP = "aeframe"
BUILTIN_DIST = "aeframe"
DISABLE_ENV = "AEFRAME_DISABLE_PLUGIN_AUTOLOAD"
_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")

# kind -> (hook name, required base class)
KINDS: dict[str, tuple[str, type]] = {
    "technique": ("register_techniques", Technique),
    "dataset": ("register_datasets", DatasetPlugin),
    "metric": ("register_metrics", Metric),
    "executor": ("register_executors", Executor),
}


class InvalidPlugin(Exception):
    """Something a plugin registered does not meet the contract."""


@dataclass
class PluginInfo:
    """One entry point as ``aeframe plugins`` shows it."""

    name: str
    dist: str | None
    version: str | None
    builtin: bool
    hooks: list[str] = field(default_factory=list)
    registered: dict[str, list[str]] = field(default_factory=dict)
    error: str | None = None
    skipped: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "distribution": self.dist,
            "version": self.version,
            "builtin": self.builtin,
            "hooks": self.hooks,
            "registered": self.registered,
            "error": self.error,
            "skipped": self.skipped,
        }


@dataclass
class Registry:
    """Name -> object for every kind, plus what ``aeframe plugins`` reports."""

    techniques: dict[str, Technique] = field(default_factory=dict)
    datasets: dict[str, DatasetPlugin] = field(default_factory=dict)
    metrics: dict[str, Metric] = field(default_factory=dict)
    executors: dict[str, Executor] = field(default_factory=dict)
    plugins: list[PluginInfo] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    origin: dict[tuple[str, str], str] = field(default_factory=dict)  # (kind, name) -> plugin name

    def table(self, kind: str) -> dict[str, Any]:
        return {"technique": self.techniques, "dataset": self.datasets, "metric": self.metrics,
                "executor": self.executors}[kind]

    def get(self, kind: str, name: str) -> Any:
        """The registered object, or a SpecError listing the close matches."""
        table = self.table(kind)
        if name in table:
            return table[name]
        close = difflib.get_close_matches(name, list(table), n=3, cutoff=0.5)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        raise SpecError(f"unknown {kind} {name!r}; {hint}`aeframe list {kind}s` shows them all")

    def technique(self, name: str) -> Technique:
        return self.get("technique", name)

    def dataset(self, name: str) -> DatasetPlugin:
        return self.get("dataset", name)

    @property
    def reference(self) -> Technique | None:
        """The reference technique (``Technique.reference``; the study's Baseline): the one the report
        compares the others with, and the base of a technique that names none. The first registered
        wins, and built-ins are registered first."""
        return next((t for t in self.techniques.values() if t.reference), None)

    def plugin_of(self, kind: str, name: str) -> PluginInfo | None:
        owner = self.origin.get((kind, name))
        return next((p for p in self.plugins if p.name == owner), None)


def _validate(kind: str, obj: Any) -> None:
    """Refuse what breaks the contract of its kind, with every reason in one message."""
    base = KINDS[kind][1]
    if isinstance(obj, type) and issubclass(obj, base):
        raise InvalidPlugin(f"registered the class {obj.__name__}; register an instance: register({obj.__name__}())")
    if not isinstance(obj, base):
        raise InvalidPlugin(f"registered a {type(obj).__name__}, not an aeframe.{base.__name__}")
    name = getattr(obj, "name", "")
    if not isinstance(name, str) or not _NAME.match(name):
        raise InvalidPlugin(f"registered a {kind} with an invalid name {name!r} (use lowercase letters, digits, '-')")
    owner = f"{kind} {name!r}"
    problems = misspelt_members(obj, base, PART_METHODS if kind == "technique" else (), owner)
    if not str(getattr(obj, "title", "")).strip():
        problems.append(f"{owner} has no title; set title, the name tables show")
    if kind == "metric" and obj.better not in ("lower", "higher"):
        problems.append(f"{owner}: better must be 'lower' or 'higher', not {obj.better!r}")
    params = getattr(obj, "params", ())
    if not all(isinstance(p, Param) for p in params):
        problems.append(f"{owner}: params must be aeframe.Param objects")
    if kind == "technique":
        problems += technique_problems(obj)
    if problems:
        raise InvalidPlugin("; ".join(problems))


def _dist(ep: EntryPoint) -> tuple[str | None, str | None]:
    dist = getattr(ep, "dist", None)
    if dist is None:
        return None, None
    return dist.metadata["Name"], dist.version


def _ordered(eps: Iterable[EntryPoint]) -> list[EntryPoint]:
    """Built-ins first, then third parties by name; the same entry point listed twice counts once."""
    seen, unique = set(), []
    for ep in eps:
        ident = (ep.name, ep.value, _dist(ep)[0])
        if ident not in seen:
            seen.add(ident)
            unique.append(ep)
    return sorted(unique, key=lambda ep: (_dist(ep)[0] != BUILTIN_DIST, ep.name))


def build_registry(eps: Iterable[EntryPoint] | None = None, *, autoload: bool | None = None) -> Registry:
    """Load every entry point of the ``aeframe`` group (or those given) into a new registry."""
    if eps is None:
        eps = entry_points(group=GROUP)
    if autoload is None:
        autoload = os.environ.get(DISABLE_ENV, "").strip().lower() not in ("1", "true", "yes")
    registry = Registry()
    pm = pluggy.PluginManager(GROUP)
    pm.add_hookspecs(hookspecs)
    for ep in _ordered(eps):
        dist, version = _dist(ep)
        info = PluginInfo(name=ep.name, dist=dist, version=version, builtin=dist == BUILTIN_DIST)
        registry.plugins.append(info)
        if not info.builtin and not autoload:
            info.skipped = f"{DISABLE_ENV} is set"
            continue
        try:
            module = ep.load()
            pm.register(module, name=f"{dist}:{ep.name}")
            pm.check_pending()
        except Exception as exc:  # a plugin's import or signature error must not stop the others
            _fail(registry, pm, info, exc, stage="failed to load")
            continue
        _register_from(registry, pm, info, f"{dist}:{ep.name}")
    return registry


def _fail(registry: Registry, pm: pluggy.PluginManager, info: PluginInfo, exc: BaseException, stage: str) -> None:
    info.error = describe(exc) + _upgrade_hint(exc)
    plugin_id = f"{info.dist}:{info.name}"
    if pm.has_plugin(plugin_id):
        pm.unregister(name=plugin_id)
    origin = f" ({info.dist} {info.version})" if info.dist else ""
    registry.warnings.append(f"plugin {info.name!r}{origin} {stage}: {info.error}; skipped")


def _register_from(registry: Registry, pm: pluggy.PluginManager, info: PluginInfo, plugin_id: str) -> None:
    plugin = pm.get_plugin(plugin_id)
    staged: dict[str, list[Any]] = {kind: [] for kind in KINDS}
    try:
        for kind, (hook_name, _) in KINDS.items():
            for impl in getattr(pm.hook, hook_name).get_hookimpls():
                if impl.plugin is not plugin:
                    continue
                info.hooks.append(hook_name)
                register: Callable[[Any], None] = staged[kind].append
                kwargs = {"register": register}
                impl.function(**{k: v for k, v in kwargs.items() if k in impl.argnames})
        for kind, objs in staged.items():
            for obj in objs:
                _validate(kind, obj)
    except Exception as exc:  # withdraw everything this plugin registered: all or nothing
        info.hooks.clear()
        _fail(registry, pm, info, exc, stage="is broken")
        return
    for kind, objs in staged.items():
        table = registry.table(kind)
        for obj in objs:
            if obj.name in table:
                holder = registry.origin[(kind, obj.name)]
                registry.warnings.append(
                    f"plugin {info.name!r} registers {kind} {obj.name!r}, which plugin {holder!r} already "
                    f"registered; {holder!r}'s is kept"
                )
                continue
            table[obj.name] = obj
            registry.origin[(kind, obj.name)] = info.name
            info.registered.setdefault(kind, []).append(obj.name)


def _upgrade_hint(exc: BaseException) -> str:
    """What to change when a plugin written for aeframe 0.1 imports a module that is no longer public."""
    missing = getattr(exc, "name", None) or ""
    if isinstance(exc, ImportError) and missing.startswith("aeframe.") and not missing.startswith("aeframe.testing"):
        return ("; import what a plugin needs from aeframe itself (from aeframe import ...): docs/plugins.md, "
                "'Plugins written for aeframe 0.1'")
    return ""


_registry: Registry | None = None


def get_registry() -> Registry:
    """The process-wide registry, built on first use."""
    global _registry
    if _registry is None:
        _registry = build_registry()
    return _registry
