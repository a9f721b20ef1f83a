"""docs/plugins.md is the plugin API's reference: every hook and every exported name is documented
there, and every example in it runs (so the docs cannot drift from the code again)."""
from __future__ import annotations

import inspect
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import aeframe
from aeframe.contract import hookspecs

ROOT = Path(__file__).resolve().parent.parent
PLUGINS_DOC = ROOT / "docs" / "plugins.md"
HOOKS = sorted(name for name in dir(hookspecs) if name.startswith("register_"))
KINDS = {"register_techniques": "technique", "register_datasets": "dataset", "register_metrics": "metric"}


def _doc() -> str:
    return PLUGINS_DOC.read_text()


def _blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", _doc(), re.S)


def _signature(name: str) -> str:
    params = inspect.signature(getattr(hookspecs, name)).parameters
    return f"{name}({', '.join(params)})"


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_is_documented_with_its_signature(hook):
    assert f"### {_signature(hook)}" in _doc()


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_has_a_test(hook):
    tests = "".join(p.read_text() for p in (ROOT / "tests").glob("test_*.py"))
    assert f"def test_hook_{hook}(" in tests


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_docstring_covers_its_arguments_and_result(hook):
    # Google style, as the API reference renders it: an Args: entry per argument, and a Returns: section
    # that says whether the first result wins.
    doc = inspect.getdoc(getattr(hookspecs, hook))
    args, returns = doc.split("\nArgs:\n", 1)[1].split("\nReturns:\n", 1)
    for arg in inspect.signature(getattr(hookspecs, hook)).parameters:
        assert f"\n    {arg}: " in "\n" + args
    assert "firstresult" in returns


def test_every_exported_name_is_in_the_api_reference_and_resolves():
    doc = _doc()
    for name in aeframe.__all__:
        assert f"| `{name}` |" in doc, f"{name} is exported but docs/plugins.md's API table lacks it"
        assert getattr(aeframe, name) is not None


def _listed(heading: str) -> set[str]:
    section = _doc().split(heading, 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"^\| `(\w+)` \|", section, re.M))


def test_every_name_the_api_reference_lists_is_exported():
    assert _listed("## The plugin API") == set(aeframe.__all__)


def test_the_executor_api_lists_exactly_what_aeframe_executors_exports():
    import aeframe.executors

    assert _listed("## The executor API") == set(aeframe.executors.__all__)
    for name in aeframe.executors.__all__:
        assert getattr(aeframe.executors, name) is not None


def test_the_entry_point_shown_is_the_example_packages_and_registers_something():
    shown = tomllib.loads(_blocks("toml")[0])["project"]["entry-points"]["aeframe"]
    example = tomllib.loads((ROOT / "examples" / "denoising" / "pyproject.toml").read_text())
    assert shown == example["project"]["entry-points"]["aeframe"]
    sys.path.insert(0, str(ROOT / "examples" / "denoising"))
    try:
        module = __import__(shown["denoising"], fromlist=["_"])
    finally:
        sys.path.remove(str(ROOT / "examples" / "denoising"))
    assert [name for name in HOOKS if hasattr(module, name)] == ["register_datasets", "register_techniques"]


def _run_examples(tmp_path) -> list[tuple[str, object]]:
    """Run every python example of docs/plugins.md as written; (kind, object) for all they register."""
    registered = []
    here = os.getcwd()
    os.chdir(tmp_path)  # an example that writes files writes them here
    try:
        for number, source in enumerate(_blocks("python")):
            namespace: dict = {"__name__": f"docs_example_{number}"}
            exec(compile(source, f"docs/plugins.md example {number + 1}", "exec"), namespace)
            for hook, kind in KINDS.items():
                if hook in namespace:
                    namespace[hook](lambda obj, kind=kind: registered.append((kind, obj)))
    finally:
        os.chdir(here)
    return registered


@pytest.fixture(scope="module")
def doc_examples(tmp_path_factory) -> list[tuple[str, object]]:
    """What the examples register, each checked as registration checks it."""
    from aeframe.registry.plugins import _validate

    objects = _run_examples(tmp_path_factory.mktemp("examples"))
    for kind, obj in objects:
        _validate(kind, obj)  # strict registration: no typos, nothing idle
    return objects


