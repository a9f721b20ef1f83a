"""Finding plugins and building the registry of techniques, datasets, metrics and executors.

Every plugin, built-in or third-party, is an entry point in the ``aeframe`` group. Each one is
loaded and called on its own: a plugin that fails to import, fails pluggy's signature checks,
raises in a hook or registers something invalid is recorded with its error, reported in one line
and skipped, and whatever it had registered is withdrawn. Built-ins (entry points of the ``aeframe``
distribution itself) load first, then third parties in name order.

A technique, dataset or executor name that plugins of two distributions register is kept for both,
each under its qualified name ``DIST:name`` (DIST: the distribution's name as its metadata spells it,
or the entry point's name where there is none): ``aeframe:denoising`` and
``aeframe-denoising:denoising``. The bare name is then refused as ambiguous, naming both; the qualified
name is what the registry, the stored cell and the report use, and two such objects with the same title
get the distribution after it, so that their rows differ. A technique whose ``base`` is such a name
builds on its own distribution's, else on the first registered (the built-in). Names nobody else
registers do not change. Metrics keep the first registered (the built-in) and report the clash: a
metric's name keys its stored values and its column in every store, and nobody types it to choose it.
``AEFRAME_DISABLE_PLUGIN_AUTOLOAD=1`` loads the built-ins only.
"""
from __future__ import annotations

import copy
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
# No ':' in a registered name: it separates the distribution in a qualified name (``aeframe:baseline``).
_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")
QUALIFIER = ":"

# kind -> (hook name, required base class)
KINDS: dict[str, tuple[str, type]] = {
    "technique": ("register_techniques", Technique),
    "dataset": ("register_datasets", DatasetPlugin),
    "metric": ("register_metrics", Metric),
    "executor": ("register_executors", Executor),
}
# The kinds whose clashing names are qualified (see the module's docstring); how users name each kind.
QUALIFIED_KINDS: dict[str, str] = {"technique": "-t", "dataset": "-d", "executor": "--executor"}


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
    owners: dict[tuple[str, str], PluginInfo] = field(default_factory=dict)  # (kind, name) -> its plugin
    # (kind, bare name) -> the qualified names it stands for, in load order, for a name two distributions register.
    ambiguous: dict[tuple[str, str], list[str]] = field(default_factory=dict)

    def table(self, kind: str) -> dict[str, Any]:
        return {"technique": self.techniques, "dataset": self.datasets, "metric": self.metrics,
                "executor": self.executors}[kind]

    def get(self, kind: str, name: str) -> Any:
        """The registered object, or a SpecError listing the close matches (or, for a bare name that two
        distributions register, their qualified names)."""
        table = self.table(kind)
        if name in table:
            return table[name]
        qualified = self.ambiguous.get((kind, name))
        if qualified:
            count = {2: "two", 3: "three"}.get(len(qualified), str(len(qualified)))
            option = QUALIFIED_KINDS.get(kind, "")
            choices = [f"{option} {q}".strip() for q in qualified]
            raise SpecError(f"{kind} {name!r} is registered by {count} plugins; say which: "
                            f"{', '.join(choices[:-1])} or {choices[-1]}")
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

    @property
    def origin(self) -> dict[tuple[str, str], str]:
        """(kind, name) -> the name of the plugin that registered it: ``owners`` by name, as plugins' own
        tests read it (``registry.origin[("technique", "x")]``)."""
        return {key: info.name for key, info in self.owners.items()}

    def plugin_of(self, kind: str, name: str) -> PluginInfo | None:
        owner = self.owners.get((kind, name))
        if owner is None:
            return None
        # ``plugins`` is what a registry reports: one rebuilt with other entries (another version) is believed.
        return next((p for p in self.plugins if (p.name, p.dist) == (owner.name, owner.dist)), owner)


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
    clashes: Clashes = {}
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
        _register_from(registry, pm, info, f"{dist}:{ep.name}", clashes)
    _qualify(registry, clashes)
    return registry


