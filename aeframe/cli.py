"""The ``aeframe`` command: bench, list, plugins, validate, report, merge.

Only this module prints to stdout, and only results: tables, listings, JSON. Everything else
(progress, warnings, skips) goes to stderr. Exit codes: 0 when every cell is done or skipped,
1 when a cell failed (or an explicitly requested dataset could not be had), 2 for usage errors
(and directories that cannot be used), 128 + the signal's number when a signal stopped it: 130 for Ctrl-C,
143 for SIGTERM, 129 for SIGHUP, 131 for SIGQUIT (aeframe.execution.stopping).
Any other error that escapes a command is one ``Error:`` line with exit 1; ``--debug`` (or
``AEFRAME_DEBUG=1``) shows its traceback instead.
"""
from __future__ import annotations

import functools
import json
import os
import shlex
import sys
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence, TypeVar

import click

from aeframe.cells.durations import parse_duration
from aeframe.console import say
from aeframe.errors import AeframeError, EnvironmentProblem, UsageProblem, describe
from aeframe.execution.stopping import exit_code, import_torch, say_once, stop_like_ctrl_c, stopped_by

if TYPE_CHECKING:
    from aeframe.registry.plugins import Registry

DEFAULT_STORE = "aeframe.sqlite"
DEBUG_ENV = "AEFRAME_DEBUG"
# Far more than any study runs, small enough that planning them (cells x seeds) stays instant.
MAX_SEEDS = 1000
MAX_EPOCHS = 1_000_000
_ARGS = "aeframe.args"  # where the root context keeps the arguments it was given
T = TypeVar("T")


def _registry() -> Registry:
    """The plugins, loaded on first use: ``--help`` and ``--version`` need none of them."""
    from aeframe.registry.plugins import get_registry

    registry = get_registry()
    for warning in registry.warnings:
        say(f"warning: {warning}")
    return registry


def _duration(ctx, param, value):
    if value is None:
        return None
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def _not_blank(ctx, param, value):
    if value is not None and not str(value).strip():
        raise click.BadParameter("is empty")
    return value


def _cells_per_device(ctx, param, value):
    """--cells-per-device: a whole number of at least 1, or auto."""
    text = str(value).strip().lower()
    if text == "auto":
        return "auto"
    if not text.isdigit() or int(text) < 1:
        raise click.BadParameter(f"{value!r} is neither a whole number of at least 1 nor auto")
    return int(text)


def _shard(ctx, param, value):
    """``K/N`` -> (K, N), 1 <= K <= N."""
    if value is None:
        return None
    try:
        k, n = (int(part) for part in value.split("/"))
    except ValueError:
        raise click.BadParameter(f"{value!r} is not K/N (e.g. 2/4: the second of four slices)") from None
    if not 1 <= k <= n:
        raise click.BadParameter(f"{value!r}: K must be between 1 and N")
    return k, n


class _Path(click.Path):
    """click's Path, refusing an empty value, which it would take for the current directory."""

    def convert(self, value, param, ctx):
        if isinstance(value, str) and not value.strip():
            self.fail("is empty; give a path", param, ctx)
        return super().convert(value, param, ctx)