@pytest.fixture(scope="module")
def doc_registry(registry, doc_examples):
    """The built-ins plus everything the examples register."""
    from aeframe.registry.plugins import Registry

    combined = Registry(executors=registry.executors,
                        techniques=dict(registry.techniques), datasets=dict(registry.datasets),
                        metrics=dict(registry.metrics))
    for kind, obj in doc_examples:
        combined.table(kind)[obj.name] = obj
    return combined


def test_the_examples_register_what_the_docs_say(doc_examples):
    assert [(kind, obj.name) for kind, obj in doc_examples] == [
        ("technique", "noisy-input"), ("dataset", "checkers"), ("metric", "relative-mse"),
        ("technique", "smooth-l1-loss"), ("technique", "tiny-vae"), ("technique", "gentle"),
        ("technique", "weight-average"), ("technique", "clip-gradients"), ("technique", "sgd-nesterov"),
        ("technique", "flat-rate")]


def test_no_example_registers_a_name_a_built_in_has(doc_examples, registry):
    # A reader who copies one would find it ignored, the built-in keeping the name.
    assert [obj.name for kind, obj in doc_examples if obj.name in registry.table(kind)] == []


@pytest.mark.parametrize("kind, name", [
    ("technique", "noisy-input[noise=0.3]"), ("technique", "smooth-l1-loss+pixel-shuffle"), ("technique", "tiny-vae"),
    ("technique", "gentle"), ("dataset", "checkers[train=64,test=16]"), ("metric", "relative-mse"),
    ("technique", "weight-average+clip-gradients"), ("technique", "sgd-nesterov+flat-rate+progressive-resizing"),
])
def test_every_example_keeps_its_contract(doc_registry, kind, name):
    from aeframe.testing import assert_valid_dataset, assert_valid_metric, assert_valid_technique

    check = {"technique": assert_valid_technique, "dataset": assert_valid_dataset, "metric": assert_valid_metric}[kind]
    checks = check(name, doc_registry)
    assert checks and all(c.status == "PASS" for c in checks), [c.line for c in checks]


def test_the_composition_rules_the_examples_show(doc_registry):
    from aeframe.errors import CompositionError
    from aeframe.planning.plan import resolve_technique

    assert resolve_technique("noisy-input[noise=0.3]+pixel-shuffle", doc_registry).label == (
        "Noisy Input [noise=0.3] + Pixel Shuffle")
    with pytest.raises(CompositionError,
                       match="cannot combine smooth-l1-loss and feature-loss: both provide the loss"):
        resolve_technique("smooth-l1-loss+feature-loss", doc_registry)
    with pytest.raises(CompositionError, match="cannot combine gentle and progressive-resizing: both set"):
        resolve_technique("gentle+progressive-resizing", doc_registry)
    # SGD's relative rates scale progressive resizing's own; the flat curve keeps its phases.
    from techniques import context

    resized = resolve_technique("progressive-resizing", doc_registry).build(context())
    both = resolve_technique("sgd-nesterov+flat-rate+progressive-resizing", doc_registry).build(context())
    assert [p.lrs() for p in both.schedule.phases] == [[10 * r for r in p.lrs()] for p in resized.schedule.phases]
    assert both.schedule.lr_at(0.05, 1.0) == pytest.approx(0.5) and both.schedule.beta1_at is None


def test_lr_find_says_whose_rule_chooses_the_rate():
    # The study (fastai v1) chose its rates by eye; the "valley" rule is fastai v2's, not the study's.
    text = (Path(__file__).resolve().parent.parent / "docs" / "techniques.md").read_text()
    paragraph = text[text.index("`aeframe bench --lr find` replaces"):]
    paragraph = paragraph[:paragraph.index("\n\n")]
    assert "fastai v2's \"valley\" rule" in paragraph and "by eye" in paragraph
    assert "not\na reproduction of the study's choices" in paragraph or "not a reproduction" in paragraph.replace("\n", " ")


def test_the_citation_file_names_this_version():
    root = Path(__file__).resolve().parent.parent
    lines = (root / "CITATION.cff").read_text().splitlines()
    fields = dict(line.split(": ", 1) for line in lines if line and not line.startswith((" ", "#", "-")) and ": " in line)
    assert fields["cff-version"] == "1.2.0" and fields["type"] == "software"
    assert fields["version"] == aeframe.__version__
    assert fields["version"] == tomllib.loads((root / "pyproject.toml").read_text())["project"]["version"]


