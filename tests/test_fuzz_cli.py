"""Hostile input to every option of every command and every technique and dataset parameter: never a
traceback (nor the top-level handler's "unexpected" line); usage errors exit 2; anything else exits
0 or 1, and 1 only with an ``Error:`` line or a named skip.

Nothing fuzzed here may train: bench runs on ``absent``, a dataset that is never available (its cells
are skipped after planning), or with ``--device none`` after the dataset's parameters are checked
(so a valid ``-d shapes[train=5]`` stops before loading). Hypothesis runs derandomized with few
examples, so the test is fast and the same in CI; the ``@example`` cases pin the classic edge values.
"""
from __future__ import annotations

import sys

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from aeframe.registry.plugins import build_registry

from conftest import installed_plugin_env

ABSENT = '''
from aeframe import DatasetPlugin, Param, hookimpl


class Absent(DatasetPlugin):
    name, title = "absent", "Absent"
    description = "never available here: bench plans its cells, then skips them"
    params = (Param("side", int, 32, "image side"), Param("rate", float, 0.5, "a float"),
              Param("mode", str, "a", "a choice", choices=("a", "b")), Param("flag", bool, False, "a flag"),
              Param("sizes", "ints", (1, 2), "a list of ints"), Param("weights", "floats", (1.0,), "a list of floats"))

    def check_params(self, params):
        if not 1 <= params["side"] <= 4096:
            raise ValueError(f"side={params['side']}: give 1 to 4096")

    def shape(self, params):
        return (3, params["side"], params["side"])

    def missing(self, data_dir, params):
        return f"absent is never in {data_dir}"

    def load(self, data_dir, params):
        raise AssertionError("never loaded")


@hookimpl
def register_datasets(register):
    register(Absent())
'''

