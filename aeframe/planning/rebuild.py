"""A cell spec's live parts, rebuilt from the plugins installed where the cell trains.

Plugin objects never travel with a cell: a technique is code, and the process that trains the cell
runs its own installed copy. :func:`runnable` is the one way from a spec to the objects that train
it, in the driver's process and on a worker alike. It refuses, naming the plugin and the node, when a
plugin is missing or is another version than the one the cell was planned with: the cell's key
would not describe what it trained.
"""
from __future__ import annotations

import socket
from dataclasses import dataclass

from aeframe.cells.budget import Budget
from aeframe.cells.spec import CellSpec
from aeframe.contract.params import resolve_params
from aeframe.errors import AeframeError
from aeframe.planning.composition import Composition, Member
from aeframe.planning.plan import DatasetChoice
from aeframe.registry.plugins import Registry


class PluginMismatch(AeframeError):
    """The plugins installed here cannot rebuild the cell that was planned."""


@dataclass
class RunnableCell:
    """A spec's live parts: the composed techniques, the dataset with typed parameters, the budget."""

    spec: CellSpec
    composition: Composition
    dataset: DatasetChoice
    budget: Budget

    @property
    def seed(self) -> int:
        return self.spec.config.seed or 0


def node_name() -> str:
    """This machine as failure messages name it: host name and address."""
    host = socket.gethostname()
    try:
        address = socket.gethostbyname(host)
    except OSError:
        return host
    return host if address.startswith("127.") else f"{host} ({address})"


def _why_missing(registry: Registry, kind: str, name: str, owner: str | None) -> str:
    """Why ``registry`` lacks ``name``: that several plugins register it here (so it is known only by their
    qualified names), the load error of the plugin that provided it where the cell was planned, when it
    failed here, else that none provides it (and which plugins failed to load here)."""
    qualified = registry.ambiguous.get((kind, name))
    if qualified:
        return f"{len(qualified)} plugins register the {kind} {name!r} here ({', '.join(qualified)})"
    owner_name = owner.split("'")[1] if owner and owner.count("'") >= 2 else None
    ours = [w for w in registry.warnings if owner_name and w.startswith(f"plugin {owner_name!r}")]
    if ours:
        return ours[0]
    failed = [w for w in registry.warnings if " failed to load: " in w or " is broken: " in w]
    also = f" (plugins that failed to load here: {'; '.join(failed)})" if failed else ""
    return f"no installed plugin registers the {kind} {name!r}{also}"


def runnable(spec: CellSpec, registry: Registry) -> RunnableCell:
    """``spec``'s cell rebuilt from ``registry``; :class:`PluginMismatch` naming the plugin when it cannot
    be rebuilt exactly (another parameter that a newer plugin refuses raises its own error)."""
    config = spec.config
    where = f"on node {node_name()}"
    members = []
    for ref in config.techniques:
        owner = config.plugins.get(ref.name)
        technique = registry.techniques.get(ref.name)
        if technique is None:
            raise PluginMismatch(
                f"technique {ref.name!r} ({owner or 'an unknown plugin'} on the driver) is not available {where}: "
                f"{_why_missing(registry, 'technique', ref.name, owner)}; install the same plugins on every node "
                "(docs/distributed.md)")
        info = registry.plugin_of("technique", ref.name)
        here = info.version if info else None
        if here != ref.version:
            raise PluginMismatch(
                f"technique {ref.name!r} is version {here} {where} but {ref.version} on the driver; "
                "install the same version on every node (docs/distributed.md)")
        members.append(Member(technique, resolve_params(technique.accepted_params(), ref.params, f"technique {ref.name}")))
    dataset = registry.datasets.get(config.dataset.name)
    if dataset is None:
        raise PluginMismatch(f"dataset {config.dataset.name!r} is not available {where}: "
                             f"{_why_missing(registry, 'dataset', config.dataset.name, None)}; install the same "
                             "plugins on every node (docs/distributed.md)")
    missing = [name for name in spec.metrics if name not in registry.metrics]
    if missing:
        raise PluginMismatch(f"metric {missing[0]!r} is not available {where}: "
                             f"{_why_missing(registry, 'metric', missing[0], None)}; install the same plugins on "
                             "every node (docs/distributed.md)")
    choice = DatasetChoice(dataset, resolve_params(dataset.params, config.dataset.params, f"dataset {dataset.name}"))
    composition = Composition(members, lookup=registry.techniques.get, lr=config.lr, reference=registry.reference)
    budget = Budget(epochs=config.budget.epochs, seconds=config.budget.seconds)
    return RunnableCell(spec, composition, choice, budget)
