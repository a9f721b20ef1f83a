"""The writer's lock on a results store: one ``aeframe bench`` per store file at a time.

The lock is an exclusive ``flock`` on ``REAL.lock``, where REAL is the store's path with every
symbolic link resolved, so two runs that reach one file by different paths still meet. The lock
file is opened without following a symbolic link (a link planted there in a shared directory
would otherwise make aeframe truncate whatever it points at), and it records who holds it, so
the run that is refused can say whom it waits for. Releasing the lock empties the file (a run stopped
by a signal releases it: aeframe.execution.stopping); a line left by a run killed outright names a
process that is gone, and is not reported as the holder.
"""
from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import stat
from datetime import datetime, timezone
from pathlib import Path

from aeframe.errors import StoreError

_FLAGS = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK


class WriterLock:
    """An exclusive lock on the store at ``real`` (a resolved path), held until :meth:`release`.

    ``name`` is the store as the user gave it, for messages. The kernel drops the lock when the
    process ends, however it ends, so a killed run leaves no stale lock.
    """

    def __init__(self, real: Path, name: str) -> None:
        self.path = Path(f"{real}.lock")
        self._name = name
        self._fd: int | None = None
        self.acquire()

    def acquire(self) -> None:
        """Take the lock (again, e.g. after its file was deleted); StoreError when someone holds it."""
        fd = self._open()
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = _describe_holder(os.pread(fd, 512, 0))
            os.close(fd)
            raise StoreError(
                f"{self._name} is in use by {holder}; wait for it or pass --store with another file"
            ) from None
        holder = {"pid": os.getpid(), "host": socket.gethostname(),
                  "since": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(holder) + "\n").encode(), 0)
        self.release()
        self._fd = fd

    def still_held(self) -> bool:
        """Whether the lock file at :attr:`path` is still the one this lock holds (not deleted or replaced)."""
        if self._fd is None:
            return False
        try:
            here = os.stat(self.path, follow_symlinks=False)
        except OSError:
            return False
        mine = os.fstat(self._fd)
        return (here.st_dev, here.st_ino) == (mine.st_dev, mine.st_ino)

    def release(self) -> None:
        """Empty the lock file and release the lock; safe to call twice."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def _open(self) -> int:
        try:
            fd = os.open(self.path, _FLAGS, 0o644)
        except OSError as e:
            if e.errno == errno.ELOOP:
                raise StoreError(
                    f"the lock file {self.path} is a symbolic link, which aeframe never follows; "
                    f"remove it (rm {self.path}) and run again"
                ) from None
            raise StoreError(
                f"cannot create the lock file {self.path} ({e.strerror}); "
                "check the directory's permissions or pass --store with another file"
            ) from None
        info = os.fstat(fd)
        # A hard link would make truncating the lock file truncate another file too.
        if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1:
            os.close(fd)
            what = "is not a regular file" if not stat.S_ISREG(info.st_mode) else "has other names (hard links)"
            raise StoreError(
                f"the lock file {self.path} {what}, so aeframe will not write to it; "
                f"remove it (rm {self.path}) and run again"
            )
        return fd


def _describe_holder(content: bytes) -> str:
    """``aeframe pid 12 on host h since T`` from what the holder wrote, or as much of it as is known."""
    try:
        holder = json.loads(content.decode())
        pid, host, since = holder["pid"], holder["host"], holder["since"]
    except (ValueError, TypeError, KeyError):
        # The holder has not written yet, or an older aeframe wrote its pid alone.
        text = content.decode(errors="replace").strip()
        return f"another aeframe run (pid {text})" if text.isdigit() else "another aeframe run"
    if host == socket.gethostname() and not _alive(pid):
        # A run killed outright (kill -9, a crash) left its line; the run that holds the lock now has not
        # written its own yet.
        return "another aeframe run"
    return f"aeframe pid {pid} on host {host} since {since}"


def _alive(pid: object) -> bool:
    """Whether a process ``pid`` runs on this machine (True when that cannot be told)."""
    if not isinstance(pid, int) or pid <= 0:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # someone else's process: it exists
        return True
    return True
