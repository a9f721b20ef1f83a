"""Datasets that cannot be used, through the real CLI: each is named on one line, never a traceback,
never a perfect score, and the other datasets of the run still run."""
from __future__ import annotations

import contextlib
import gzip
import json
import os
import sqlite3
import struct
import tempfile
from pathlib import Path

import numpy as np
import pytest

from conftest import registry_with
from dataset_files import fake_mnist, write_mnist

TINY = "shapes[train=256,test=64]"


@pytest.fixture(scope="module")
def bad_registry():
    """The built-ins and tests/bad_datasets.py, found through an entry point as an installed plugin is."""
    return registry_with("bad_datasets", loads_cleanly=False)


def stored(store: Path) -> list[tuple]:
    with sqlite3.connect(store) as db:
        return db.execute("select dataset, label, status, error from cells order by dataset").fetchall()


def one_line_errors(stderr: str) -> None:
    assert "Traceback" not in stderr, stderr


# --- Fault 6: a dataset plugin whose load() raises --------------------------------------------------


def test_a_dataset_whose_load_raises_fails_its_cells_and_the_others_still_run(tmp_path, cli, bad_registry):
    result = cli("bench", "-t", "baseline", "-d", "broken", "-d", TINY, "--epochs", "1", "--store", "r.sqlite",
                 cwd=tmp_path, registry=bad_registry)
    assert result.returncode == 1
    one_line_errors(result.stderr)
    reason = "dataset broken (plugin 'bad_datasets' (no distribution)) failed to load: RuntimeError: the disk is on fire"
    assert f"cannot run broken: {reason}" in result.stderr
    assert f"failed: Baseline on broken (seed 0): {reason}\n" in result.stderr + "\n"
    [(name, label, status, error), (other, _, other_status, _)] = stored(tmp_path / "r.sqlite")
    assert (name, label, status) == ("broken", "Baseline", "failed") and error.startswith(reason)
    assert (other, other_status) == ("shapes", "done")
    assert "## Shapes" in result.stdout and "- Baseline: failed (dataset broken" in result.stdout


# --- Fault 5: an empty test split --------------------------------------------------------------------


@pytest.mark.parametrize("spec, message", [
    ("shapes[train=512,test=0]",
     "dataset shapes: test=0 leaves the test split empty, so nothing could be scored; give 1 or more images"),
    ("shapes[train=0]",
     "dataset shapes: train=0 leaves the training split empty, so nothing could be trained; give 1 or more images"),
], ids=["test", "train"])
def test_an_empty_shapes_split_is_refused_at_planning(tmp_path, cli, spec, message):
    result = cli("bench", "-t", "baseline", "-d", spec, "--store", "r.sqlite", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1] == f"Error: {message}"
    assert not (tmp_path / "r.sqlite").exists()


def test_a_loaded_empty_test_split_fails_its_cells_instead_of_scoring_perfect(tmp_path, cli, bad_registry):
    result = cli("bench", "-t", "baseline", "-d", "hollow", "--seeds", "2", "--store", "r.sqlite", cwd=tmp_path,
                 registry=bad_registry)
    assert result.returncode == 1
    one_line_errors(result.stderr)
    reason = ("dataset hollow (plugin 'bad_datasets' (no distribution)) loaded an empty test split (0 images), "
              "so its cells would score nothing")
    assert f"cannot run hollow: {reason}" in result.stderr
    rows = stored(tmp_path / "r.sqlite")
    assert [(label, status) for _, label, status, _ in rows] == [("Baseline", "failed")] * 2
    assert all(error.startswith(reason) for *_, error in rows)
    assert "| Baseline" not in result.stdout  # no row in any table: nothing was scored


# --- Round 2, fault 11: a training split smaller than one batch, known only once loaded --------------


def test_a_loaded_split_smaller_than_a_batch_fails_its_cells_naming_the_dataset_before_the_metrics_prepare(
        tmp_path, cli, bad_registry):
    # A cache of its own: a reference classifier trained for the dataset would be seen training.
    result = cli("bench", "-t", "baseline", "-d", "small", "--seeds", "2", "--epochs", "1", "--precision", "fp32",
                 "--no-channels-last", "--store", "r.sqlite", cwd=tmp_path, env={"AEFRAME_CACHE": str(tmp_path / "cache")},
                 registry=bad_registry)
    assert result.returncode == 1
    one_line_errors(result.stderr)
    reason = ("dataset small (plugin 'bad_datasets' (no distribution)) has 10 training images, fewer than one batch "
              "of 128 (the batch Baseline trains with), so its cells could not train a step; give it 128 or more "
              "training images")
    assert result.stderr.count(f"cannot run small: {reason}\n") == 1
    assert "reference classifier" not in result.stderr
    # Not blamed on the technique's plugin: the dataset is named, and nothing else.
    assert f"failed: Baseline on small (seed 0): {reason}\n" in result.stderr
    rows = stored(tmp_path / "r.sqlite")
    assert [(label, status, error) for _, label, status, error in rows] == [("Baseline", "failed", reason)] * 2


# --- Fault 9: limits, memory, damaged headers, unreadable data directories --------------------------


def test_a_count_beyond_the_limit_is_a_usage_error(tmp_path, cli):
    result = cli("bench", "-t", "baseline", "-d", "shapes[train=9223372036854775807]", "--store", "r.sqlite",
                 cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1] == ("Error: dataset shapes: train=9223372036854775807 is above the limit "
                                              "of 2,147,483,647 images per split")


