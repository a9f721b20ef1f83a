"""How a signal ends a run: Ctrl-C (SIGINT), SIGTERM, SIGHUP and SIGQUIT all stop ``aeframe bench`` the
same way, so that whichever one ends it, the finished cells are saved, the last line says how many and
where, the store's lock is released (its file emptied), and the exit code is 128 + the signal's number.

Python turns only SIGINT into an exception (KeyboardInterrupt); by default SIGHUP (a closed terminal,
an ended ssh session) and SIGQUIT (Ctrl-\\) end the process on the spot, saying nothing and leaving
the lock file naming a holder that is gone.
"""
from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from typing import Iterator

from aeframe.console import say

# Besides SIGINT, which Python already raises as KeyboardInterrupt.
STOPPING = (signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)
_WHY = {signal.SIGINT: " (Ctrl-C)", signal.SIGHUP: " (its terminal or session closed)", signal.SIGQUIT: " (Ctrl-\\)"}
# The stopping signals received while stop_like_ctrl_c was on: Ray's blocking calls raise a bare
# KeyboardInterrupt for whatever the handler raised, and the stop must still be told by its signal.
_received: list[int] = []


class Stopped(KeyboardInterrupt):
    """A stopping signal other than SIGINT, raised where the process is so that it stops the way Ctrl-C does."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _signum(exc: KeyboardInterrupt) -> int:
    return getattr(exc, "signum", None) or (_received[-1] if _received else signal.SIGINT)


def exit_code(exc: KeyboardInterrupt) -> int:
    """The shell's convention: 128 + the signal's number (130 for Ctrl-C, 143 for SIGTERM)."""
    return 128 + _signum(exc)


def stopped_by(exc: KeyboardInterrupt) -> str:
    """``stopped by SIGINT (Ctrl-C)``, ``stopped by SIGTERM``, ...: how a stop's line begins."""
    signum = _signum(exc)
    return f"stopped by {signal.Signals(signum).name}{_WHY.get(signum, '')}"


def say_once(exc: KeyboardInterrupt, line: str) -> None:
    """Say ``line`` unless a line was said for this stop already: the innermost handler knows the most."""
    if getattr(exc, "said", False):
        return
    exc.said = True
    try:
        say(line)
    except OSError:  # stderr is gone (the terminal that sent SIGHUP): the stop itself must still go on
        pass


def _main_thread() -> bool:
    # Signal handlers belong to the main thread; elsewhere (e.g. a test runner's thread) keep the defaults.
    return threading.current_thread() is threading.main_thread()


@contextmanager
def stop_like_ctrl_c() -> Iterator[None]:
    """While the block runs, the STOPPING signals raise :class:`Stopped`, as Ctrl-C raises KeyboardInterrupt.

    A signal the process was started with ignored stays ignored: ``nohup aeframe bench`` must outlive its terminal.
    """
    if not _main_thread():
        yield
        return

    def stop(signum, frame):
        _received.append(signum)
        raise Stopped(signum)

    _received.clear()
    previous = {s: signal.getsignal(s) for s in STOPPING}
    for s, handler in previous.items():
        if handler is not signal.SIG_IGN:
            signal.signal(s, stop)
    try:
        yield
    finally:
        for s, handler in previous.items():
            if handler is not None:  # None: set from C, which Python cannot restore
                signal.signal(s, handler)
        _received.clear()  # a later run in this process (the Python API, a test) starts unstopped


@contextmanager
def held() -> Iterator[None]:
    """Stopping signals wait until the block ends: a record half-saved when Ctrl-C lands is lost though its
    cell's ``done`` line was shown. Only signals handled in Python wait; an ignored one stays ignored."""
    if not _main_thread():
        yield
        return
    caught: list[int] = []
    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, *STOPPING)}
    waiting = {s: h for s, h in previous.items() if callable(h)}
    for s in waiting:
        signal.signal(s, lambda signum, frame: caught.append(signum))
    try:
        yield
    finally:
        for s, handler in waiting.items():
            signal.signal(s, handler)
        if caught:
            waiting[caught[0]](caught[0], None)  # raises, as it would have when the signal came


def stop_if_signalled() -> None:
    """Raise :class:`Stopped` for a stopping signal that came but did not stop the run: its exception was
    raised inside C code that swallows exceptions (a native import of numpy, say). Called between cells."""
    if _received:
        raise Stopped(_received[-1])


def import_torch() -> None:
    """Import torch with the stopping signals held until it is imported: one that lands while torch's C
    code imports numpy is swallowed there, and the run goes on, unstoppable and with torch half broken."""
    with held():
        import torch  # noqa: F401
