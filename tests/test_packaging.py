"""What a release is made of: the sdist and the wheel hold every module of aeframe and of the built-ins,
the entry points and the licence; and every source file is Python the oldest version claimed can read.
CI (.ci/run) also installs the wheel into a fresh venv and runs aeframe from it, away from the checkout."""
from __future__ import annotations

import ast
import email
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _floor() -> tuple[int, int]:
    claim = PROJECT["requires-python"]
    assert claim.startswith(">="), claim
    major, minor = claim[2:].split(".")[:2]
    return int(major), int(minor)


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("dist")
    # Without isolation: the setuptools of the dev extra, no download.
    done = subprocess.run([sys.executable, "-m", "build", "--sdist", "--wheel", "--no-isolation", "--outdir", str(out),
                           str(ROOT)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return {"wheel": next(out.glob("*.whl")), "sdist": next(out.glob("*.tar.gz"))}


def _sources() -> dict[str, Path]:
    """Every module as the wheel names it: plugins/ is the package aeframe_builtins."""
    found = {str(p.relative_to(ROOT)): p for p in (ROOT / "aeframe").rglob("*.py")}
    found |= {f"aeframe_builtins/{p.relative_to(ROOT / 'plugins')}": p for p in (ROOT / "plugins").rglob("*.py")}
    return found


def test_the_wheel_holds_every_module_the_entry_points_and_the_licence(built):
    with zipfile.ZipFile(built["wheel"]) as wheel:
        names = set(wheel.namelist())
        info = next(n.split("/")[0] for n in names if n.endswith(".dist-info/METADATA"))
        entry_points = wheel.read(f"{info}/entry_points.txt").decode()
        metadata = email.message_from_bytes(wheel.read(f"{info}/METADATA"))
    missing = sorted(set(_sources()) - names)
    assert not missing, f"the wheel lacks {missing}"
    assert "aeframe = aeframe.cli:cli" in entry_points
    for name, target in PROJECT["entry-points"]["aeframe"].items():
        assert f"{name} = {target}" in entry_points
    assert f"{info}/licenses/LICENSE" in names and metadata["License-Expression"] == "MIT"
    assert metadata["Requires-Python"] == PROJECT["requires-python"] and metadata["Version"] == PROJECT["version"]


def test_the_sdist_holds_the_sources_the_licence_and_the_readme(built):
    with tarfile.open(built["sdist"]) as sdist:
        names = {name.split("/", 1)[1] for name in sdist.getnames() if "/" in name}
    for needed in ("LICENSE", "README.md", "pyproject.toml", "aeframe/cli.py", "plugins/techniques/baseline.py"):
        assert needed in names


def test_every_source_file_is_python_the_oldest_claimed_version_reads():
    # pyproject claimed 3.10 while the tests imported tomllib (3.11): the claim is now what CI runs.
    floor = _floor()
    assert sys.version_info[:2] >= floor
    files = [*_sources().values(), *(ROOT / "tests").rglob("*.py"), *(ROOT / "benchmarks").glob("*.py"),
             *(ROOT / "examples").rglob("*.py")]
    for path in files:
        ast.parse(path.read_text(), filename=str(path), feature_version=floor)


@pytest.mark.parametrize("example", sorted(path.parent.name for path in (ROOT / "examples").glob("*/pyproject.toml")))
def test_each_example_package_installs_beside_this_aeframe_from_a_clone_or_an_index(example):
    from packaging.requirements import Requirement

    project = tomllib.loads((ROOT / "examples" / example / "pyproject.toml").read_text())["project"]
    assert project["requires-python"] == PROJECT["requires-python"]
    # A plain requirement on aeframe: met by an editable install of this clone, or fetched from an index.
    (needs,) = [Requirement(text) for text in project["dependencies"] if Requirement(text).name == "aeframe"]
    assert not needs.url and needs.specifier.contains(PROJECT["version"])
    assert project["license"] == "MIT" and (ROOT / "examples" / example / "LICENSE").is_file()
    assert project["entry-points"]["aeframe"]
