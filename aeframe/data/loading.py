"""Getting a dataset into memory: the data directory, downloading where allowed, the offline answer."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from aeframe.contract.dataset import DatasetUnavailable, ImageData
from aeframe.errors import SpecError, describe
from aeframe.planning.plan import DatasetChoice, resolve_dataset
from aeframe.registry.plugins import Registry


@dataclass
class Workspace:
    """Where cells read and write besides the store, and how they reach other datasets."""

    data_dir: Path
    cache_dir: Path
    load_dataset: Callable[[str], ImageData]


DATA_ENV = "AEFRAME_DATA"
CACHE_ENV = "AEFRAME_CACHE"


def _user_cache() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "aeframe"


def default_data_dir() -> Path:
    """``$AEFRAME_DATA``, else the per-user cache (``$XDG_CACHE_HOME/aeframe/data``)."""
    if os.environ.get(DATA_ENV):
        return Path(os.environ[DATA_ENV]).expanduser()
    return _user_cache() / "data"


def default_cache_dir() -> Path:
    """``$AEFRAME_CACHE``, else ``$XDG_CACHE_HOME/aeframe/cache``: files plugins derive and reuse."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    return _user_cache() / "cache"


def make_workspace(registry: Registry, data_dir: Path, cache_dir: Path, say: Callable[[str], None],
                   preloaded: dict[str, ImageData] | None = None) -> Workspace:
    """A workspace whose ``load_dataset`` loads any registered dataset once per run.

    ``preloaded`` (dataset text -> data) is handed out as if loaded: a worker given its cell's data
    by the driver never reads that dataset's files.
    """
    loaded: dict[str, ImageData] = dict(preloaded or {})

    def load_dataset(text: str) -> ImageData:
        if text not in loaded:
            try:
                choice = resolve_dataset(text, registry)
            except SpecError as exc:  # to a plugin asking for it, an unknown dataset is one it cannot have
                raise DatasetUnavailable(str(exc)) from None
            obtain(choice, data_dir, say)
            try:
                loaded[text] = choice.plugin.load(data_dir, choice.params)
            except OSError as exc:  # the data directory's fault, not the plugin's
                raise DatasetUnavailable(f"{text}: {unreadable(exc, data_dir)}") from exc
            except MemoryError as exc:
                raise DatasetUnavailable(f"{text} does not fit in this machine's memory ({describe(exc)}); "
                                         "choose smaller parameters or run where there is more memory") from exc
        return loaded[text]

    return Workspace(data_dir=data_dir, cache_dir=cache_dir, load_dataset=load_dataset)


def unreadable(exc: OSError, data_dir: Path) -> str:
    """What the user sees when the data directory (or a file in it) cannot be read or written."""
    where = exc.filename or data_dir
    return (f"cannot use {where} ({exc.strerror or describe(exc)}); check that the data directory {data_dir} "
            "is a directory you can read and write, or pass --data-dir")


def _missing(choice: DatasetChoice, data_dir: Path) -> str | None:
    try:
        return choice.plugin.missing(data_dir, choice.params)
    except OSError as exc:  # e.g. a data directory without read permission
        raise DatasetUnavailable(f"{choice.label}: {unreadable(exc, data_dir)}") from exc


def availability(choice: DatasetChoice, data_dir: Path) -> str | None:
    """``None`` when the files are here; else why not (downloadable datasets say so).

    Never raises for what the plugin or the directory does: ``aeframe list datasets`` must list the
    other datasets.
    """
    try:
        missing = _missing(choice, data_dir)
    except DatasetUnavailable as exc:
        return str(exc)
    except Exception as exc:  # a third-party plugin's bug
        return f"checking its files failed: {describe(exc)}"
    if missing and choice.plugin.can_download():
        return f"{missing}; aeframe bench downloads it first where the network allows"
    return missing


def obtain(choice: DatasetChoice, data_dir: Path, say: Callable[[str], None]) -> None:
    """Make the files present, downloading if needed; :class:`DatasetUnavailable` says what to do."""
    missing = _missing(choice, data_dir)
    if missing is None:
        return
    if not choice.plugin.can_download():
        raise DatasetUnavailable(missing)
    say(f"downloading {choice.plugin.name} into {data_dir}")
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DatasetUnavailable(f"{choice.label} cannot be downloaded: {unreadable(exc, data_dir)}") from exc
    try:
        choice.plugin.download(data_dir, lambda what, done, total: None)
    except DatasetUnavailable:
        raise
    except Exception as exc:  # network errors come in many types; the user needs the offline recipe
        raise DatasetUnavailable(f"{missing} (download failed: {type(exc).__name__})") from exc
    still = _missing(choice, data_dir)
    if still:
        raise DatasetUnavailable(still)
