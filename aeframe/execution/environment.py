"""Where a run happens: the device it trains on and the versions that produced its numbers."""
from __future__ import annotations

import platform
import re
import subprocess
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

import aeframe
from aeframe.errors import UsageProblem


def resolve_device(text: str) -> torch.device:
    """``auto`` (a GPU when there is one), ``cpu``, ``cuda`` or ``cuda:N`` -> a checked torch device.

    Args:
        text: The device as ``--device`` takes it (case and surrounding spaces do not matter).

    Returns:
        The device: ``cuda`` (index 0) or ``cuda:N``, or the CPU.

    Raises:
        UsageProblem: For an unknown device, a GPU asked for on a machine without CUDA, or a GPU index
            the machine does not have.
    """
    text = text.strip().lower()
    if text == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if text == "cpu":
        return torch.device("cpu")
    match = re.fullmatch(r"cuda(?::(\d+))?", text)
    if not match:
        raise UsageProblem(f"unknown device {text!r}; use auto, cpu, cuda or cuda:N")
    if not torch.cuda.is_available():
        raise UsageProblem(f"device {text!r} asked for, but this machine has no CUDA GPU; use --device cpu or auto")
    index = int(match.group(1) or 0)
    if index >= torch.cuda.device_count():
        raise UsageProblem(f"device {text!r} does not exist: this machine has {torch.cuda.device_count()} GPU(s)")
    return torch.device("cuda", index)


@lru_cache(maxsize=None)
def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_info(device: torch.device) -> dict[str, Any]:
    """``{"type", "name", "numerics"}`` of ``device`` in this process, as a cell's config keeps them."""
    if device.type == "cuda":
        return {"type": "cuda", "name": torch.cuda.get_device_name(device), "numerics": numerics_state(device)}
    return {"type": "cpu", "name": f"{_cpu_name()} ({torch.get_num_threads()} threads)",
            "numerics": numerics_state(device)}


def numerics_state(device: torch.device) -> dict[str, Any]:
    """The process's switches that change a cell's numbers on ``device``, as part of its key.

    On a CPU, torch's thread count: it splits every reduction differently (so the last bits), and
    under a time budget it decides how many steps fit. Everywhere, whether torch must use
    deterministic algorithms and the float32 matmul precision; on CUDA, whether cuBLAS and cuDNN may
    compute float32 in TF32 and whether cuDNN must be deterministic. cuDNN's benchmark mode is not
    here: aeframe turns it on for every CUDA cell.
    """
    found: dict[str, Any] = {
        "deterministic": torch.are_deterministic_algorithms_enabled(),
        "float32_matmul": torch.get_float32_matmul_precision(),
    }
    if device.type == "cuda":
        found.update(matmul_tf32=torch.backends.cuda.matmul.allow_tf32, cudnn_tf32=torch.backends.cudnn.allow_tf32,
                     cudnn_deterministic=torch.backends.cudnn.deterministic)
    else:
        found["threads"] = torch.get_num_threads()
    return found


def versions() -> dict[str, str]:
    found = {
        "aeframe": aeframe.__version__,
        "torch": torch.__version__.split("+")[0],
        "torchvision": _torchvision_version().split("+")[0],
        "python": platform.python_version(),
    }
    if torch.version.cuda and torch.cuda.is_available():
        found["cuda"] = torch.version.cuda
    return found


def _torchvision_version() -> str:
    """torchvision's version from its installed metadata: importing it costs 1.5-2 s (it loads
    torch._dynamo), paid by every run and every Ray worker even where no plugin uses torchvision."""
    try:
        return metadata.version("torchvision")
    except metadata.PackageNotFoundError:  # a source build without metadata
        import torchvision

        return torchvision.__version__


@lru_cache(maxsize=None)
def source_revision(written: Path | None = None, root: Path | None = None) -> str | None:
    """The git commit aeframe runs from (``+dirty`` with uncommitted changes), or None outside a checkout.

    An editable install from a clone is how leaderboards get made; a wheel has no commit to name,
    and its version says enough. ``written`` is the run's own store: kept in the repository (as the
    leaderboard's is), it changes while it is filled, which is no change to the code the commit names.
    ``root`` is the checkout (by default the one aeframe is imported from).
    """
    root = root or Path(aeframe.__file__).resolve().parent.parent
    if not (root / ".git").exists():
        return None

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "--short=12", "HEAD")
    if not commit:
        return None
    paths = ["."]
    if written is not None:
        store = Path(written).resolve()
        if store.is_relative_to(root.resolve()):
            paths.append(f":(exclude){store.relative_to(root.resolve())}")
    return commit + ("+dirty" if git("status", "--porcelain", "--untracked-files=no", "--", *paths) else "")
