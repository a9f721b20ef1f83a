"""The ``ray`` executor's driver side: connect, choose each cell's resources, submit, collect.

Every cell is a Ray task reserving ``--cpus-per-cell`` CPUs and ``--gpus-per-cell`` GPUs; Ray
places it on a node with room and starts it again when its worker process dies (``--retries``).
Each dataset goes into the object store once, and its metrics are prepared once, by one task whose
result every cell of the dataset receives. Records come back as cells end, in any order; the
driver alone writes the store.
"""
from __future__ import annotations

import logging
import math
import os
import signal
import socket
import sys
import threading
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Sequence, TypeVar

import ray

from aeframe.executors import CellSpec, ExecutorSession, ExecutorSettings, RunProgress, UsageProblem, Work
from aeframe_builtins.executors.ray_tasks import (
    TaskSetting,
    call_on_cell_device,
    prepare_metrics_task,
    train_cell_task,
    warm_worker,
)

T = TypeVar("T")
ADDRESS_ENV = "RAY_ADDRESS"
_WAIT_SECONDS = 0.5  # how often the driver wakes to notice Ctrl-C while cells run
# Imported by each worker of a local cluster as it starts, while ray.init still waits for the node:
# torch alone takes a worker 1-2 s, which its first cell would otherwise wait for.
_PRELOADED = ("torch", "aeframe.execution.remote", "aeframe_builtins.executors.ray_tasks")
_WARMED_AT_MOST = 64  # warm-up tasks at the start: one per slot, up to this many


