"""install.sh, which both quick-start commands run: what it does as root, as a user with and without
sudo, with and without apt-get or an NVIDIA GPU. Each case runs the real script, as the real user
(root's cases as ``nobody`` through runuser), with AEFRAME_INSTALL_DRY_RUN=1 so that the commands
that would change this machine are printed instead; CI runs it for real as root."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


@pytest.fixture
def clone():
    """A folder any user can read holding install.sh, as a clone holds it (pytest's tmp_path is private)."""
    folder = Path(tempfile.mkdtemp(prefix="aeframe-install-"))
    shutil.copy(ROOT / "install.sh", folder / "install.sh")
    for path in (folder, folder / "install.sh"):
        path.chmod(0o755)
    yield folder
    shutil.rmtree(folder)


def _python(user: bool) -> str:
    """A Python 3.11+ the script's user can run: this one, or for ``nobody`` one outside root's home."""
    candidates = [os.path.realpath(sys.executable)]
    if user and os.geteuid() == 0:
        if not shutil.which("runuser"):
            pytest.skip("running as root without runuser: no user to run the script as")
        candidates = [path for path in ("/usr/bin/python3", "/usr/local/bin/python3") if os.path.exists(path)]
    for path in candidates:
        if not user or os.geteuid() != 0 or subprocess.run(
                [shutil.which("runuser"), "-u", "nobody", "--", path, "-c",
                 "import sys; sys.exit(sys.version_info < (3, 11))"], capture_output=True).returncode == 0:
            return os.path.realpath(path)
    pytest.skip("no Python 3.11+ that the user nobody can run")


def _tools(folder: Path, *fakes: str, user: bool = False) -> Path:
    """A PATH of its own: the real tools the script uses, and ``fakes`` (apt-get, sudo, nvidia-smi) as
    commands that succeed, so that the machine's own (or their absence) decide nothing."""
    bin_dir = folder / "bin"
    bin_dir.mkdir()
    for tool in ("id", "dirname", "du", "cut"):
        (bin_dir / tool).symlink_to(shutil.which(tool))
    # The interpreter itself: a version manager's python3 on PATH is a shell script that needs its own PATH.
    (bin_dir / "python3").symlink_to(_python(user))
    for fake in fakes:
        (bin_dir / fake).write_text("#!/bin/sh\necho \"$0 $*\" >&2\n")
    for path in [bin_dir, *bin_dir.iterdir()]:
        path.chmod(0o755)
    return bin_dir


def _install(folder: Path, *fakes: str, user: bool = False, torch: str | None = None) -> subprocess.CompletedProcess:
    env = {"PATH": str(_tools(folder, *fakes, user=user)), "AEFRAME_INSTALL_DRY_RUN": "1", "HOME": str(folder)}
    if torch:
        env["AEFRAME_TORCH"] = torch
    command = [shutil.which("bash"), str(folder / "install.sh")]
    if user and os.geteuid() == 0:
        command = [shutil.which("runuser"), "-u", "nobody", "--", shutil.which("env"), *(f"{k}={v}" for k, v in env.items()), *command]
    elif not user and os.geteuid() != 0:
        pytest.skip("the root case needs root")
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=60)


def test_the_readmes_two_commands_are_install_sh_then_aeframe():
    commands = re.findall(r"```bash\n(.*?)\n```", README, re.S)[:2]
    assert commands == ["bash install.sh && .venv/bin/aeframe bench --all --time-budget 1m",
                        "bash install.sh '.[dev,ray,docs]' && .venv/bin/pytest -n auto"]


def test_as_root_apt_get_installs_the_venv_module_and_the_dataset_without_sudo(clone):
    done = _install(clone, "apt-get")
    assert done.returncode == 0, done.stderr
    # Nothing on stdout, so that `... && aeframe bench > results.md` keeps only the tables.
    assert done.stdout == ""
    assert "would run: apt-get update -qq" in done.stderr
    assert "would run: apt-get install -y -qq python3-venv" in done.stderr
    assert "would run: apt-get install -y -qq dataset-fashion-mnist" in done.stderr
    assert "sudo" not in done.stderr


