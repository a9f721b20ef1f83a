#!/usr/bin/env bash
# Set up aeframe in this clone: the system packages it needs (Debian/Ubuntu), a virtual environment in
# .venv, and aeframe installed into it with torch's CPU-only wheels where the machine has no NVIDIA GPU.
#
#   bash install.sh                    # aeframe itself
#   bash install.sh '.[dev,ray,docs]'  # with the extras the tests need
#
# AEFRAME_TORCH=cpu or =cuda overrides the choice of torch wheels, AEFRAME_TORCH_INDEX the index of the
# CPU-only ones (a mirror); AEFRAME_INSTALL_DRY_RUN=1 prints the commands that change the machine
# instead of running them. Every line it prints goes to stderr, so
# that a command chained after it keeps stdout to itself.
set -euo pipefail
cd "$(dirname "$0")"
exec 1>&2

target="${1:-.}"
cpu_index="${AEFRAME_TORCH_INDEX:-https://download.pytorch.org/whl/cpu}"
say() { echo "install.sh: $*"; }
torch="${AEFRAME_TORCH:-$(command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1 && echo cuda || echo cpu)}"
case "$torch" in
    cpu|cuda) ;;
    *) say "AEFRAME_TORCH=$torch: give cpu or cuda"; exit 2 ;;
esac
run() {
    if [ -n "${AEFRAME_INSTALL_DRY_RUN:-}" ]; then echo "would run: $*" >&2; else "$@"; fi
}

# Python: aeframe needs 3.11 or newer (pyproject.toml's requires-python).
if ! python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    say "aeframe needs Python 3.11 or newer; python3 here is $(command -v python3 >/dev/null && python3 --version 2>&1 || echo "not found"). Install a newer python3 and run this again."
    exit 1
fi

# System packages: python3-venv (Debian and Ubuntu ship python3 without venv's pip) and Fashion-MNIST
# (the study's offline dataset; without it aeframe downloads it on first use). Only those missing are
# installed, one by one (a release without dataset-fashion-mnist must still get python3-venv); apt-get
# needs root.
missing=()
python3 -c 'import ensurepip' 2>/dev/null || missing+=(python3-venv)
dpkg -s dataset-fashion-mnist >/dev/null 2>&1 || missing+=(dataset-fashion-mnist)
if [ ${#missing[@]} = 0 ]; then
    :
elif ! command -v apt-get >/dev/null; then
    say "no apt-get (not Debian or Ubuntu): skipping ${missing[*]}; Python's venv module must be installed, and Fashion-MNIST is downloaded on first use"
elif [ "$(id -u)" != 0 ] && ! command -v sudo >/dev/null; then
    say "not root and no sudo: cannot install ${missing[*]}; ask an administrator to run 'apt-get install ${missing[*]}'. Continuing: Fashion-MNIST, if missing, is downloaded on first use"
else
    as_root=()
    if [ "$(id -u)" != 0 ]; then
        as_root=(sudo)
        say "running apt-get with sudo to install ${missing[*]} (it may ask for your password)"
    fi
    run "${as_root[@]}" apt-get update -qq >/dev/null || say "apt-get update failed; trying the package lists this machine has"
    for package in "${missing[@]}"; do
        run "${as_root[@]}" apt-get install -y -qq "$package" >/dev/null || say "apt-get could not install $package; continuing"
    done
fi

# A .venv without pip is what `python3 -m venv` leaves where python3-venv is missing: made again below.
if [ -z "${AEFRAME_INSTALL_DRY_RUN:-}" ] && [ ! -x .venv/bin/pip ] && ! python3 -c 'import ensurepip' 2>/dev/null; then
    say "python3 cannot make a virtual environment: install python3-venv (as root: apt-get install python3-venv) and run this again"
    exit 1
fi

# torch ($torch, chosen above): on a machine without an NVIDIA GPU, the CPU-only wheels (a .venv of about
# 0.8 GB) instead of PyPI's, which bring the CUDA libraries (about 5.6 GB). Installed first, so that
# aeframe's own install finds torch there and keeps it.
[ -x .venv/bin/pip ] || run python3 -m venv .venv
case "$torch" in
    cpu) say "no NVIDIA GPU found: torch's CPU-only wheels (.venv about 0.8 GB; AEFRAME_TORCH=cuda for PyPI's, with CUDA, about 5.6 GB)"
         # Asked once first: where the host cannot be reached, pip would retry it ten times, warning each time.
         if ! python3 -c 'import sys, urllib.request as u; u.urlopen(sys.argv[1] + "/torch/", timeout=15)' "$cpu_index" 2>/dev/null; then
             say "$cpu_index cannot be reached from here: torch comes from the package index pip uses (PyPI's has the CUDA libraries, about 5.6 GB)"
         else
             run .venv/bin/pip install -q torch torchvision --index-url "$cpu_index" \
                 || say "the CPU-only wheels could not be installed: torch comes from the package index pip uses"
         fi ;;
    cuda) say "torch from PyPI, with its CUDA libraries (.venv about 5.6 GB)" ;;
esac
run .venv/bin/pip install -q -e "$target"

if [ -z "${AEFRAME_INSTALL_DRY_RUN:-}" ]; then
    built=$(.venv/bin/python -c 'import torch; print(torch.__version__, "with CUDA " + torch.version.cuda if torch.version.cuda else "(CPU only)")')
    say "installed: torch $built; .venv takes $(du -sh .venv | cut -f1). Run aeframe as .venv/bin/aeframe (no need to activate the venv)"
fi
