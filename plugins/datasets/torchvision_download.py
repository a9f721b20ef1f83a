"""Downloading a dataset with torchvision, the way every built-in dataset plugin needs it done."""
from __future__ import annotations

import contextlib
import socket
import sys
from pathlib import Path

from aeframe import DatasetUnavailable

# Unreachable hosts must fail in seconds, not after the OS's minutes-long connect timeout.
DOWNLOAD_TIMEOUT_S = 15.0


def fetch(class_name: str, data_dir: Path, not_found: str, **options) -> None:
    """Have ``torchvision.datasets.<class_name>(root=data_dir, download=True, **options)`` fetch the files.

    Any failure becomes :class:`DatasetUnavailable` with ``not_found`` (the offline recipe) and the
    reason, on one line.
    """
    try:
        import torchvision  # deferred: importing it costs a second that loading never needs

        previous_timeout = socket.getdefaulttimeout()
        socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)
        try:
            # torchvision prints to stdout; our stdout may be a report being piped somewhere.
            with contextlib.redirect_stdout(sys.stderr):
                getattr(torchvision.datasets, class_name)(root=str(data_dir), download=True, **options)
        finally:
            socket.setdefaulttimeout(previous_timeout)
    except Exception as exc:
        reason = " ".join(str(exc).split())  # torchvision's messages span lines; ours stay on one
        raise DatasetUnavailable(f"{not_found} (download failed: {reason})") from exc