def test_a_user_with_sudo_gets_apt_get_through_sudo_and_is_told_so(clone):
    done = _install(clone, "apt-get", "sudo", user=True)
    assert done.returncode == 0, done.stderr
    assert "install.sh: running apt-get with sudo (it may ask for your password)" in done.stderr
    assert "would run: sudo apt-get install -y -qq python3-venv" in done.stderr
    assert done.stdout == ""


def test_a_user_without_sudo_is_told_what_to_ask_for_and_the_install_goes_on(clone):
    done = _install(clone, "apt-get", user=True)
    assert done.returncode == 0, done.stderr
    assert ("install.sh: not root and no sudo: cannot install python3-venv and dataset-fashion-mnist; ask an "
            "administrator to run 'apt-get install python3-venv dataset-fashion-mnist'") in done.stderr
    assert "would run: apt-get" not in done.stderr
    assert "would run: .venv/bin/pip install -q -e ." in done.stderr


def test_without_apt_get_it_says_what_it_skips(clone):
    done = _install(clone, user=os.geteuid() != 0)
    assert done.returncode == 0, done.stderr
    assert "install.sh: no apt-get (not Debian or Ubuntu): skipping python3-venv and dataset-fashion-mnist" in done.stderr


def test_without_an_nvidia_gpu_torch_comes_from_the_cpu_wheels_first(clone):
    done = _install(clone, "apt-get", user=os.geteuid() != 0)
    lines = [line for line in done.stderr.splitlines() if line.startswith("would run: .venv/bin/pip")]
    assert lines == ["would run: .venv/bin/pip install -q torch torchvision --index-url https://download.pytorch.org/whl/cpu",
                     "would run: .venv/bin/pip install -q -e ."]
    assert "no NVIDIA GPU found: torch's CPU-only wheels" in done.stderr


def test_with_an_nvidia_gpu_torch_comes_from_pypi_with_cuda(clone):
    done = _install(clone, "apt-get", "nvidia-smi", user=os.geteuid() != 0)
    assert "install.sh: torch from PyPI, with its CUDA libraries (.venv about 5.6 GB)" in done.stderr
    assert "download.pytorch.org" not in done.stderr


def test_a_bad_torch_choice_is_refused_naming_the_variable(clone):
    done = _install(clone, "apt-get", user=os.geteuid() != 0, torch="rocm")
    assert done.returncode == 2
    assert "install.sh: AEFRAME_TORCH=rocm: give cpu or cuda" in done.stderr


def test_an_old_python_is_refused_with_the_version_needed(clone):
    _tools(clone)
    old = clone / "bin" / "python3"
    old.unlink()
    old.write_text("#!/bin/sh\n[ \"$1\" = --version ] && echo 'Python 3.9.2' && exit 0\nexit 1\n")
    old.chmod(0o755)
    env = {"PATH": str(clone / "bin"), "AEFRAME_INSTALL_DRY_RUN": "1"}
    done = subprocess.run([shutil.which("bash"), str(clone / "install.sh")], capture_output=True, text=True,
                          env=env, timeout=60)
    assert done.returncode == 1
    assert "install.sh: aeframe needs Python 3.11 or newer; python3 here is Python 3.9.2" in done.stderr


def test_a_venv_left_without_pip_is_made_again_and_a_whole_one_is_kept(clone):
    # `python3 -m venv` without python3-venv leaves a .venv with no pip: a second run must not keep it.
    (clone / ".venv" / "bin").mkdir(parents=True)
    done = _install(clone, "apt-get", user=os.geteuid() != 0)
    assert "would run: python3 -m venv .venv" in done.stderr
    pip = clone / ".venv" / "bin" / "pip"
    pip.write_text("#!/bin/sh\n")
    pip.chmod(0o755)
    shutil.rmtree(clone / "bin")
    done = _install(clone, "apt-get", user=os.geteuid() != 0)
    assert "python3 -m venv" not in done.stderr and "would run: .venv/bin/pip install -q -e ." in done.stderr
