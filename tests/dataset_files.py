"""Writers of small dataset files in the real on-disk formats, for the dataset plugin tests."""
from __future__ import annotations

import gzip
import io
import pickle
import struct
from pathlib import Path

import numpy as np

IDX_NAMES = {
    ("train", "images"): "train-images-idx3-ubyte",
    ("train", "labels"): "train-labels-idx1-ubyte",
    ("test", "images"): "t10k-images-idx3-ubyte",
    ("test", "labels"): "t10k-labels-idx1-ubyte",
}


def idx_bytes(array: np.ndarray) -> bytes:
    """An IDX file of unsigned bytes: magic 0x0000_08_<ndim>, big-endian dims, then the data."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = struct.pack(">I", 0x0800 | array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.tobytes()


def write_idx(path: Path, array: np.ndarray, gz: bool = False) -> Path:
    """Write ``array`` as an IDX file at ``path`` (``path`` + ".gz", gzipped, if ``gz``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = idx_bytes(array)
    if gz:
        path = path.with_name(path.name + ".gz")
        with gzip.open(path, "wb") as f:
            f.write(data)
    else:
        path.write_bytes(data)
    return path


def fake_mnist(rng: np.random.Generator, n_train: int = 5, n_test: int = 3) -> dict[str, np.ndarray]:
    """Random 28x28 images and labels 0-9 for both splits, keyed as in :data:`IDX_NAMES`."""
    return {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, n_train, dtype=np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test, dtype=np.uint8),
    }


def write_mnist(raw_dir: Path, arrays: dict[str, np.ndarray], gz: bool | dict[str, bool] = False) -> None:
    """Write the four IDX files into ``raw_dir`` (each gzipped or not, per ``gz``)."""
    for name, array in arrays.items():
        write_idx(raw_dir / name, array, gz[name] if isinstance(gz, dict) else gz)


class Py2Pickler(pickle._Pickler):  # type: ignore[name-defined]
    """Pickles ``bytes`` as Python 2's ``str`` (BINSTRING opcodes), as the real CIFAR files were written.

    Python 3 at protocol 2 would instead write ``_codecs.encode(...)`` calls; the official batches,
    made by Python 2's cPickle with numpy 1, contain no such call and name ``numpy.core.multiarray``.
    """

    dispatch = dict(pickle._Pickler.dispatch)  # type: ignore[attr-defined]

    def save_py2_str(self, obj: bytes) -> None:
        if len(obj) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(obj)]) + obj)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(obj)) + obj)
        self.memoize(obj)

    dispatch[bytes] = save_py2_str

    def save_global(self, obj: object, name: str | None = None) -> None:
        # The official files were written with numpy 1, whose array code lived in numpy.core.
        name = name or obj.__qualname__  # type: ignore[attr-defined]
        module = pickle.whichmodule(obj, name).replace("numpy._core.", "numpy.core.")
        self.write(pickle.GLOBAL + f"{module}\n{name}\n".encode())
        self.memoize(obj)


def py2_pickle(obj: object) -> bytes:
    """``obj`` pickled the way Python 2's cPickle.dump(obj, f, 2) wrote the CIFAR-10 batches."""
    buffer = io.BytesIO()
    Py2Pickler(buffer, protocol=2).dump(obj)
    return buffer.getvalue()


def cifar_batch(rng: np.random.Generator, n: int, name: str) -> dict[bytes, object]:
    """A batch dict shaped like the real ones: uint8 data (n, 3072) CHW rows, a list of int labels."""
    return {
        b"batch_label": f"{name} of 1".encode(),
        b"labels": [int(v) for v in rng.integers(0, 10, n)],
        b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
        b"filenames": [f"img_{i}.png".encode() for i in range(n)],
    }


CIFAR_NAMES = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship", b"truck"]


def write_cifar(
    folder: Path, rng: np.random.Generator, sizes: tuple[int, ...] = (2, 3, 1, 2, 2), n_test: int = 3, style: str = "py2"
) -> dict[str, dict]:
    """Write the seven CIFAR-10 files into ``folder``; return each file's dict (bytes keys).

    ``style``: "py2" as the official files (Python 2 strings); "str" dicts with str keys dumped by
    Python 3 at protocol 2; "bytes" dicts with bytes keys dumped by Python 3 at its default protocol.
    """
    folder.mkdir(parents=True, exist_ok=True)
    contents: dict[str, dict] = {f"data_batch_{i + 1}": cifar_batch(rng, n, f"training batch {i + 1}") for i, n in enumerate(sizes)}
    contents["test_batch"] = cifar_batch(rng, n_test, "testing batch")
    contents["batches.meta"] = {b"num_cases_per_batch": 10000, b"label_names": CIFAR_NAMES, b"num_vis": 3072}
    for name, content in contents.items():
        if style == "py2":
            data = py2_pickle(content)
        elif style == "str":
            data = pickle.dumps({k.decode(): _decoded(v) for k, v in content.items()}, protocol=2)
        else:
            data = pickle.dumps(content)
        (folder / name).write_bytes(data)
    return contents


def _decoded(value: object) -> object:
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, list):
        return [_decoded(v) for v in value]
    return value
