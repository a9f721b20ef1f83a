"""Plugin code that tries to end the process (``sys.exit``, a stray ``GeneratorExit``) instead of raising:
the line that fails its cell, naming the technique whose code it was and when it happened.

Such an exception is not an ``Exception``: left alone it would end the whole run with no line, and
the cells after it would never train.
"""
from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from types import FrameType, TracebackType

from aeframe.contract.technique import Technique
from aeframe.errors import describe
from aeframe.planning.composition import Composition

# What run_cell was doing, by the function of aeframe's it had called when the exception came.
_STAGES = {"prepare_cell": "prepared for training", "train": "trained", "timed_evaluate": "evaluated",
           "capture_samples": "evaluated"}


def exit_reason(exc: BaseException, composition: Composition, origins: Mapping[str, str], trained: bool) -> str:
    """The one line that fails a cell whose plugin code raised ``exc`` (a ``BaseException`` that is not
    an ``Exception``), caught where the cell is run.

    Args:
        exc: What was raised, with its traceback from the frame that caught it inward.
        composition: The cell's techniques; the culprit is looked for among those listed and those providing a part.
        origins: Technique name -> which plugin registered it (``CellConfig.plugins``).
        trained: Whether training had ended (the exception came while the cell was evaluated).
    """
    frames = list(_frames(exc.__traceback__))
    called = frames[1].f_code.co_name if len(frames) > 1 else ""
    stage = "evaluated" if trained else _STAGES.get(called, "built")
    techniques = [m.technique for m in [*composition.members, *composition.providers.values()]]
    culprits = _culprits(frames, techniques)
    named = " or ".join(f"technique {t.name!r}" + (f" from {origins[t.name]}" if t.name in origins else "")
                        for t in culprits or [m.technique for m in composition.members])
    # Code no technique defines (a metric's, a helper module's) ran in the cell: say whose cell, not whose code.
    blamed = named if culprits else f"plugin code in the cell of {named}"
    if isinstance(exc, SystemExit):
        what = f"called sys.exit({'' if exc.code is None else repr(exc.code)})"
    else:
        what = f"raised {describe(exc)}, which is not an Exception and would have ended the run,"
    return f"{blamed} {what} while its cell was {stage}; a plugin must raise an exception instead"


def _frames(tb: TracebackType | None) -> Iterator[FrameType]:
    while tb is not None:
        yield tb.tb_frame
        tb = tb.tb_next


def _culprits(frames: list[FrameType], techniques: Sequence[Technique]) -> list[Technique]:
    """The techniques whose code raised: the innermost frame that is a method of one of them, or else in
    the module that defines one (a model the technique made); none when no frame tells."""
    unique = list({id(t): t for t in techniques}.values())
    for frame in reversed(frames):
        owner = frame.f_locals.get("self")
        found = [t for t in unique if type(owner) is type(t)] or [
            t for t in unique if type(t).__module__ == frame.f_globals.get("__name__")]
        if found:
            return found
    return []