def test_a_dataset_too_large_for_memory_is_refused_before_allocating(tmp_path, cli):
    result = cli("bench", "-t", "baseline", "-d", "shapes[train=2000000000]", "--store", "r.sqlite", cwd=tmp_path)
    assert result.returncode == 2
    last = result.stderr.splitlines()[-1]
    assert last.startswith("Error: dataset shapes: 2,000,000,000 training and 2,000 test images: 6.2 TB of memory "
                           "needed to load, ")
    assert last.endswith(" available; give smaller train and test counts")


def _idx_header(magic: int, dims: tuple[int, ...]) -> bytes:
    return struct.pack(">I", magic) + struct.pack(f">{len(dims)}I", *dims)


def _mnist_dir(tmp_path: Path) -> Path:
    raw = tmp_path / "data" / "MNIST" / "raw"
    write_mnist(raw, fake_mnist(np.random.default_rng(0), 256, 64))
    return raw


def test_an_idx_header_whose_dimensions_overflow_names_the_file(tmp_path, cli):
    raw = _mnist_dir(tmp_path)
    # 2**31 cubed wraps to 0 in int64, which matched a header-only file's size before.
    path = raw / "train-images-idx3-ubyte"
    path.write_bytes(_idx_header(2051, (2**31, 2**31, 2**31)))
    result = cli("bench", "-t", "baseline", "-d", "mnist", "--data-dir", str(tmp_path / "data"), "--store", "r.sqlite",
                 cwd=tmp_path)
    assert result.returncode == 1
    one_line_errors(result.stderr)
    assert (f"skipping mnist: {path} is truncated or corrupt (16 bytes, its header (2147483648, 2147483648, "
            f"2147483648) needs {16 + 2**93})") in result.stderr


def test_an_idx_file_announcing_more_than_memory_is_refused_before_reading_it(tmp_path, cli):
    raw = _mnist_dir(tmp_path)
    (raw / "train-images-idx3-ubyte").unlink()
    path = raw / "train-images-idx3-ubyte.gz"
    with gzip.open(path, "wb") as f:  # 4 billion images announced, a few bytes present
        f.write(_idx_header(2051, (2**32 - 1, 28, 28)) + bytes(100))
    result = cli("bench", "-t", "baseline", "-d", "mnist", "--data-dir", str(tmp_path / "data"), "--store", "r.sqlite",
                 cwd=tmp_path)
    assert result.returncode == 1
    one_line_errors(result.stderr)
    assert (f"skipping mnist: {path} (its header says 4294967295x28x28): 3.4 TB of memory needed to load, "
            in result.stderr)


def test_a_data_directory_that_cannot_be_created_is_named(tmp_path, cli):
    (tmp_path / "file").write_text("not a directory")
    data_dir = tmp_path / "file" / "data"
    result = cli("bench", "-t", "baseline", "-d", "mnist", "--data-dir", str(data_dir), "--store", "r.sqlite",
                 cwd=tmp_path)
    # bench checks the data directory before any cell runs (see tests/test_cli_errors.py): nothing is stored.
    assert result.returncode == 2
    one_line_errors(result.stderr)
    assert (f"--data-dir {data_dir} cannot be used as the data directory: {tmp_path / 'file'} is a file, not a "
            "directory; point --data-dir at a directory") in result.stderr
    assert not (tmp_path / "r.sqlite").exists()


@contextlib.contextmanager
def unprivileged():
    """Run the block as a user whom permission bits stop: root reads any file, so root becomes nobody
    for the block (effective uid only, so that it can come back)."""
    if os.geteuid() != 0:
        yield
        return
    os.setegid(65534)
    os.seteuid(65534)
    try:
        yield
    finally:
        os.seteuid(0)
        os.setegid(0)


@pytest.fixture
def unreadable_data_dir():
    """A working directory anyone may write, holding a data directory nobody may read."""
    with tempfile.TemporaryDirectory(prefix="aeframe-unreadable-") as where:
        root = Path(where)
        root.chmod(0o777)
        (root / "data").mkdir(mode=0o000)
        (root / "data").chmod(0o000)
        try:
            yield root
        finally:
            (root / "data").chmod(0o700)


def test_an_unreadable_data_directory_is_one_line_in_bench_and_in_list(unreadable_data_dir, cli):
    root, data_dir = unreadable_data_dir, unreadable_data_dir / "data"
    args = ("bench", "-t", "baseline", "-d", "mnist", "--data-dir", str(data_dir), "--store", "r.sqlite")
    with unprivileged():
        bench = cli(*args, cwd=root)
        listed = cli("list", "datasets", "--json", "--data-dir", str(data_dir), cwd=root)
    one_line_errors(bench.stderr)
    assert bench.returncode == 1
    why = (f"cannot use {data_dir / 'MNIST' / 'raw' / 'train-images-idx3-ubyte'} (Permission denied); check that "
           f"the data directory {data_dir} is a directory you can read and write, or pass --data-dir")
    assert f"skipping mnist: mnist: {why}" in bench.stderr
    one_line_errors(listed.stderr)
    assert listed.returncode == 0
    rows = {row["name"]: row for row in json.loads(listed.stdout)}
    assert rows["mnist"]["unavailable_reason"] == f"mnist: {why}"
    assert rows["shapes"]["available"] is True and set(rows) >= {"cifar10", "fashion-mnist", "mnist", "shapes"}
