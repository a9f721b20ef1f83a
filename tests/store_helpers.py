"""What the store's tests share: a plugin whose technique fails or deletes a file on request, and
commands run without the powers that let root ignore file permissions."""
from __future__ import annotations

import ctypes
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import Ran, installed_registry

# A technique that fails while AEFRAME_TEST_FAIL is set, and deletes the file AEFRAME_TEST_DELETE
# names when it is built (once: it takes the variable away).
FLAKY = '''
import os
from aeframe import Technique, hookimpl


class Flaky(Technique):
    name, title, base = "flaky", "Flaky", "baseline"
    description = "fails or deletes a file when a test asks it to"

    def wrap_model(self, model, ctx):
        if os.environ.get("AEFRAME_TEST_FAIL"):
            raise RuntimeError("flaky failed on purpose")
        doomed = os.environ.pop("AEFRAME_TEST_DELETE", None)
        if doomed:
            os.remove(doomed)
        return model


@hookimpl
def register_techniques(register):
    register(Flaky())
'''


def flaky_registry(tmp_path, monkeypatch):
    """For a fixture: the registry with the flaky plugin installed as pip would have left it."""
    yield from installed_registry(tmp_path / "plugin", monkeypatch, "aeframe-flaky", "flaky_technique", FLAKY)


_PR_CAPBSET_DROP = 24
_CAP_DAC_OVERRIDE, _CAP_DAC_READ_SEARCH = 1, 2


def _as_a_user() -> None:
    """In the child before exec: a root process gives up overriding file permissions, so that
    chmod binds it as it binds any user (the exec'd program gets no capability outside the set)."""
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (_CAP_DAC_OVERRIDE, _CAP_DAC_READ_SEARCH):
        if libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def run_as_user(*args: str, cwd: Path, preexec=None) -> Ran:
    """``aeframe ARGS`` in a subprocess bound by file permissions even when the tests run as root."""
    exe = Path(sys.executable).with_name("aeframe")

    def setup() -> None:
        if os.geteuid() == 0:
            _as_a_user()
        if preexec is not None:
            preexec()

    done = subprocess.run([str(exe), *args], cwd=cwd, capture_output=True, text=True, timeout=300,
                          preexec_fn=setup)
    return Ran(done.returncode, done.stdout, done.stderr)


def require_permissions_bind(directory: Path) -> None:
    """Skip when even a permission-bound child can write a read-only file (e.g. no CAP_SETPCAP to drop with)."""
    probe = directory / "probe.txt"
    probe.write_text("x")
    probe.chmod(0o444)
    try:
        def setup() -> None:
            if os.geteuid() == 0:
                _as_a_user()
        done = subprocess.run(["sh", "-c", f"echo y >> '{probe}'"], capture_output=True, preexec_fn=setup)
    except (OSError, subprocess.SubprocessError) as e:
        pytest.skip(f"cannot give up root's file powers here ({e})")
    finally:
        probe.chmod(0o644)
        wrote = probe.read_text() != "x"
        probe.unlink()
    if done.returncode == 0 or wrote:
        pytest.skip("file permissions do not bind a child process here (root without CAP_SETPCAP?)")