def _says_what_is_saved(command: Callable[..., T]) -> Callable[..., T]:
    """A stop before the cells train (importing torch, loading plugins, planning, loading data) still ends
    ``aeframe bench`` with a line about its store; once they train, bench itself says how many are saved."""
    @functools.wraps(command)
    def run(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except KeyboardInterrupt as exc:
            store = kwargs["store_path"]
            say_once(exc, f"{stopped_by(exc)} before any cell trained, so nothing new is saved in {store}; "
                          "run the same command again to start")
            raise
    return run


class _Unusable(click.ClickException):
    """A directory the run needs cannot be used: like a bad option, nothing ran, so exit 2 (no usage text)."""

    exit_code = 2


def _where(exc: BaseException) -> str:
    """The file and line that raised, as ``package/module.py:12, ``: it tells whose code to look at."""
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return ""
    path = Path(frames[-1].filename)
    return f"{path.parent.name}/{path.name}:{frames[-1].lineno}, "


class _Aeframe(click.Group):
    """The top-level handler: whatever escapes a command ends as one line, an exit code, and no traceback.

    It also keeps the arguments it was given, so that a record or a page names the command that made it.
    """

    def make_context(self, info_name, args, parent=None, **extra):
        given = list(args)
        ctx = super().make_context(info_name, args, parent, **extra)
        ctx.meta[_ARGS] = given
        return ctx

    def invoke(self, ctx: click.Context):
        with stop_like_ctrl_c():
            try:
                return super().invoke(ctx)
            except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
                raise
            except KeyboardInterrupt as exc:
                # bench has said which cells are saved; the code tells scripts it was stopped, not that it failed.
                say_once(exc, stopped_by(exc))
                ctx.exit(exit_code(exc))
            except Exception as exc:
                if ctx.params.get("debug"):
                    raise
                command = " ".join(["aeframe", *([ctx.invoked_subcommand] if ctx.invoked_subcommand else [])])
                raise click.ClickException(
                    f"unexpected {describe(exc)} ({_where(exc)}in {command}); rerun with --debug (or {DEBUG_ENV}=1) for the "
                    "traceback, and report it if it is not explained by your files or settings"
                ) from None


def _emit(text: str, output: str | None) -> None:
    if output:
        from aeframe.data.directories import write_atomically

        text = text if text.endswith("\n") else text + "\n"
        try:
            Path(output).parent.mkdir(parents=True, exist_ok=True)
            write_atomically(Path(output), lambda partial: partial.write_text(text))
        except OSError as exc:
            raise click.ClickException(f"cannot write {output} ({exc.strerror or exc}); pass --output with a "
                                       "writable path") from None
        say(f"wrote {output}")
    else:
        click.echo(text.rstrip("\n"))


@click.group(cls=_Aeframe)
@click.version_option(package_name="aeframe", prog_name="aeframe")
@click.option("--debug", is_flag=True, envvar=DEBUG_ENV,
              help=f"Show the traceback of an unexpected error instead of one line [env {DEBUG_ENV}=1].")
def cli(debug: bool) -> None:
    """Benchmark autoencoder training techniques under one budget and compare them in tables."""


def _directories(ctx: click.Context, data_dir: Path | None, cache: bool = True) -> Path:
    """The data directory, checked (and the cache directory, created): a run that cannot use them stops
    here, naming the option or variable that set them, before any cell runs."""
    from aeframe.data.directories import check_cache_dir, check_data_dir
    from aeframe.data.loading import CACHE_ENV, DATA_ENV, default_cache_dir, default_data_dir

    origin = ctx.get_parameter_source("data_dir")
    source = {click.core.ParameterSource.COMMANDLINE: "--data-dir",
              click.core.ParameterSource.ENVIRONMENT: DATA_ENV}.get(origin)
    path = data_dir or default_data_dir()
    _guard(lambda: check_data_dir(path, source))
    if cache:
        _guard(lambda: check_cache_dir(default_cache_dir(), CACHE_ENV if os.environ.get(CACHE_ENV) else None))
    return path


@cli.command()
@click.option("--all", "all_", is_flag=True, help="Every registered technique on every available dataset.")
@click.option("-t", "--technique", "techniques", multiple=True, metavar="NAME[k=v]+...",
              help="Technique or combination, e.g. baseline or pixel-shuffle+feature-loss. Repeatable.")
@click.option("-d", "--dataset", "datasets", multiple=True, metavar="NAME[k=v]",
              help="Dataset, e.g. fashion-mnist or mnist[view=native]. Repeatable.")
@click.option("--seeds", type=click.IntRange(min=1, max=MAX_SEEDS), default=1, show_default=True, help="Seeds per cell (0..N-1).")
@click.option("--epochs", type=click.IntRange(min=1, max=MAX_EPOCHS), default=15, show_default=True, help="Epoch budget per cell.")
@click.option("--time-budget", callback=_duration, metavar="DURATION",
              help="Training-time budget per cell (45s, 10m, 1h); whichever of it and --epochs ends first.")
@click.option("--lr", type=click.Choice(["study", "find"]), default="study", show_default=True,
              help="Learning rates: each technique's (the study's), or a range test per cell ('valley' rule), "
                   "whose time is reported apart from training time.")
@click.option("--device", default="auto", show_default=True, callback=_not_blank, help="auto, cpu, cuda or cuda:N.")
@click.option("--precision", type=click.Choice(["auto", "fp32", "bf16", "fp16"]), default="auto", show_default=True,
              help="Numeric precision of the forward pass (autocast; the loss and metrics stay fp32). "
                   "auto: the device kind's measured default, see docs/speed.md.")
@click.option("--channels-last/--no-channels-last", "channels_last", default=None,
              help="Keep images and conv weights in channels_last memory [default: measured per technique].")
@click.option("--compile", "compile_", is_flag=True,
              help="torch.compile each model; compile time is reported apart from training time.")
@click.option("--cuda-graphs/--no-cuda-graphs", "graphs", default=None,
              help="Capture each training step in a CUDA graph and replay it; a step that cannot be captured "
                   "trains eagerly, with the reason recorded [default: measured per technique, the faster].")
@click.option("--data-dir", type=_Path(file_okay=False, path_type=Path), envvar="AEFRAME_DATA",
              help="Where datasets live [env AEFRAME_DATA; default: the per-user cache].")
@click.option("--store", "store_path", type=_Path(dir_okay=False, path_type=Path), envvar="AEFRAME_STORE",
              default=DEFAULT_STORE, show_default=True, help="SQLite results file [env AEFRAME_STORE].")
@click.option("--output", type=_Path(dir_okay=False),
              help="Write the tables to this file instead of stdout.")
@click.option("--format", "fmt", type=click.Choice(["markdown", "json", "csv"]), default="markdown", show_default=True)
@click.option("--rerun", is_flag=True, help="Train cells again even if the store has them done (their earlier results are kept).")
@click.option("--executor", default="local", show_default=True, callback=_not_blank,
              help="What trains the cells: local (this process) or ray (a Ray cluster); `aeframe list executors`.")
@click.option("--ray-address", "address", callback=_not_blank, metavar="HOST:PORT",
              help="The Ray cluster to use [env RAY_ADDRESS; default: start a local one, even where `ray start` runs "
                   "one here]. --executor ray only.")
@click.option("--gpus-per-cell", type=click.FloatRange(min=0, max=1), metavar="G",
              help="GPUs Ray reserves per cell: 1, or a fraction to share a GPU (tables then say so) "
                   "[default: 1 when the cluster has GPUs, else 0]. --executor ray only.")
@click.option("--cpus-per-cell", type=click.IntRange(min=1), metavar="N",
              help="CPUs Ray reserves per cell, and torch's threads on CPU cells [default: a whole node for CPU "
                   "cells, 1 for GPU cells]. --executor ray only.")
@click.option("--cells-per-device", callback=_cells_per_device, default="1", show_default=True, metavar="N|auto",
              help="Train N cells at once on the device, in worker processes, where one leaves it mostly idle; "
                   "auto: as many as the GPU's measured busy share, its memory and the CPU's cores allow (1 on a "
                   "CPU). Each row's first seed trains alone first and gives the table its times; the packed "
                   "cells' times are stored but left out. Needs --epochs (a time budget would measure the "
                   "neighbours). --executor local only.")
@click.option("--retries", type=click.IntRange(min=0), default=2, show_default=True,
              help="How often a cell whose worker process died (killed, out of memory, node lost) is started "
                   "again; a technique that raises is not retried. --executor ray only.")
@click.option("--combinations", type=click.IntRange(1, 2), default=1, show_default=True, metavar="K",
              help="2: also train every pair of the techniques (a+b) that can be combined, and compare each pair "
                   "with the better of its two techniques alone (the report's Combinations table); pairs that "
                   "cannot be combined are listed with the reason, not run.")
@click.option("--stand-ins", "stand_ins", is_flag=True,
              help="Where a technique cannot run here (ImageNet weights that cannot be had offline), also train "
                   "the offline stand-in it declares (pretrained-resnet[weights=shapes], feature-loss[net=random]); "
                   "its row is marked § and the difference said under the table.")
@click.option("--shard", callback=_shard, metavar="K/N",
              help="Run only the K-th of N deterministic slices of the planned cells (e.g. SLURM array jobs; "
                   "combine their stores with aeframe merge).")
@click.pass_context
@_says_what_is_saved
def bench(ctx, all_, techniques, datasets, seeds, epochs, time_budget, lr, device, precision, channels_last, compile_,
          graphs, data_dir, store_path, output, fmt, rerun, executor, address, gpus_per_cell, cpus_per_cell, retries,
          cells_per_device, combinations, stand_ins, shard) -> None:
    """Train techniques on datasets under a budget, store every cell, print the comparison tables.

    Cells already done with the same configuration are taken from the store, so re-running a
    command resumes it. Stdout carries only the tables: `aeframe bench --all > results.md` works.
    With --executor ray the cells train side by side on a Ray cluster (docs/distributed.md).
    """
    import_torch()  # first: it takes a second, and a signal must not land inside it
    from aeframe.cells.budget import Budget
    from aeframe.contract.executor import PLACEMENT_OPTIONS, ExecutorSettings
    from aeframe.execution.bench import BenchRequest, run_bench

    if not (all_ or techniques or datasets):
        raise click.UsageError("nothing to run: give --all, or -t TECHNIQUE and/or -d DATASET")
    given = {name for name in PLACEMENT_OPTIONS
             if ctx.get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE}
    placement = ExecutorSettings(address=address, gpus_per_cell=gpus_per_cell, cpus_per_cell=cpus_per_cell,
                                 cells_per_device=cells_per_device, retries=retries, given=given)
    data_dir = _directories(ctx, data_dir)
    request = BenchRequest(
        techniques=list(techniques),
        datasets=list(datasets),
        run_all=all_,
        seeds=seeds,
        budget=Budget(epochs=epochs, seconds=time_budget),
        device=device,
        data_dir=data_dir,
        store_path=store_path,
        rerun=rerun,
        lr=lr,
        precision=precision,
        channels_last=channels_last,
        compile=compile_,
        graphs=graphs,
        command=_command_line(ctx),
        executor=executor,
        placement=placement,
        shard=shard,
        combinations=combinations,
        stand_ins=stand_ins,
    )
    outcome = _guard(lambda: run_bench(request, _registry()))
    from aeframe.report.render import render

    try:
        _emit(render(outcome.shown, outcome.metrics, fmt), output)
    except KeyboardInterrupt as exc:
        say_once(exc, f"{stopped_by(exc)} after training: every cell of the run is saved in {store_path}; "
                      f"`aeframe report --store {store_path}` shows the tables")
        raise
    sys.exit(outcome.exit_code)


def _command_line(ctx: click.Context) -> str:
    """The command as this invocation was given its arguments (not ``sys.argv``, which belongs to whatever
    program called aeframe in-process: a test runner, a notebook), as a shell would take it."""
    return shlex.join(["aeframe", *ctx.find_root().meta.get(_ARGS, [])])


def _guard(action):
    """User mistakes become one-line messages: usage errors exit 2, other problems exit 1."""
    try:
        return action()
    except UsageProblem as exc:
        raise click.UsageError(str(exc)) from None
    except EnvironmentProblem as exc:
        raise _Unusable(str(exc)) from None
    except AeframeError as exc:
        raise click.ClickException(str(exc)) from None


@cli.group("list")
def list_() -> None:
    """List registered techniques, datasets or executors."""


@list_.command("techniques")
@click.option("--json", "as_json", is_flag=True, help="Output JSON.")
def list_techniques(as_json: bool) -> None:
    """Each technique: name, row title, what it provides or wraps, its parameters."""
    from aeframe.contract.technique import LR_CURVE, OPTIMIZER, PARTS

    registry = _registry()
    rows = []
    for name, tech in _by_name(registry.techniques):
        rows.append({
            "name": name,
            "title": tech.title,
            "description": _description(tech),
            "provides": [p for p in (*PARTS, OPTIMIZER, LR_CURVE) if tech.provides(p)],
            "wraps": [p for p in (*PARTS, OPTIMIZER) if tech.wraps(p)],
            "acts_on": list(tech.events()),
            "base": tech.base,
            "plugin": _plugin_name(registry, "technique", name),
            "params": [p.describe() for p in tech.accepted_params()],
        })
    click.echo(json.dumps(rows, indent=2) if as_json else _listing(rows))


def _plugin_name(registry: Registry, kind: str, name: str) -> str | None:
    info = registry.plugin_of(kind, name)
    return info.name if info else None


@list_.command("datasets")
@click.option("--json", "as_json", is_flag=True, help="Output JSON.")
@click.option("--data-dir", type=_Path(file_okay=False, path_type=Path), envvar="AEFRAME_DATA",
              help="Where datasets live [env AEFRAME_DATA].")
@click.pass_context
def list_datasets(ctx: click.Context, as_json: bool, data_dir: Path | None) -> None:
    """Each dataset: name, title, image shape, parameters, and whether it is available here (and if not, why)."""
    from aeframe.data.loading import availability
    from aeframe.planning.plan import resolve_dataset

    registry = _registry()
    data_dir = _directories(ctx, data_dir, cache=False)
    rows = []
    for name, plugin in _by_name(registry.datasets):
        choice = resolve_dataset(name, registry)
        why = availability(choice, data_dir)
        rows.append({
            "name": name,
            "title": plugin.title,
            "description": _description(plugin),
            "shape": list(plugin.shape(choice.params)),
            "available": why is None,
            "unavailable_reason": why,
            "downloadable": plugin.can_download(),
            "plugin": _plugin_name(registry, "dataset", name),
            "params": [p.describe() for p in plugin.params],
        })
    click.echo(json.dumps(rows, indent=2) if as_json else _listing(rows))


@list_.command("executors")
@click.option("--json", "as_json", is_flag=True, help="Output JSON.")
def list_executors(as_json: bool) -> None:
    """Each executor: name, title, what it does, whether it can run here (and if not, how to get it)."""
    from aeframe.contract.executor import PLACEMENT_OPTIONS

    registry = _registry()
    rows = []
    for name, executor in _by_name(registry.executors):
        try:
            why = executor.missing()
        except Exception as exc:  # a third-party executor's bug must not hide the others
            why = f"checking it failed: {describe(exc)}"
        rows.append({"name": name, "title": executor.title, "description": _description(executor),
                     "available": why is None, "unavailable_reason": why,
                     "options": [PLACEMENT_OPTIONS[o] for o in executor.accepts if o in PLACEMENT_OPTIONS],
                     "plugin": _plugin_name(registry, "executor", name), "params": []})
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        click.echo(f"{row['name']}: {row['title']}: {row['description']}")
        state = "available" if row["available"] else f"not available here: {row['unavailable_reason']}"
        options = f"; options {', '.join(row['options'])}" if row["options"] else ""
        click.echo(f"    {state}{options}")


def _by_name(table: dict[str, T]) -> list[tuple[str, T]]:
    """Sorted by registered name, so that the qualified names of one that two distributions register
    (``aeframe:denoising``, ``aeframe-denoising:denoising``) are listed together, where the name is, in
    the order they were loaded (the built-in first)."""
    loaded = {name: i for i, name in enumerate(table)}
    return sorted(table.items(), key=lambda item: (item[0].rpartition(":")[2], loaded[item[0]]))


def _description(obj: object) -> str:
    """A plugin object's ``description``, else the first line of its class's docstring."""
    found = str(getattr(obj, "description", "") or "").strip()
    if found:
        return found
    doc = (type(obj).__doc__ or "").strip()
    return doc.splitlines()[0].strip() if doc else ""


def _listing(rows: Sequence[dict]) -> str:
    lines = []
    for row in rows:
        head = f"{row['name']}: {row['title']}: {row['description']}"
        lines.append(head)
        if "shape" in row:
            state = "available" if row["available"] else f"not available here: {row['unavailable_reason']}"
            lines.append(f"    shape {'x'.join(map(str, row['shape']))}; {state}")
        if row.get("provides") or row.get("wraps") or row.get("base"):
            parts = [f"provides {', '.join(row['provides'])}" if row["provides"] else "",
                     f"wraps {', '.join(row['wraps'])}" if row["wraps"] else "",
                     f"acts on {', '.join(row['acts_on'])}" if row.get("acts_on") else "",
                     f"base {row['base']}" if row["base"] else ""]
            lines.append("    " + "; ".join(p for p in parts if p))
        for p in row["params"]:
            choices = f" (one of {', '.join(p['choices'])})" if p["choices"] else ""
            lines.append(f"    [{p['name']}={p['default']}] {p['type']}: {p['help']}{choices}")
    return "\n".join(lines)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Output JSON.")
def plugins(as_json: bool) -> None:
    """Each plugin: name, distribution and version, hooks, what it registered, and its load error if any."""
    registry = _registry()
    rows = [p.to_dict() for p in registry.plugins]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        origin = f"{row['distribution']} {row['version']}" if row["distribution"] else "unknown distribution"
        kind = "built-in" if row["builtin"] else "third-party"
        click.echo(f"{row['name']} ({origin}, {kind})")
        if row["hooks"]:
            click.echo(f"    hooks: {', '.join(row['hooks'])}")
        for what, names in row["registered"].items():
            click.echo(f"    {what}s: {', '.join(names)}")
        if row["error"]:
            click.echo(f"    ERROR: {row['error']} (skipped)")
        if row["skipped"]:
            click.echo(f"    skipped: {row['skipped']}")


@cli.command()
@click.argument("names", nargs=-1, metavar="[NAME]...")
@click.option("--data-dir", type=_Path(file_okay=False, path_type=Path), envvar="AEFRAME_DATA",
              help="Where datasets live [env AEFRAME_DATA; default: the per-user cache].")
@click.pass_context
def validate(ctx: click.Context, names: tuple[str, ...], data_dir: Path | None) -> None:
    """Check that techniques, datasets and metrics keep their contracts: one PASS, FAIL or SKIP line per check.

    NAME is a technique as -t takes it (baseline[latent=64], a+b), a dataset or a metric; without
    NAME, everything registered is checked. Exits 1 when a check failed, 2 for an unknown name.
    """
    from aeframe.data.loading import default_cache_dir
    from aeframe.validate.checks import FAIL, PASS, SKIP, Setting, checks_for, resolve_names

    data_dir = _directories(ctx, data_dir)
    setting = Setting(_registry(), data_dir, default_cache_dir(), say=say)
    targets = _guard(lambda: resolve_names(list(names), setting))
    counts: dict[str, int] = {}
    for check in checks_for(targets, setting):
        click.echo(check.line)  # as each finishes: the training checks take seconds per technique
        counts[check.status] = counts.get(check.status, 0) + 1
    say(f"{counts.get(PASS, 0)} passed, {counts.get(FAIL, 0)} failed, {counts.get(SKIP, 0)} skipped")
    sys.exit(1 if counts.get(FAIL) else 0)


@cli.command()
@click.option("--store", "store_path", type=_Path(dir_okay=False, path_type=Path), envvar="AEFRAME_STORE",
              default=DEFAULT_STORE, show_default=True, help="SQLite results file [env AEFRAME_STORE].")
@click.option("--format", "fmt", type=click.Choice(["markdown", "json", "csv"]), default="markdown", show_default=True)
@click.option("--output", type=_Path(dir_okay=False), help="Write to this file instead of stdout.")
@click.option("--images", "images_dir", type=_Path(file_okay=False, path_type=Path),
              help="Write each table's pictures (reconstruction grid, MSE-vs-time plot) as PNG files here "
                   "and link them from the markdown and the JSON.")
@click.option("--docs", "page", type=_Path(dir_okay=False, path_type=Path),
              help="Write the leaderboard page here: tables, pictures, provenance and the commands that "
                   "reproduce it. Its pictures go to --images, by default a folder named after the page.")
def report(store_path: Path, fmt: str, output: str | None, images_dir: Path | None, page: Path | None) -> None:
    """Render every result in the store as comparison tables (markdown, json or csv), or as a leaderboard page.

    Links to pictures are relative to where the output is written (the page's or --output's
    folder, else the current directory), so they render where the file is read.
    """
    from aeframe.report.render import render
    from aeframe.store.sqlite_store import Store

    if page is not None and output:
        raise click.UsageError("--docs writes the page itself; leave out --output")
    if page is not None and fmt != "markdown":
        raise click.UsageError("--docs writes a markdown page; leave out --format (or use --format without --docs)")
    if fmt == "csv" and images_dir is not None:
        raise click.UsageError("csv has one row per cell and no place for pictures; use --format markdown or json")
    if page is not None and images_dir is None:
        # A page named without a suffix would share its name with the folder.
        images_dir = page.with_suffix("") if page.suffix else page.with_name(f"{page.name}-images")
    registry = _registry()

    def read():
        with Store(store_path, write=False) as store:
            records = store.records()
            samples = store.samples(r.key for r in records) if images_dir is not None else {}
        return records, samples

    records, samples = _guard(read)
    from aeframe.report.publish import draw, write_page

    figures = _guard(lambda: draw(records, samples, images_dir, say)) if images_dir is not None else None
    metrics = list(registry.metrics.values())
    if page is not None:
        command = _command_line(click.get_current_context())
        _guard(lambda: write_page(records, metrics, page, command, figures, say))
        return
    link_base = Path(output).parent if output else Path(".")
    _emit(render(records, metrics, fmt, figures, link_base), output)


@cli.command()
@click.argument("out", type=_Path(dir_okay=False, path_type=Path))
@click.argument("inputs", nargs=-1, metavar="IN...",
                type=_Path(exists=True, dir_okay=False, path_type=Path))
def merge(out: Path, inputs: tuple[Path, ...]) -> None:
    """Merge the results stores IN... (e.g. from a laptop and a GPU box) into OUT, created if missing.

    Every attempt is kept as history; where stores hold the same cell, the attempt that finished
    last counts. Attempts OUT holds already are not added again, so merging twice changes nothing.
    Every IN is checked before anything is written: a store of a newer aeframe, or a file that is
    not a store, stops the merge with OUT untouched. A summary goes to stderr.
    """
    from aeframe.store.merge import merge_stores

    if not inputs:
        raise click.UsageError(f"nothing to merge into {out}: give one or more stores after it (aeframe merge OUT IN...)")
    _guard(lambda: merge_stores(out, inputs, say))


if __name__ == "__main__":
    cli()