def _fail(registry: Registry, pm: pluggy.PluginManager, info: PluginInfo, exc: BaseException, stage: str) -> None:
    info.error = describe(exc) + _upgrade_hint(exc)
    plugin_id = f"{info.dist}:{info.name}"
    if pm.has_plugin(plugin_id):
        pm.unregister(name=plugin_id)
    origin = f" ({info.dist} {info.version})" if info.dist else ""
    registry.warnings.append(f"plugin {info.name!r}{origin} {stage}: {info.error}; skipped")


# (kind, name) -> every plugin that registers it and what it registered, in load order.
Clashes = dict[tuple[str, str], list[tuple[PluginInfo, Any]]]


def _qualifier(info: PluginInfo) -> str:
    return info.dist or info.name


def _register_from(registry: Registry, pm: pluggy.PluginManager, info: PluginInfo, plugin_id: str,
                   clashes: Clashes) -> None:
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
            claims = clashes.setdefault((kind, obj.name), [])
            # Within one distribution there is no name to tell them apart: its first stays, as for metrics.
            if claims and (kind not in QUALIFIED_KINDS or _qualifier(info) in {_qualifier(i) for i, _ in claims}):
                holder = registry.owners[(kind, obj.name)].name
                registry.warnings.append(
                    f"plugin {info.name!r} registers {kind} {obj.name!r}, which plugin {holder!r} already "
                    f"registered; {holder!r}'s is kept"
                )
                continue
            claims.append((info, obj))
            info.registered.setdefault(kind, []).append(obj.name)
            if len(claims) > 1:
                continue  # qualified with the first once every plugin is loaded
            table[obj.name] = obj
            registry.owners[(kind, obj.name)] = info


def _qualify(registry: Registry, clashes: Clashes) -> None:
    """Put each name that several distributions register under their qualified names, in the place the
    first had (the order of ``registry.reference`` and of listings stays), then point each technique
    whose ``base`` is such a name at one of them (see the module's docstring)."""
    for (kind, name), claims in clashes.items():
        if len(claims) < 2:
            continue
        titles = [str(obj.title) for _, obj in claims]
        renamed: dict[str, tuple[PluginInfo, Any]] = {}
        try:
            for info, obj in claims:
                qualified = f"{_qualifier(info)}{QUALIFIER}{name}"
                # Rows and tables show titles: two alike get their distribution, so that they stay apart.
                title = f"{obj.title} ({_qualifier(info)})" if titles.count(str(obj.title)) > 1 else obj.title
                renamed[qualified] = (info, _renamed(obj, name=qualified, title=title))
        except (AttributeError, TypeError) as exc:  # a name or title that cannot be set: the first stays
            for info, _ in claims[1:]:
                info.registered[kind].remove(name)
            first = registry.owners[(kind, name)].name
            registry.warnings.append(f"{kind} {name!r} is registered by several plugins and cannot be renamed "
                                     f"({describe(exc)}); plugin {first!r}'s is kept")
            continue
        table = registry.table(kind)
        entries = list(table.items())
        table.clear()
        for key, obj in entries:
            if key != name:
                table[key] = obj
                continue
            for qualified, (info, copied) in renamed.items():
                table[qualified] = copied
                registry.owners[(kind, qualified)] = info
                names = info.registered[kind]
                names[names.index(name)] = qualified
        del registry.owners[(kind, name)]
        registry.ambiguous[(kind, name)] = list(renamed)
    for key, technique in list(registry.techniques.items()):
        choices = registry.ambiguous.get(("technique", technique.base or ""))
        if choices:
            own = f"{_qualifier(registry.owners[('technique', key)])}{QUALIFIER}{technique.base}"
            registry.techniques[key] = _renamed(technique, base=own if own in choices else choices[0])


def _renamed(obj: Any, **attributes: Any) -> Any:
    """A shallow copy of a registered object with other attributes: the plugin's own object stays as it
    made it (the same module may be loaded into other registries)."""
    copied = copy.copy(obj)
    for attribute, value in attributes.items():
        setattr(copied, attribute, value)
    return copied


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
