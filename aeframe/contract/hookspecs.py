"""The plugin contract. Every hook receives a ``register`` callback and returns nothing.

Hooks are called once per process when the registry is built, for every plugin (built-in or
third-party); none of them is ``firstresult``: every implementation is called and everything it
registers is kept. A plugin may implement any subset of the hooks, and a hook implementation may
accept any subset of the arguments below, so new arguments can be added without breaking plugins.
"""
from __future__ import annotations

from typing import Callable

import pluggy

hookspec = pluggy.HookspecMarker("aeframe")


@hookspec
def register_techniques(register: Callable[..., None]) -> None:
    """Register autoencoder training techniques.

    Args:
        register: Call ``register(technique)`` once per technique, where ``technique`` is an
            instance of :class:`aeframe.Technique`. Its ``name`` is what users type after ``-t``. Where a
            plugin of another distribution registers the same name, both are kept, each under its
            qualified name ``DIST:name`` (``-t aeframe:denoising``, ``-t aeframe-denoising:denoising``),
            and the bare name is refused as ambiguous.

    Returns:
        Nothing; the return value is ignored. Not ``firstresult``: every plugin is called.
    """


@hookspec
def register_datasets(register: Callable[..., None]) -> None:
    """Register image datasets.

    Args:
        register: Call ``register(dataset)`` once per dataset, where ``dataset`` is an instance
            of :class:`aeframe.DatasetPlugin`. Its ``name`` is what users type after ``-d``; on a clash
            with another distribution's, as for techniques.

    Returns:
        Nothing; the return value is ignored. Not ``firstresult``: every plugin is called.
    """


@hookspec
def register_metrics(register: Callable[..., None]) -> None:
    """Register evaluation metrics, computed for every cell on the dataset's test split.

    Args:
        register: Call ``register(metric)`` once per metric, where ``metric`` is an instance of
            :class:`aeframe.Metric`. Its ``name`` keys the stored value; its ``title`` heads the column.
            On a name clash the first registered (the built-in) is kept and the clash is reported.
            The instance is a prototype: each cell is evaluated with a deep copy of it.

    Returns:
        Nothing; the return value is ignored. Not ``firstresult``: every plugin is called.
    """


@hookspec
def register_executors(register: Callable[..., None]) -> None:
    """Register executors: what trains the planned cells, and where (this process, a Ray cluster, ...).

    Args:
        register: Call ``register(executor)`` once per executor, where ``executor`` is an
            instance of :class:`aeframe.Executor`. Its ``name`` is what users type after ``--executor``;
            on a clash with another distribution's, as for techniques.

    Returns:
        Nothing; the return value is ignored. Not ``firstresult``: every plugin is called.
    """
