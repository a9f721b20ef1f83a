"""docs/tutorial.md, followed as a reader would: its files written where it says, its package installed
as pip leaves one, and every command it gives run as written (the aeframe CLI in this process), with
the outputs it shows."""
from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path

import pytest

import aeframe
from conftest import installed_registry

TUTORIAL = (Path(__file__).resolve().parent.parent / "docs" / "tutorial.md").read_text()


def _files() -> dict[str, str]:
    """Each code block that opens with a comment naming its file: {path: text}."""
    found = {}
    for body in re.findall(r"```(?:toml|python)\n(.*?)\n```", TUTORIAL, re.S):
        first, _, rest = body.partition("\n")
        found[first.removeprefix("# ")] = rest + "\n"
    return found


def _commands() -> list[list[str]]:
    """Every `.venv/bin/...` line of the bash blocks, split as the shell splits it."""
    lines = [line for body in re.findall(r"```bash\n(.*?)\n```", TUTORIAL, re.S) for line in body.splitlines()]
    return [shlex.split(line) for line in lines if line.startswith(".venv/bin/")]


def _shown_after(command: str) -> str:
    """The text block that follows the bash block holding ``command``."""
    after = TUTORIAL[TUTORIAL.index(command):]
    return re.search(r"```text\n(.*?)\n```", after, re.S).group(1)


def _losses_hidden(text: str) -> str:
    return re.sub(r"\d+\.\d+ -> \d+\.\d+", "LOSS -> LOSS", text)


@pytest.fixture
def masking(tmp_path, monkeypatch):
    yield from installed_registry(tmp_path, monkeypatch, "aeframe-masking", "aeframe_masking",
                                  _files()["aeframe-masking/aeframe_masking.py"])


def test_the_tutorials_package_declares_the_module_it_writes_and_this_aeframe():
    files = _files()
    assert set(files) == {"aeframe-masking/pyproject.toml", "aeframe-masking/aeframe_masking.py",
                          "aeframe-masking/tests/test_masking.py"}
    project = tomllib.loads(files["aeframe-masking/pyproject.toml"])
    assert project["project"]["entry-points"]["aeframe"] == {"masking": "aeframe_masking"}
    assert project["tool"]["setuptools"]["py-modules"] == ["aeframe_masking"]
    from packaging.requirements import Requirement

    (needs,) = [Requirement(text) for text in project["project"]["dependencies"]]
    assert needs.name == "aeframe" and needs.specifier.contains(aeframe.__version__)


def test_every_aeframe_command_of_the_tutorial_does_what_it_says(cli, tmp_path, masking):
    from aeframe.cli import cli as command

    ran = []
    for argv in _commands():
        if argv[0] != ".venv/bin/aeframe":
            continue
        args = argv[1:]
        if "fashion-mnist" in args:
            # The 15-epoch, 3-seed run takes an hour on a CPU: its options are parsed, not run.
            command.commands[args[0]].make_context(args[0], args[1:])
            continue
        result = cli(*args, cwd=tmp_path, registry=masking)
        ran.append(args[:2])
        if args[:2] == ["list", "techniques"]:
            assert result.returncode == 0 and _shown_after(shlex.join(argv)) in result.stdout
        elif args[0] == "validate":
            assert result.returncode == 0, result.stdout + result.stderr
            # The same checks in the same words; the losses it shows are one machine's.
            assert _losses_hidden(result.stdout.strip()) == _losses_hidden(_shown_after(shlex.join(argv)))
        elif "masked-input[share=1.5]" in args:
            assert result.returncode == 2
            assert _shown_after("masked-input[share=1.5]") in result.stderr
        else:
            assert result.returncode == 0, result.stderr
            rows = [line.split("|")[1].strip() for line in result.stdout.splitlines() if line.startswith("| ")]
            assert {"Baseline", "Masked Input", "Masked Input [share=0.5]"} <= set(rows)
    assert ran == [["list", "techniques"], ["validate", "masked-input"], ["bench", "-t"], ["bench", "-t"]]


def test_the_tutorials_own_tests_pass(masking):
    namespace: dict = {"__name__": "test_masking"}
    exec(compile(_files()["aeframe-masking/tests/test_masking.py"], "test_masking.py", "exec"), namespace)
    tests = [name for name in namespace if name.startswith("test_")]
    assert len(tests) == 2
    for name in tests:
        namespace[name]()
