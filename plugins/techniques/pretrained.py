"""ImageNet weights for the built-in techniques: the torch hub cache, a download, or a user's file.

Offline, a technique that needs weights it cannot find is skipped (never silently given other
weights): the message names the file, the directory to put it in, and the ``weights=PATH``
parameter. Every file is loaded with ``weights_only=True``.
"""
from __future__ import annotations

import contextlib
import socket
import sys
from pathlib import Path
from typing import Sequence

import torch

from aeframe import TechniqueUnavailable

DOWNLOAD_TIMEOUT_S = 15.0


def hub_checkpoints() -> Path:
    """Where torch (and torchvision) keep downloaded weights: ``$TORCH_HOME/hub/checkpoints``."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def load_weights_file(path: Path, owner: str) -> dict[str, torch.Tensor]:
    """A state dict from ``path``, loaded safely; a clear skip when it is absent or unreadable."""
    if not path.is_file():
        raise TechniqueUnavailable(f"{owner}: no weights file at {path}; check the path given as weights=PATH")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated downloads and foreign files fail in many ways
        raise TechniqueUnavailable(f"{owner}: cannot read weights from {path} ({type(exc).__name__}); fetch it again") from exc
    if not isinstance(state, dict):
        raise TechniqueUnavailable(f"{owner}: {path} holds a {type(state).__name__}, not a state dict of weights")
    return state


def imagenet_weights(url: str, owner: str, alternative: str, also_accept: Sequence[str] = ()) -> dict[str, torch.Tensor]:
    """torchvision's ImageNet weights at ``url``: from the hub cache, else downloaded where possible.

    ``also_accept`` names other file names in the cache that hold the same architecture's ImageNet
    weights (e.g. the older checkpoint the study used). ``alternative`` completes the skip message
    with the offline option that gives the technique other weights explicitly.
    """
    cache = hub_checkpoints()
    filename = url.rsplit("/", 1)[-1]
    for name in (filename, *also_accept):
        if (cache / name).is_file():
            return load_weights_file(cache / name, owner)
    try:
        previous = socket.getdefaulttimeout()
        socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)
        try:
            # torch prints its download bar to stderr, but be sure nothing reaches stdout.
            with contextlib.redirect_stdout(sys.stderr):
                torch.hub.load_state_dict_from_url(url, model_dir=str(cache), progress=True, weights_only=True)
        finally:
            socket.setdefaulttimeout(previous)
    except Exception as exc:
        raise TechniqueUnavailable(
            f"{owner} needs the ImageNet weights {filename}, which are not in {cache} and could not be "
            f"downloaded ({type(exc).__name__}); put {filename} (from {url}) in {cache}, or pass weights=PATH"
            f"{', or ' + alternative if alternative else ''}"
        ) from exc
    return load_weights_file(cache / filename, owner)
