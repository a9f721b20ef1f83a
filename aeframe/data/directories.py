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
from types import FrameType, TracebackType
from typing import Callable, Iterator

from aeframe.data.loading import CACHE_ENV, DATA_ENV
from aeframe.errors import ENVIRONMENT, EnvironmentProblem, describe, first_line


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
    # The file itself unresolved: a link in the cache to a file elsewhere is still the cache's to fix.
    try:
        home = root.resolve()
        return any(p.is_relative_to(home) for p in (path.parent.resolve() / path.name, path.resolve()))
    except (OSError, RuntimeError, ValueError):
        return False


def write_atomically(path: Path, write: Callable[[Path], object]) -> None:
    """Make ``path`` by calling ``write`` on a temporary file beside it, then renaming that over ``path``.

    A write stopped halfway (Ctrl-C, a full disk, a crash) leaves ``path`` as it was, never cut short;
    the temporary file is removed when ``write`` fails. It keeps ``path``'s suffix, since writers such
    as matplotlib choose the format from it, and is created by ``write`` so that it gets the usual
    permissions, not a private temporary file's. A write that fails on the disk raises ``OSError``
    naming ``path``, whatever the writer raised: ``torch.save`` reports a full disk as a
    ``RuntimeError`` that names no file.

    Args:
        path: The file to make (or replace).
        write: Writes the whole file to the path it is given (``lambda p: torch.save(state, p)``).

    Raises:
        OSError: The file could not be written; ``filename`` is ``path``, and a full disk has ``errno``
            ``ENOSPC`` (:func:`is_full_disk` tells).
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
    except BaseException as exc:
        with contextlib.suppress(OSError):  # the write's own error is the one to report
            partial.unlink(missing_ok=True)
        named = _naming(exc, path, partial)
        if named is None:
            raise
        raise named from exc


def _naming(exc: BaseException, path: Path, partial: Path) -> OSError | None:
    """``exc`` as an ``OSError`` that names ``path``; None when it names another file, or is no write failure."""
    if isinstance(exc, OSError) and exc.errno is not None and exc.filename in (None, str(partial), partial):
        # A plain write() says "No space left on device" and no more; the temporary name means nothing to a user.
        return OSError(exc.errno, _why(exc), str(path))
    if _torch_write_failed(exc):
        return OSError(errno.ENOSPC, f"the disk is full or failed (torch: {first_line(str(exc))})", str(path))
    return None


# What torch's file writer (torch.save) says when a write to the disk fails: it raises RuntimeError, not
# OSError, with no errno and no file name. Its reader's messages ("PytorchStreamReader failed") are a
# damaged file, not a full disk, and are left alone.
_TORCH_WRITER_FAILED = ("PytorchStreamWriter failed", "unexpected pos", "file write failed", "No space left on device")
# A small file's failed write ends in the C++ stream's own words, which say nothing of writing: counted
# only when raised inside torch.save.
_STREAM_FAILED = "iostream error"
_FULL_ERRNOS = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}


def _torch_write_failed(exc: BaseException) -> bool:
    if not isinstance(exc, RuntimeError):
        return False
    text = str(exc)
    return any(sign in text for sign in _TORCH_WRITER_FAILED) or (
        _STREAM_FAILED in text and _torch_save_frame(exc.__traceback__) is not None)


def _full_disk(exc: BaseException) -> BaseException | None:
    """The link of ``exc``'s chain that is a write failed for want of space, if any."""
    return next((link for link in _chain(exc)
                 if (isinstance(link, OSError) and link.errno in _FULL_ERRNOS) or _torch_write_failed(link)), None)


def is_full_disk(exc: BaseException) -> bool:
    """Whether ``exc`` (or what it was raised from) is a write that failed for want of space: ``ENOSPC`` or
    ``EDQUOT``, or torch's writer failing (a ``RuntimeError`` from ``torch.save``).

    Args:
        exc: What was raised.

    Returns:
        True when freeing space (or writing elsewhere) is the fix.
    """
    return _full_disk(exc) is not None


def _torch_save_frame(tb: TracebackType | None) -> FrameType | None:
    """The frame of ``torch.save`` in the traceback, if it passes through it."""
    found = None
    while tb is not None:
        frame = tb.tb_frame
        if frame.f_code.co_name == "save" and frame.f_globals.get("__name__") == "torch.serialization":
            found = frame
        tb = tb.tb_next
    return found


def _torch_target(tb: TracebackType | None) -> str | None:
    """The file a ``torch.save`` in the traceback was writing to: its error does not name it."""
    frame = _torch_save_frame(tb)
    target = frame.f_locals.get("f") if frame is not None else None
    return os.fspath(target) if isinstance(target, (str, os.PathLike)) else None


def _full_disk_path(link: BaseException) -> str | None:
    if isinstance(link, OSError):
        return os.fspath(link.filename) if isinstance(link.filename, (str, os.PathLike)) and link.filename else None
    return _torch_target(link.__traceback__)


def _full_disk_line(link: BaseException, roots: dict[str, Path]) -> str:
    """The environment line of a full disk (``link``, the failed write): the file when known, and where to make room."""
    name = _full_disk_path(link)
    if name is None:
        where = " or of ".join(f"{source} ({root})" for source, root in roots.items())
        return (f"{ENVIRONMENT}: a write failed for want of space ({describe(link)}); free space on the disk it "
                f"wrote to (perhaps that of {where})")
    for source, root in roots.items():
        if _under(Path(name), root):
            return (f"{ENVIRONMENT}: no space left to write {name}; free space on that disk or point {source} "
                    f"at a directory on another ({root} now)")
    return f"{ENVIRONMENT}: no space left to write {name}; free space on that disk"


def environment_failure(exc: BaseException, roots: dict[str, Path]) -> str | None:
    """The line to record when ``exc`` is an error on a path under one of ``roots``, else None.

    ``roots`` maps what sets a directory (``AEFRAME_CACHE``) to the directory. The line starts with
    ``"environment: "``, which tells the end-of-run summary not to blame the technique's plugin. A full
    disk is the environment's wherever the write was, in those directories or not (a compiler's files
    in /tmp): no plugin can fix it.
    """
    full = _full_disk(exc)
    if full is not None:
        return _full_disk_line(full, roots)
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