def test_the_sites_home_page_gives_the_readmes_two_quick_start_commands():
    root = Path(__file__).resolve().parent.parent

    def commands(text: str) -> list[str]:
        return re.findall(r"```bash\n(.*?)\n```", text, re.S)[:2]

    assert commands((root / "docs" / "index.md").read_text()) == commands((root / "README.md").read_text())
    ci = (root / ".ci" / "run").read_text()
    assert commands((root / "README.md").read_text())[1] in ci.splitlines()


def test_the_committed_leaderboard_is_the_five_seed_page_that_explains_itself():
    # All six study rows (the two ImageNet ones by their offline stand-ins, marked), five seeds on
    # both datasets, a protocol table per dataset, and Fashion-MNIST's combinations table.
    page = (ROOT / "docs" / "leaderboard.md").read_text()
    sections = dict(re.findall(r"^## (.+?)\n(.*?)(?=^## |\Z)", page, re.M | re.S))
    assert re.findall(r"^### (.+)$", sections["Training protocol"], re.M) == ["Fashion-MNIST", "Shapes"]
    study = ["Baseline", "Pixel Shuffle", "Progressive Resizing", "Resnet w/o pretrain",
             "Feature Loss [net=random] §", "Pretraining [weights=shapes] §"]
    for dataset in ("Fashion-MNIST", "Shapes"):
        first_table = re.search(r"^(\|.*\n)+", sections[dataset], re.M).group(0)
        rows = [line.split("|")[1:-1] for line in first_table.splitlines() if line.startswith("| ")]
        header = [cell.strip() for cell in rows[0]]
        by_label = {cells[0].strip(): cells for cells in rows[1:]}
        assert set(study) <= set(by_label), (dataset, list(by_label))
        seeds = header.index("Seeds")
        assert all(by_label[label][seeds].strip() == "5" for label in study)
        assert "§ an offline stand-in" in sections[dataset]
    # Beyond the study: the eight built-ins the study did not try, alone and with Progressive Resizing,
    # beside the Baseline and Progressive Resizing alone, on both datasets, five seeds, none failed.
    new = ["EMA", "Gradient Clipping", "Cosine Schedule", "L1 Loss", "Denoising", "Masked Patches", "VAE", "VQ-VAE"]
    for dataset in ("Fashion-MNIST", "Shapes"):
        study_part, beyond = sections[dataset].split("### Beyond the study")
        assert "### The study's techniques" in study_part
        table = re.search(r"^(\|.*\n)+", beyond, re.M).group(0)
        rows = [line.split("|")[1:-1] for line in table.splitlines() if line.startswith("| ")]
        seeds = [cell.strip() for cell in rows[0]].index("Seeds")
        # The first row is the classifier's accuracy on the test images themselves, no technique's.
        by_label = {cells[0].strip(): cells[seeds].strip() for cells in rows[1:] if cells[0].strip() != "Original Image"}
        assert set(by_label) == {"Baseline", "Progressive Resizing", *new, *(f"{n} + Progressive Resizing" for n in new)}
        assert set(by_label.values()) == {"5"}, (dataset, by_label)
        assert "Combinations:" in beyond and "failed" not in beyond
    combinations = sections["Fashion-MNIST"].split("Combinations:")[1]
    # baseline+progressive-resizing trains exactly as Progressive Resizing, so it is no row of its own.
    assert "| Pixel Shuffle + Progressive Resizing" in combinations and "Baseline + Progressive Resizing" not in page
    assert "## How to read the tables" in page and "(techniques.md#technique-baseline)" in page
    assert " p = 0" not in page and "git" in sections["Provenance"]
    # Cells trained from uncommitted code would say so with +dirty. The one commit marked so, 3abdaec,
    # had one uncommitted change, the store being filled (README, "The store is in the repository").
    assert set(re.findall(r"git (\w+\+dirty)", page)) <= {"3abdaec4f1e6+dirty"}


