"""The built-in executors, registered through the same hook as a third party's.

Nothing heavy is imported here: ``aeframe list executors`` must not pay for torch or Ray.
"""
from __future__ import annotations

import importlib.util
import re

from aeframe import Executor, hookimpl
from aeframe.executors import ExecutorSession, ExecutorSettings


class Local(Executor):
    name = "local"
    title = "Local"
    description = ("every cell one after another in this process, on --device; with --cells-per-device N, "
                   "N at once in worker processes")
    accepts = ("cells_per_device",)

    def open(self, settings: ExecutorSettings) -> ExecutorSession:
        from aeframe_builtins.executors.local_session import LocalSession

        return LocalSession(settings)


def _ray_requirement() -> str:
    """The ``ray`` extra's requirement as installed aeframe declares it (``ray>=2.9``)."""
    from importlib.metadata import PackageNotFoundError, requires

    try:
        declared = requires("aeframe") or []
    except PackageNotFoundError:
        declared = []
    return next((r.split(";")[0].strip() for r in declared if re.search(r"""extra\s*==\s*["']ray["']""", r)), "ray")


class Ray(Executor):
    name = "ray"
    title = "Ray"
    description = ("each cell a Ray task with its own CPUs or GPUs, on the cluster at --ray-address "
                   "(or RAY_ADDRESS), else on a local cluster started on this machine")
    accepts = ("address", "gpus_per_cell", "cpus_per_cell", "retries")

    def missing(self) -> str | None:
        try:
            found = importlib.util.find_spec("ray") is not None
        except (ImportError, ValueError):  # a broken or blocked installation
            found = False
        # aeframe is installed from a clone or a wheel, not an index: name the extra's own requirement.
        return None if found else (f"Ray is not installed; install it with: pip install '{_ray_requirement()}' (in "
                                   "aeframe's clone: .venv/bin/pip install -e '.[ray]')")

    def open(self, settings: ExecutorSettings) -> ExecutorSession:
        from aeframe_builtins.executors.ray_session import RaySession

        return RaySession(settings)


@hookimpl
def register_executors(register):
    register(Local())
    register(Ray())