FUZZ = settings(max_examples=12, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

# What a shell can put in argv: no NUL, and no lone surrogates (the tables on stdout are UTF-8).
TEXT = st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00")
NUMBERS = ["0", "-1", "1", "9223372036854775807", "-9223372036854775808", "1e308", "1e-320", "nan", "inf", "-inf",
           "0.5", "1_000", "0x10", " 3 ", "٣"]
EDGES = ["", " ", "[", "]", ",", "=", "+", "[]", "a[b=c", "a]b[", "x=1", "é", "🚀", "a" * 300, "\t\n"]
VALUES = st.one_of(
    st.sampled_from(NUMBERS + EDGES),
    st.integers().map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(str),
    st.text(TEXT, max_size=40),
    st.text(st.sampled_from("ab1-=,+[] "), max_size=20),
)
# Paths stay inside the test's folder: nothing fuzzed may write elsewhere (the suite may run as root).
PATHS = st.one_of(
    st.sampled_from(["", " ", ".", "x/", "a" * 300, "a/" * 60 + "b", "é/🚀", "r.sqlite", "out/x.md"]),
    st.text(TEXT, min_size=1, max_size=40),
).map(lambda p: p.lstrip("/~").replace("..", "_"))


@pytest.fixture(scope="module")
def fuzz_registry(tmp_path_factory):
    """The built-ins and ``absent``, installed as pip would leave a plugin."""
    root = tmp_path_factory.mktemp("absent-plugin")
    env = installed_plugin_env(root, "aeframe-absent", "absent_dataset", ABSENT)
    sys.path.insert(0, env["PYTHONPATH"])
    try:
        yield build_registry(autoload=True)
    finally:
        sys.path.remove(env["PYTHONPATH"])
        sys.modules.pop("absent_dataset", None)


def _sane(result, *, usage_only: bool = False) -> None:
    """No traceback; 2 is a usage error, 1 says why; stdout has only tables.

    Messages repeat the values given, so a fuzzed newline may split one: an ``Error:`` line anywhere counts.
    """
    assert "Traceback" not in result.stderr, result.stderr
    # The top-level handler would turn a bug into one line: that line is a bug found, too.
    assert "Error: unexpected" not in result.stderr, result.stderr
    assert result.returncode in ((2,) if usage_only else (0, 1, 2)), result.stderr
    said = "\n" + result.stderr
    if result.returncode == 2:  # an Error: line, or the help when no command was given
        assert "\nError: " in said or result.stderr.startswith("Usage: "), result.stderr
    if result.returncode == 1:
        assert any(f"\n{start}" in said for start in ("Error: ", "aeframe: skipping ", "aeframe: failed: ")), \
            result.stderr


BENCH_VALUED = ["--seeds", "--epochs", "--time-budget", "--lr", "--device", "--precision", "--format"]
BENCH_PATHS = ["--data-dir", "--store", "--output"]
BENCH_FLAGS = [[], ["--all"], ["--compile"], ["--channels-last"], ["--no-channels-last"], ["--rerun"]]


@pytest.mark.parametrize("option", BENCH_VALUED)
@given(value=VALUES, flags=st.sampled_from(BENCH_FLAGS))
@FUZZ
@example(value="", flags=[])
@example(value="9223372036854775807", flags=[])
@example(value="nan", flags=[])
def test_bench_options(tmp_path, cli, fuzz_registry, option, value, flags):
    result = cli("bench", "-t", "baseline", "-d", "absent", "--store", "r.sqlite", *flags, option, value,
                 cwd=tmp_path, registry=fuzz_registry)
    _sane(result)


@pytest.mark.parametrize("option", BENCH_PATHS)
@given(value=PATHS)
@FUZZ
@example(value="")
@example(value="a" * 300)
def test_bench_paths(tmp_path, cli, fuzz_registry, option, value):
    args = ["bench", "-t", "baseline", "-d", "absent", option, value]
    if option != "--store":
        args += ["--store", "r.sqlite"]
    result = cli(*args, cwd=tmp_path, registry=fuzz_registry)
    _sane(result)


@pytest.mark.parametrize("variable", ["AEFRAME_DATA", "AEFRAME_CACHE", "AEFRAME_STORE", "AEFRAME_DEBUG"])
@given(value=PATHS)
@FUZZ
def test_environment_variables(tmp_path, cli, fuzz_registry, variable, value):
    if variable == "AEFRAME_CACHE":
        value = str(tmp_path / value)  # the cache is created: keep it in the test's folder
    # A fixed precision: with each value's new cache, --precision auto would measure the probe every time.
    result = cli("bench", "-t", "baseline", "-d", "absent", "--precision", "fp32", "--store", "r.sqlite", cwd=tmp_path,
                 env={variable: value}, registry=fuzz_registry)
    _sane(result)


def _technique_params(registry):
    return [(t.name, p.name) for t in registry.techniques.values() for p in t.accepted_params()]


def _dataset_params(registry):
    return [(d.name, p.name) for d in registry.datasets.values() for p in d.params]


def test_every_parameter_is_fuzzed(fuzz_registry):
    """The lists below are every parameter registered: a new one is fuzzed without editing this file."""
    assert ("baseline", "latent") in _technique_params(fuzz_registry)
    assert ("progressive-resizing", "sizes") in _technique_params(fuzz_registry)
    assert ("shapes", "train") in _dataset_params(fuzz_registry) and ("absent", "side") in _dataset_params(fuzz_registry)


@given(data=st.data(), value=VALUES, side=st.sampled_from(["1", "16", "28", "32", "33", "4096"]))
@settings(FUZZ, max_examples=60)
def test_technique_parameters(tmp_path, cli, fuzz_registry, data, value, side):
    technique, param = data.draw(st.sampled_from(_technique_params(fuzz_registry)))
    spec = f"{technique}[{param}={value}]"
    result = cli("bench", "-t", spec, "-d", f"absent[side={side}]", "--store", "r.sqlite", cwd=tmp_path,
                 registry=fuzz_registry)
    _sane(result)


@given(data=st.data(), value=VALUES)
@settings(FUZZ, max_examples=40)
def test_dataset_parameters(tmp_path, cli, fuzz_registry, data, value):
    dataset, param = data.draw(st.sampled_from(_dataset_params(fuzz_registry)))
    # --device none stops the run after the parameters are checked, before anything is loaded.
    result = cli("bench", "-t", "baseline", "-d", f"{dataset}[{param}={value}]", "--device", "none",
                 "--store", "r.sqlite", cwd=tmp_path, registry=fuzz_registry)
    _sane(result, usage_only=True)


SPECS = st.one_of(st.text(st.sampled_from("baseline+[]=,.-_ shapesabsent0123"), max_size=40), st.text(TEXT, max_size=30))


@given(technique=SPECS, dataset=SPECS)
@FUZZ
@example(technique="baseline[", dataset="absent")
@example(technique="baseline+", dataset="absent[side=]")
@example(technique="+", dataset="[]")
@example(technique="baseline[latent=1,latent=2]", dataset="absent[side=8,,]")
def test_technique_and_dataset_syntax(tmp_path, cli, fuzz_registry, technique, dataset):
    # Whatever dataset text parses, only absent can be had: the others stop at --device none.
    device = [] if dataset.strip().startswith("absent") else ["--device", "none"]
    result = cli("bench", "-t", technique, "-d", dataset, *device, "--store", "r.sqlite", cwd=tmp_path,
                 registry=fuzz_registry)
    _sane(result)


@pytest.fixture(scope="module")
def skipped_store(tmp_path_factory, fuzz_registry):
    """A store whose only record is a skipped dataset (made without training)."""
    from click.testing import CliRunner

    from aeframe.cli import cli as command
    import aeframe.registry.plugins

    folder = tmp_path_factory.mktemp("store")
    saved = aeframe.registry.plugins._registry
    aeframe.registry.plugins._registry = fuzz_registry
    try:
        CliRunner().invoke(command, ["bench", "-t", "baseline", "-d", "absent", "--store", str(folder / "r.sqlite")])
    finally:
        aeframe.registry.plugins._registry = saved
    assert (folder / "r.sqlite").exists()
    return folder / "r.sqlite"


@pytest.mark.parametrize("option", ["--store", "--output", "--images", "--docs", "--format"])
@given(value=st.one_of(PATHS, VALUES.map(lambda v: v.lstrip("/~").replace("..", "_"))))
@FUZZ
@example(value="")
@example(value="leaderboard")
def test_report_options(tmp_path, cli, fuzz_registry, skipped_store, option, value):
    store = [] if option == "--store" else ["--store", str(skipped_store)]
    result = cli("report", *store, option, value, cwd=tmp_path, registry=fuzz_registry)
    _sane(result)


@given(command=st.sampled_from([["list", "techniques"], ["list", "datasets"], ["plugins"]]),
       json_flag=st.booleans(), data_dir=PATHS)
@FUZZ
def test_list_and_plugins(tmp_path, cli, fuzz_registry, command, json_flag, data_dir):
    extra = ["--data-dir", data_dir] if command == ["list", "datasets"] else []
    result = cli(*command, *(["--json"] if json_flag else []), *extra, cwd=tmp_path, registry=fuzz_registry)
    _sane(result)


@given(names=st.lists(SPECS, min_size=1, max_size=3), data_dir=PATHS)
@FUZZ
def test_validate_names(tmp_path, cli, fuzz_registry, names, data_dir):
    registered = {*fuzz_registry.techniques, *fuzz_registry.datasets, *fuzz_registry.metrics}
    # A name that resolves runs the contract checks (training): only names that cannot are fuzzed here;
    # their parameters are the ones bench's planning checks above.
    if any(name in text for text in names for name in registered):
        return
    result = cli("validate", *names, "--data-dir", data_dir, cwd=tmp_path, registry=fuzz_registry)
    _sane(result, usage_only=True)


@given(args=st.lists(VALUES, max_size=4))
@FUZZ
@example(args=["--debug"])
@example(args=["--version"])
@example(args=["--nope"])
def test_top_level(tmp_path, cli, fuzz_registry, args):
    if "bench" in args or "validate" in args:
        args = [a for a in args if a not in ("bench", "validate")] or ["--help"]
    result = cli(*args, cwd=tmp_path, registry=fuzz_registry)
    _sane(result)
