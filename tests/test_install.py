"""install.sh, which both quick-start commands run: what it does as root, as a user with and without
sudo, with and without apt-get or an NVIDIA GPU. Each case runs the real script, as the real user
(root's cases as ``nobody`` through runuser), with AEFRAME_INSTALL_DRY_RUN=1 so that the commands
that would change this machine are printed instead; CI runs it for real as root."""
from __future__ import annotations

import functools
import http.server
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
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


# Where the CPU wheels' index is asked for: a port where nothing listens, unless a test serves one.
NOWHERE = "http://127.0.0.1:9/whl/cpu"


@pytest.fixture
def cpu_index(tmp_path):
    """A real HTTP server on this machine with a torch/ folder, standing where download.pytorch.org stands."""
    root = tmp_path / "index"
    (root / "whl" / "cpu" / "torch").mkdir(parents=True)
    (root / "whl" / "cpu" / "torch" / "index.html").write_text("<html></html>")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/whl/cpu"
    server.shutdown()


def _install(folder: Path, *fakes: str, user: bool = False, torch: str | None = None,
             index: str = NOWHERE) -> subprocess.CompletedProcess:
    env = {"PATH": str(_tools(folder, *fakes, user=user)), "AEFRAME_INSTALL_DRY_RUN": "1", "HOME": str(folder),
           "AEFRAME_TORCH_INDEX": index}
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
    assert commands == ["bash install.sh && .venv/bin/aeframe bench --all --time-budget 30s",
                        "bash install.sh '.[dev,ray,docs]' && .venv/bin/pytest -n auto"]


def test_as_root_apt_get_installs_what_is_missing_without_sudo(clone):
    # No dpkg on this PATH: the dataset's package counts as missing. This Python has venv's pip (ensurepip),
    # so python3-venv is not installed for it.
    done = _install(clone, "apt-get")
    assert done.returncode == 0, done.stderr
    # Nothing on stdout, so that `... && aeframe bench > results.md` keeps only the tables.
    assert done.stdout == ""
    assert "would run: apt-get update -qq" in done.stderr
    assert "would run: apt-get install -y -qq dataset-fashion-mnist" in done.stderr
    assert "python3-venv" not in done.stderr and "sudo" not in done.stderr


def test_nothing_is_asked_of_apt_get_or_sudo_where_everything_is_installed(clone):
    done = _install(clone, "apt-get", "dpkg", user=True)  # a dpkg that finds every package installed
    assert done.returncode == 0, done.stderr
    assert "apt-get" not in done.stderr and "sudo" not in done.stderr


def test_a_user_with_sudo_gets_apt_get_through_sudo_and_is_told_so(clone):
    done = _install(clone, "apt-get", "sudo", user=True)
    assert done.returncode == 0, done.stderr
    assert ("install.sh: running apt-get with sudo to install dataset-fashion-mnist (it may ask for your password)"
            in done.stderr)
    assert "would run: sudo apt-get install -y -qq dataset-fashion-mnist" in done.stderr
    assert done.stdout == ""


def test_a_user_without_sudo_is_told_what_to_ask_for_and_the_install_goes_on(clone):
    done = _install(clone, "apt-get", user=True)
    assert done.returncode == 0, done.stderr
    assert ("install.sh: not root and no sudo: cannot install dataset-fashion-mnist; ask an administrator to run "
            "'apt-get install dataset-fashion-mnist'") in done.stderr
    assert "would run: apt-get" not in done.stderr
    assert "would run: .venv/bin/pip install -q -e ." in done.stderr


def test_without_apt_get_it_says_what_it_skips(clone):
    done = _install(clone, user=os.geteuid() != 0)
    assert done.returncode == 0, done.stderr
    assert "install.sh: no apt-get (not Debian or Ubuntu): skipping dataset-fashion-mnist" in done.stderr


def test_without_an_nvidia_gpu_torch_comes_from_the_cpu_wheels_first(clone, cpu_index):
    done = _install(clone, "apt-get", user=os.geteuid() != 0, index=cpu_index)
    lines = [line for line in done.stderr.splitlines() if line.startswith("would run: .venv/bin/pip")]
    assert lines == [f"would run: .venv/bin/pip install -q torch torchvision --index-url {cpu_index}",
                     "would run: .venv/bin/pip install -q -e ."]
    assert "no NVIDIA GPU found: torch's CPU-only wheels" in done.stderr


def test_where_the_cpu_wheels_cannot_be_reached_it_says_so_once_and_goes_on(clone):
    # pip itself would retry the host ten times, with a warning each time.
    done = _install(clone, "apt-get", user=os.geteuid() != 0)
    assert done.returncode == 0, done.stderr
    assert (f"install.sh: {NOWHERE} cannot be reached from here: torch comes from the package index pip uses"
            in done.stderr)
    lines = [line for line in done.stderr.splitlines() if line.startswith("would run: .venv/bin/pip")]
    assert lines == ["would run: .venv/bin/pip install -q -e ."]


def test_with_an_nvidia_gpu_torch_comes_from_pypi_with_cuda(clone, cpu_index):
    done = _install(clone, "apt-get", "nvidia-smi", user=os.geteuid() != 0, index=cpu_index)
    assert "install.sh: torch from PyPI, with its CUDA libraries (.venv about 5.6 GB)" in done.stderr
    assert cpu_index not in done.stderr


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


def test_a_python_without_venvs_pip_gets_python3_venv(clone):
    # Debian's and Ubuntu's python3 without python3-venv: ensurepip is missing, everything else is there.
    if os.geteuid() != 0:
        pytest.skip("the root case needs root")
    bin_dir = _tools(clone, "apt-get")
    real = os.path.realpath(bin_dir / "python3")
    (bin_dir / "python3").unlink()
    (bin_dir / "python3").write_text(f'#!/bin/sh\ncase "$*" in *ensurepip*) exit 1;; esac\nexec {real} "$@"\n')
    (bin_dir / "python3").chmod(0o755)
    env = {"PATH": str(bin_dir), "AEFRAME_INSTALL_DRY_RUN": "1", "AEFRAME_TORCH_INDEX": NOWHERE}
    done = subprocess.run([shutil.which("bash"), str(clone / "install.sh")], capture_output=True, text=True,
                          env=env, timeout=60)
    assert "would run: apt-get install -y -qq python3-venv" in done.stderr
