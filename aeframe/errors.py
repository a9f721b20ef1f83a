"""Errors meant for the user, and the one way aeframe shortens any error to a line.

Each error class carries a one-line message that names the culprit and the fix.
"""
from __future__ import annotations


class AeframeError(Exception):
    """A problem the user can fix; the CLI prints its message alone, without a traceback."""


class UsageProblem(AeframeError):
    """A bad command-line value (name, parameter, device); the CLI exits with status 2."""


class SpecError(UsageProblem):
    """A malformed or unknown technique/dataset/parameter given on the command line."""


class CompositionError(UsageProblem):
    """Techniques that cannot be combined (two of them provide the same part, or none does)."""


class EnvironmentProblem(AeframeError):
    """A directory the run needs (cache, data), or a setting from an environment variable, cannot be used; the
    message names the variable or option that set it. Nothing has run yet, so the CLI exits with status 2, as
    for a bad option."""


# How the record of a cell that failed on the environment (a full disk, an unwritable cache) begins,
# so that nobody blames the technique's plugin for it.
ENVIRONMENT = "environment"


def is_environment_failure(error: str | None) -> bool:
    """Whether a failed cell's error is the environment's (see :func:`aeframe.data.directories.environment_failure`)."""
    return (error or "").startswith(f"{ENVIRONMENT}: ")


class StoreError(AeframeError):
    """The results store cannot be used (not an aeframe store, newer schema, locked)."""


def first_line(text: str | None) -> str:
    """The first non-blank line of ``text`` (stripped), or "" when there is none.

    Library errors (torch's, Inductor's, torchvision's) run to pages; a table cell, a progress line or
    a summary shows this line, while the stored record keeps the whole text.
    """
    for line in (text or "").splitlines():
        if line.strip():
            return line.strip()
    return ""


def describe(exc: BaseException) -> str:
    """``"Type: first line of the message"``, or the type alone when the message is empty."""
    line = first_line(str(exc))
    return f"{type(exc).__name__}: {line}" if line else type(exc).__name__
