"""The one way aeframe talks to the user besides results: lines on stderr, so that stdout carries
nothing but tables, listings and JSON."""
from __future__ import annotations

import sys
from typing import TextIO


def say(message: str, stream: TextIO | None = None) -> None:
    """One line of information for the user, on stderr."""
    stream = stream or sys.stderr
    stream.write(f"aeframe: {message}\n")
    stream.flush()