def test_the_committed_leaderboard_redraws_from_its_committed_store(cli, tmp_path):
    # The store is kept beside the page so that its numbers can be traced to cells: redrawn from it,
    # each dataset's section (tables, notes, picture links) is the committed page's.
    store = tmp_path / "leaderboard.sqlite"
    shutil.copyfile(ROOT / "docs" / "leaderboard" / "leaderboard.sqlite", store)
    result = cli("report", "--store", str(store), "--docs", str(tmp_path / "leaderboard.md"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr

    def sections(page: str) -> dict[str, str]:
        return dict(re.findall(r"^## (.+?)\n(.*?)(?=^## |\Z)", page, re.M | re.S))

    committed = sections((ROOT / "docs" / "leaderboard.md").read_text())
    redrawn = sections((tmp_path / "leaderboard.md").read_text())
    for dataset in ("Fashion-MNIST", "Shapes"):
        assert redrawn[dataset] == committed[dataset], dataset
    assert sorted(p.name for p in (tmp_path / "leaderboard").glob("*.png")) == sorted(
        p.name for p in (ROOT / "docs" / "leaderboard").glob("*.png"))


def _user_docs() -> dict[str, str]:
    """The README and every page of the site (generated pages included), by path."""
    return {str(path.relative_to(ROOT)): path.read_text() for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]}


def _options(command: str) -> list[list[str]]:
    """Each option of ``aeframe COMMAND`` as its spellings (``["-t", "--technique"]``), --help aside."""
    from aeframe.cli import cli

    return [[*param.opts, *param.secondary_opts] for param in cli.commands[command].params
            if param.param_type_name == "option" and "--help" not in param.opts]


def _long_options(command: str) -> list[str]:
    return sorted(opt for spellings in _options(command) for opt in spellings if opt.startswith("--"))


@pytest.mark.parametrize("command", ["bench", "report", "list", "plugins", "validate"])
def test_the_readmes_synopsis_lists_every_option_each_command_takes(command):
    # The synopsis omitted --combinations and --stand-ins, which the leaderboard's own commands use.
    readme = (ROOT / "README.md").read_text()
    blocks = [body for _, body in re.findall(r"^```(\w*)\n(.*?)^```", readme, re.S | re.M)]
    synopsis = next(block for block in blocks if block.startswith("aeframe [--debug] bench"))
    entries = re.split(r"^(?=aeframe )", synopsis, flags=re.M)
    mine = next(e for e in entries if re.match(rf"aeframe (\[--debug\] )?{command}\b", e))
    shown = set(re.findall(r"(?<![\w-])--?[a-z][a-z-]*", mine))
    missing = [spellings[-1] for spellings in _options(command) if not shown & set(spellings)]
    assert not missing, f"README's synopsis of `aeframe {command}` lacks {missing}"


def test_every_bench_option_is_explained_somewhere_a_user_reads():
    text = "\n".join(_user_docs().values())
    prose = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)  # the synopsis alone explains no option
    explained = set(re.findall(r"--[a-z][a-z-]*", " ".join(re.findall(r"`([^`]*)`", prose))))
    # -t and -d are the spellings the docs use for --technique and --dataset.
    explained |= {"--technique", "--dataset"} if {"`-t`", "`-d`"} <= set(re.findall(r"`-[td]`", prose)) else set()
    missing = [opt for opt in _long_options("bench") if opt not in explained]
    assert not missing, f"no page explains {missing}"


def test_help_texts_state_the_defaults_the_docs_state():
    # --channels-last's help said "[default: per device kind]" while the layout is measured per technique.
    from aeframe.cli import cli

    helps = {opt: param.help or "" for param in cli.commands["bench"].params for opt in param.opts}
    assert "measured per technique" in helps["--channels-last"]
    assert "measured per technique" in helps["--cuda-graphs"]
    speed = (ROOT / "docs" / "speed.md").read_text()
    assert "measured per technique" in speed and "Training steps captured in CUDA graphs" in speed


@pytest.mark.parametrize("path", list(_user_docs()))
def test_user_docs_cite_no_private_file_issue_number_or_home_directory(path):
    # techniques.md and metrics.md cited seed-protocol.md (not in the repository), pages spoke of
    # "issue 12", and the generated leaderboard named the cache under /root of the machine that made it.
    text = _user_docs()[path]
    assert "seed-protocol" not in text
    assert not re.search(r"\bissues? #?\d+\b", text, re.I), re.search(r".{40}\bissues? #?\d+\b.{20}", text, re.I)
    assert not re.search(r"(?<![\w.~/-])(/root|/home/[a-z]|/Users/[A-Za-z])", text), path
    # ... and docs/speed.md carried the recipe for the GPU machine lent to this project's sessions.
    assert "/opt/torch" not in text and "timeout_s" not in text, path
