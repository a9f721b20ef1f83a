"""The directories a run reads and writes besides the store: checked before a run, and named when they fail.

A cache directory that cannot be written, or a data directory under a regular file, is the
environment's fault, not a plugin's: the user fixes it by pointing a variable or an option
elsewhere, so every message names that variable or option and the path.
"""
from __future__ import annotations

import contextlib
import errno
import os
import secrets
from pathlib import Path
from typing import Callable, Iterator

from aeframe.data.loading import CACHE_ENV, DATA_ENV
from aeframe.errors import ENVIRONMENT, EnvironmentProblem


def _why(exc: OSError) -> str:
    return exc.strerror or str(exc)


def _blocking_file(path: Path) -> Path | None:
    """The nearest ancestor of ``path`` (or ``path`` itself) that exists and is not a directory."""
    for candidate in (path, *path.parents):
        if candidate.is_dir():
            return None
        if candidate.exists():
            return candidate
    return None


def _names(source: str | None, default: str, variable: str) -> tuple[str, str]:
    """What to call the directory in a message, and what to set to change it."""
    return (source, source) if source else (default, variable)


def check_data_dir(path: Path, source: str | None) -> None:
    """Refuse a data directory that can never be used; ``source`` is what set it (``--data-dir``,
    ``AEFRAME_DATA``), None for the default.

    It need not exist or be writable: generated datasets need no files, and a read-only directory of
    files already in place is a fine data directory. It must be a directory, or creatable as one, and
    readable when it exists.
    """
    name, setting = _names(source, "the default data directory", DATA_ENV)
    try:
        blocker = _blocking_file(path)
        if blocker is not None:
            raise EnvironmentProblem(f"{name} {path} cannot be used as the data directory: {blocker} is a file, "
                                     f"not a directory; point {setting} at a directory")
        if path.is_dir() and not os.access(path, os.R_OK | os.X_OK):
            raise EnvironmentProblem(f"{name} {path} cannot be read (permission denied); point {setting} at a "
                                     "readable directory")
    except OSError as exc:
        raise EnvironmentProblem(f"{name} {path} cannot be used as the data directory ({_why(exc)}); "
                                 f"point {setting} at a directory") from None


def check_cache_dir(path: Path, source: str | None) -> None:
    """Create the cache directory if needed and make sure it can be written: plugins keep derived files there.

    ``source`` is what set it (``AEFRAME_CACHE``), None for the default.
    """
    name, setting = _names(source, "the default cache directory", CACHE_ENV)
    try:
        blocker = _blocking_file(path)
        if blocker is not None:
            raise EnvironmentProblem(f"{name} {path} cannot be created: {blocker} is a file, not a directory; "
                                     f"point {setting} at a writable directory")
        path.mkdir(parents=True, exist_ok=True)
        if not os.access(path, os.W_OK | os.X_OK):
            raise OSError(errno.EACCES, os.strerror(errno.EACCES), str(path))
    except OSError as exc:
        raise EnvironmentProblem(f"{name} {path} cannot be written ({_why(exc)}); point {setting} at a "
                                 "writable directory") from None


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def _under(path: Path, root: Path) -> bool:
    try:
        return path.resolve().is_relative_to(root.resolve())
    except (OSError, RuntimeError, ValueError):
        return False


def write_atomically(path: Path, write: Callable[[Path], object]) -> None:
    """Make ``path`` by calling ``write`` on a temporary file beside it, then renaming that over ``path``.

    A write stopped halfway (Ctrl-C, a full disk, a crash) leaves ``path`` as it was, never cut short;
    the temporary file is removed when ``write`` fails. It keeps ``path``'s suffix, since writers such
    as matplotlib choose the format from it, and is created by ``write`` so that it gets the usual
    permissions, not a private temporary file's.
    """
    path = Path(os.path.realpath(path))  # through a symbolic link, as a plain write goes: the link stays
    if path.exists() and not path.is_file():  # /dev/stdout, a pipe: nothing to keep whole, nowhere to rename to
        write(path)
        return
    # The stem cut short: a name near the file system's limit must not fail only for its temporary twin.
    partial = path.with_name(f".{path.stem[:100]}.{os.getpid()}-{secrets.token_hex(4)}.tmp{path.suffix}")
    try:
        write(partial)
        os.replace(partial, path)
    except BaseException:
        with contextlib.suppress(OSError):  # the write's own error is the one to report
            partial.unlink(missing_ok=True)
        raise


def environment_failure(exc: BaseException, roots: dict[str, Path]) -> str | None:
    """The line to record when ``exc`` is an error on a path under one of ``roots``, else None.

    ``roots`` maps what sets a directory (``AEFRAME_CACHE``) to the directory. The line starts with
    ``"environment: "``, which tells the end-of-run summary not to blame the technique's plugin.
    """
    for link in _chain(exc):
        if not isinstance(link, OSError):
            continue
        for name in (link.filename, link.filename2):
            if not name or not isinstance(name, (str, os.PathLike)):
                continue
            for source, root in roots.items():
                if _under(Path(name), root):
                    return f"{ENVIRONMENT}: cannot use {name} ({_why(link)}); check {source} ({root})"
    return None