def _first_line(exc: BaseException) -> str:
    """``Type: message``, first line only: Ray's errors carry whole tracebacks."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def _reachable(address: str) -> str | None:
    """None when something listens at a plain ``host:port`` address (or it is not one); else why not.

    Ray itself keeps retrying an address where nothing listens for minutes before giving up.
    """
    host, _, port = address.rpartition(":")
    if "://" in address or not host or not port.isdigit():
        return None
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as exc:
        return exc.strerror or _first_line(exc)
    return None


def _connect(address: str | None, say: Callable[[str], None]) -> bool:
    """Connect to the cluster at ``address``, or start a local one; True when this process started it."""
    if ray.is_initialized():  # a cluster this process already joined (a notebook, the tests)
        return False
    with _own_sigterm():
        return _init(address, say)


@contextmanager
def _own_sigterm() -> Iterator[None]:
    """Keep aeframe's SIGTERM handling (stop like Ctrl-C: finished cells saved, exit 143) while ray.init
    runs and after: it installs handlers of its own that exit at once, saying nothing (exit 15, or 1)."""
    main = threading.current_thread() is threading.main_thread()
    previous = signal.getsignal(signal.SIGTERM) if main else None
    try:
        from ray._private import utils as ray_utils

        installs = ray_utils.set_sigterm_handler
        ray_utils.set_sigterm_handler = lambda handler: None
    except (ImportError, AttributeError):  # Ray's internals moved: its handlers are undone after ray.init
        ray_utils = None
    try:
        yield
    finally:
        if ray_utils is not None:
            ray_utils.set_sigterm_handler = installs
        if main and previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _init(address: str | None, say: Callable[[str], None]) -> bool:
    options: dict[str, Any] = {"include_dashboard": False, "logging_level": logging.WARNING,
                               "log_to_driver": True}
    if address:
        try:
            unreachable = _reachable(address)
            if unreachable:
                raise ConnectionError(unreachable)
            ray.init(address=address, **options)
            return False
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise UsageProblem(f"cannot connect to the Ray cluster at {address} ({_first_line(exc)}); start it "
                               "with `ray start --head` or fix --ray-address / RAY_ADDRESS") from None
    running = _running_cluster()
    if running:
        say(f"starting a local Ray cluster on this machine, separate from the one `ray start` runs here at {running} "
            f"(give --ray-address {running} to use that one instead)")
    else:
        say("starting a local Ray cluster on this machine (give --ray-address or RAY_ADDRESS to use a running one)")
    try:
        # "local": a new cluster even where `ray start` left its address for ray.init to join; joining
        # it would refuse the workers' preloaded imports (_system_config belongs to the cluster's start).
        ray.init(address="local", **options, _system_config={"preload_python_modules": list(_PRELOADED)})
        return True
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise UsageProblem(f"cannot start a local Ray cluster on this machine ({_first_line(exc)}); fix what it "
                           "names, or start one with `ray start --head` and give its address with --ray-address"
                           ) from None


def _running_cluster() -> str | None:
    """The address of a cluster that `ray start` runs on this machine and that answers, else None.

    `ray start` leaves it where a plain ray.init looks (RAY_TMPDIR, else /tmp, then ray/ray_current_cluster);
    `ray stop` removes it, but a cluster that died otherwise leaves it behind, hence the check that it answers.
    """
    try:
        from ray._private.utils import read_ray_address

        found = read_ray_address()
    except Exception:  # Ray's internals moved: the line just cannot name it
        return None
    return found if found and _reachable(found) is None else None


def _nodes() -> list[dict[str, float]]:
    """The resources of every live node."""
    return [node.get("Resources", {}) for node in ray.nodes() if node.get("Alive")]


def _check_gpus(gpus: float) -> None:
    if gpus < 0:
        raise UsageProblem(f"--gpus-per-cell {gpus:g}: give 0 (CPU cells), a fraction such as 0.5, or 1")
    if gpus > 1:
        raise UsageProblem(f"--gpus-per-cell {gpus:g}: a cell trains on one GPU; give 1, or a fraction to share one")


class RaySession(ExecutorSession):
    """Cells as Ray tasks on the cluster this session joined (or started)."""

    def __init__(self, settings: ExecutorSettings):
        self.settings = settings
        if settings.device.strip().lower().startswith("cuda:"):
            raise UsageProblem(f"--device {settings.device}: with --executor ray, Ray chooses each cell's GPU; "
                               "give --device cuda (or auto) and --gpus-per-cell")
        if not sys.stderr.isatty():
            # Ray colours the prefix of the workers' lines it forwards; in a log file that is noise.
            os.environ.setdefault("RAY_COLOR_PREFIX", "0")
        self.started = _connect(settings.address or os.environ.get(ADDRESS_ENV), settings.say)
        try:
            self._choose_resources()
            for _ in range(min(self.slots, _WARMED_AT_MOST)):
                warm_worker.options(**self.resources).remote(self.task)
        except BaseException:
            self.close()
            raise

    def _choose_resources(self) -> None:
        settings = self.settings
        nodes = _nodes()
        gpus_in_cluster = sum(n.get("GPU", 0) for n in nodes)
        asked = settings.device.strip().lower()
        if asked == "cuda" and not gpus_in_cluster:
            raise UsageProblem("--device cuda asked for, but the Ray cluster has no GPUs; use --device cpu or auto")
        gpus = settings.gpus_per_cell if settings.gpus_per_cell is not None else (1.0 if gpus_in_cluster and asked != "cpu" else 0.0)
        _check_gpus(gpus)
        if gpus and not any(n.get("GPU", 0) >= gpus for n in nodes):
            raise UsageProblem(f"--gpus-per-cell {gpus:g}: no node of the Ray cluster has a GPU; give --gpus-per-cell 0")
        # A cell on a CPU gets a whole node by default, as with `local`; a GPU cell needs one thread to feed it.
        node_cpus = [int(n.get("CPU", 0)) for n in nodes if n.get("CPU", 0) >= 1]
        cpus = settings.cpus_per_cell or (1 if gpus else min(node_cpus, default=1))
        if cpus < 1 or not any(c >= cpus for c in node_cpus):
            raise UsageProblem(f"--cpus-per-cell {cpus}: no node of the Ray cluster has that many CPUs "
                               f"(the largest has {max(node_cpus, default=0)})")
        self.device_type = "cuda" if gpus and asked != "cpu" else "cpu"
        self.resources = {"num_cpus": cpus, "num_gpus": gpus}
        self.task = TaskSetting(self.device_type, cpus, gpus, settings.data_dir, settings.cache_dir)
        # How many cells fit at once: on each node, as many as its CPUs (and GPUs) allow.
        self.slots = sum(min(int(n.get("CPU", 0) // cpus), int(n.get("GPU", 0) // gpus) if gpus else math.inf)
                         for n in nodes)
        kind = f"{gpus:g} GPU and {cpus} CPU" if gpus else f"{cpus} CPU{'s' if cpus > 1 else ''}"
        origin = "a local Ray cluster" if self.started else "the Ray cluster"
        self.where = f"{origin} ({len(nodes)} node{'s' if len(nodes) != 1 else ''}), {kind} per cell, {self.slots} at once"

    def on_cell_device(self, fn: Callable[[Any], T]) -> T:
        failed, value = ray.get(call_on_cell_device.options(**self.resources).remote(fn, self.task))
        if failed:
            raise value
        return value

    def _options(self, spec: CellSpec) -> dict[str, Any]:
        # A dead worker is retried; an exception is not (train_cell never raises for a technique's error).
        return {**self.resources, "max_retries": self.settings.retries, "retry_exceptions": False,
                "name": f"aeframe: {spec.title}"}

    def run(self, groups: Sequence, work: Work) -> Iterator:
        in_flight: dict[ray.ObjectRef, CellSpec] = {}
        for group in groups:
            arrays = ray.put(group.data.to_arrays())  # once per dataset; zero-copy for the workers of a node
            prepared = prepare_metrics_task.options(**self.resources, max_retries=self.settings.retries).remote(
                group.cells[0], arrays, self.task)
            for spec in group.cells:
                in_flight[train_cell_task.options(**self._options(spec)).remote(spec, arrays, prepared, self.task)] = spec
        progress = RunProgress(len(in_flight), self.slots)
        try:
            while in_flight:
                ready, _ = ray.wait(list(in_flight), num_returns=1, timeout=_WAIT_SECONDS)
                for ref in ready:
                    spec = in_flight.pop(ref)
                    record = self._collect(ref, spec)
                    where = record.stats.placement or {}
                    progress.finished(record, spec.title, f"{where.get('node', '')} {where.get('device', '')}".strip())
                    yield record
        finally:
            # Ctrl-C, or the driver stopping early: nothing may keep training for a run that is over.
            for ref in in_flight:
                ray.cancel(ref, force=True)

    def _collect(self, ref: ray.ObjectRef, spec: CellSpec):
        try:
            return ray.get(ref)
        except ray.exceptions.RayTaskError as exc:  # aeframe's own code raised on the worker (train_cell does not)
            return spec.failed(f"the Ray task failed: {_first_line(exc.cause or exc)}\n{exc}")
        except ray.exceptions.RayError as exc:  # the worker process or its node died, every time it was tried
            tries = self.settings.retries + 1
            times = f"{tries} time{'s' if tries > 1 else ''} (--retries {self.settings.retries})"
            if isinstance(exc, ray.exceptions.OutOfMemoryError):  # Ray's memory monitor killed it, and says so
                return spec.failed(f"Ray killed its worker process for memory {times}: {_first_line(exc)}; "
                                   "give the cell a node with more memory, or make it smaller")
            if isinstance(exc, ray.exceptions.WorkerCrashedError):  # Ray tells neither the exit code nor the signal
                techniques = ", ".join(f"technique {t!r} from {p}" for t, p in spec.config.plugins.items())
                return spec.failed(f"its worker process died {times} in the cell of {techniques}: {_first_line(exc)}; "
                                   "the process ended without an exception (os._exit in a plugin, a crash in native "
                                   "code, or a kill from outside); a plugin must raise an exception instead")
            return spec.failed(f"its worker process died {times}: {_first_line(exc)}; "
                               "a worker killed for memory needs a larger node or a smaller cell")

    def close(self) -> None:
        if self.started and ray.is_initialized():
            _stop_local_cluster()
            self.started = False


def _stop_local_cluster() -> None:
    """``ray.shutdown()`` of the cluster this process started, a second faster: Ray stops the
    autoscaler's monitor after the GCS, and the monitor then spends a second failing to report its
    end to it. Nothing autoscales a local cluster, so it is killed first."""
    try:
        from ray._private import ray_constants, worker

        for info in worker._global_node.all_processes.get(ray_constants.PROCESS_TYPE_MONITOR, []):
            info.process.kill()
    except Exception:  # Ray's internals moved: the plain shutdown still stops everything
        pass
    ray.shutdown()
