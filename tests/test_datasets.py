"""The built-in dataset plugins: file formats read exactly, clear failures, generated shapes."""
from __future__ import annotations

import os
import pickle
import socket
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from aeframe.contract.dataset import DatasetPlugin, DatasetUnavailable, ImageData
from aeframe.errors import SpecError
from aeframe.contract.params import Param
from aeframe_builtins.datasets import cifar10, mnist_family, mnist_files, shapes, shapes_generator, torchvision_download
from aeframe_builtins.datasets.cifar10 import CIFAR10
from aeframe_builtins.datasets.cifar10_batches import RestrictedUnpickler, restricted_load
from aeframe_builtins.datasets.mnist_family import MNIST, FashionMNIST
from aeframe_builtins.datasets.shapes import Shapes
from dataset_files import IDX_NAMES, fake_mnist, write_cifar, write_idx, write_mnist

NATIVE = {"view": "native"}
STUDY = {"view": "study"}
MNIST_FILES = list(IDX_NAMES.values())
CIFAR_FILES = [*(f"data_batch_{i}" for i in range(1, 6)), "test_batch", "batches.meta"]
DEBIAN_FASHION = Path("/usr/share/datasets/fashion-mnist")


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


@pytest.fixture(autouse=True)
def no_system_fashion(monkeypatch, tmp_path):
    """Keep the machine's Debian Fashion-MNIST out of tests that are about the data dir."""
    monkeypatch.setattr(FashionMNIST, "system_dirs", (tmp_path / "no-system-dir",))


@pytest.fixture(params=["mnist", "fashion-mnist"])
def idx_dataset(request) -> tuple[DatasetPlugin, str]:
    """Each IDX dataset with its torchvision folder name."""
    return (MNIST(), "MNIST") if request.param == "mnist" else (FashionMNIST(), "FashionMNIST")


# --- MNIST and Fashion-MNIST ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "gz",
    [False, True, {"train-images-idx3-ubyte": True, "train-labels-idx1-ubyte": False,
                   "t10k-images-idx3-ubyte": False, "t10k-labels-idx1-ubyte": True}],
    ids=["raw", "gz", "mixed"],
)
def test_idx_files_load_exactly(idx_dataset, tmp_path, rng, gz):
    dataset, folder = idx_dataset
    arrays = fake_mnist(rng)
    write_mnist(tmp_path / folder / "raw", arrays, gz)
    assert dataset.missing(tmp_path, NATIVE) is None

    data = dataset.load(tmp_path, NATIVE)

    assert isinstance(data, ImageData)
    assert data.train.images.dtype == torch.uint8 and data.train.labels.dtype == torch.int64
    assert data.train.images.shape == (5, 1, 28, 28) and data.test.images.shape == (3, 1, 28, 28)
    assert torch.equal(data.train.images[:, 0], torch.from_numpy(arrays["train-images-idx3-ubyte"]))
    assert torch.equal(data.test.images[:, 0], torch.from_numpy(arrays["t10k-images-idx3-ubyte"]))
    assert data.train.labels.tolist() == arrays["train-labels-idx1-ubyte"].tolist()
    assert data.test.labels.tolist() == arrays["t10k-labels-idx1-ubyte"].tolist()
    assert len(data.classes) == 10
    assert dataset.shape(NATIVE) == (1, 28, 28)


def test_class_names():
    assert MNIST.classes == tuple("0123456789")
    assert FashionMNIST.classes == (
        "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
        "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
    )


def test_plain_file_preferred_over_gz(tmp_path, rng):
    # torchvision keeps both the .gz it downloaded and the file it extracted.
    arrays = fake_mnist(rng)
    raw = tmp_path / "MNIST" / "raw"
    write_mnist(raw, arrays, gz=False)
    other = fake_mnist(np.random.default_rng(99))
    write_idx(raw / "train-images-idx3-ubyte", other["train-images-idx3-ubyte"], gz=True)
    data = MNIST().load(tmp_path, NATIVE)
    assert torch.equal(data.train.images[:, 0], torch.from_numpy(arrays["train-images-idx3-ubyte"]))


def test_study_view_shape_and_resize(idx_dataset, tmp_path, rng):
    dataset, folder = idx_dataset
    arrays = fake_mnist(rng)
    # Constant images must stay constant through the bilinear resize.
    for value, i in ((0, 0), (255, 1), (17, 2)):
        arrays["train-images-idx3-ubyte"][i] = value
    write_mnist(tmp_path / folder / "raw", arrays, gz=True)

    data = dataset.load(tmp_path, STUDY)

    assert dataset.shape(STUDY) == (3, 32, 32)
    assert data.train.images.shape == (5, 3, 32, 32) and data.test.images.shape == (3, 3, 32, 32)
    assert data.train.images.dtype == torch.uint8
    for value, i in ((0, 0), (255, 1), (17, 2)):
        assert (data.train.images[i] == value).all()
    # Grey replicated to three identical channels.
    assert torch.equal(data.train.images[:, 0], data.train.images[:, 1])
    assert torch.equal(data.train.images[:, 0], data.train.images[:, 2])
    # Bilinear with half-pixel centres: the corner output pixels are the corner input pixels.
    native = torch.from_numpy(arrays["t10k-images-idx3-ubyte"])
    assert torch.equal(data.test.images[:, 0, 0, 0], native[:, 0, 0])
    assert torch.equal(data.test.images[:, 0, 31, 31], native[:, 27, 27])
    expected = F.interpolate(native[:, None].float(), size=(32, 32), mode="bilinear", align_corners=False)
    assert torch.equal(data.test.images[:, :1], expected.round().clamp(0, 255).to(torch.uint8))
    assert data.train.labels.tolist() == arrays["train-labels-idx1-ubyte"].tolist()


def test_study_view_resizes_in_chunks(monkeypatch):
    images = torch.randint(0, 256, (7, 1, 28, 28), dtype=torch.uint8)
    whole = mnist_files.to_study_view(images)
    from aeframe.contract import resample

    monkeypatch.setattr(resample, "_CHUNK", 3)
    assert torch.equal(mnist_files.to_study_view(images), whole)


def test_missing_names_directory_files_and_fixes(idx_dataset, tmp_path, rng):
    dataset, folder = idx_dataset
    raw = tmp_path / folder / "raw"
    message = dataset.missing(tmp_path, STUDY)
    assert message is not None and "\n" not in message
    assert message.startswith(f"{dataset.name} is not in {raw}")
    for name in MNIST_FILES:
        assert name in message
    assert ".gz" in message and "--data-dir" in message and "network" in message
    assert ("apt-get install dataset-fashion-mnist" in message) == (dataset.name == "fashion-mnist")

    arrays = fake_mnist(rng)
    del arrays["t10k-labels-idx1-ubyte"]
    write_mnist(raw, arrays)
    assert dataset.missing(tmp_path, STUDY) is not None
    with pytest.raises(DatasetUnavailable, match="t10k-labels-idx1-ubyte"):
        dataset.load(tmp_path, STUDY)


@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gz"])
def test_truncated_idx_names_the_file(tmp_path, rng, gz):
    raw = tmp_path / "MNIST" / "raw"
    write_mnist(raw, fake_mnist(rng), gz)
    path = raw / ("train-images-idx3-ubyte.gz" if gz else "train-images-idx3-ubyte")
    path.write_bytes(path.read_bytes()[:-40])

    with pytest.raises(DatasetUnavailable) as caught:
        MNIST().load(tmp_path, NATIVE)
    assert str(path) in str(caught.value)
    assert "again" in str(caught.value)


def test_corrupt_idx_headers_name_the_file(tmp_path, rng):
    raw = tmp_path / "MNIST" / "raw"
    arrays = fake_mnist(rng)
    write_mnist(raw, arrays)
    labels = raw / "t10k-labels-idx1-ubyte"

    # An images file where labels belong: wrong magic number.
    write_idx(labels, arrays["t10k-images-idx3-ubyte"])
    with pytest.raises(DatasetUnavailable, match=f"{labels}.*magic"):
        MNIST().load(tmp_path, NATIVE)

    # Right format, but a label count that does not match the images.
    write_idx(labels, np.zeros(4, dtype=np.uint8))
    with pytest.raises(DatasetUnavailable, match=str(labels)):
        MNIST().load(tmp_path, NATIVE)

    # Not gzip at all behind a .gz name.
    labels.unlink()
    (raw / "t10k-labels-idx1-ubyte.gz").write_bytes(b"this is not gzip data")
    with pytest.raises(DatasetUnavailable, match="t10k-labels-idx1-ubyte.gz"):
        MNIST().load(tmp_path, NATIVE)


def test_fashion_found_in_system_dir(tmp_path, rng, monkeypatch):
    system = tmp_path / "usr-share"
    monkeypatch.setattr(FashionMNIST, "system_dirs", (system,))
    data_dir = tmp_path / "data"
    assert str(system) in FashionMNIST().missing(data_dir, NATIVE)

    arrays = fake_mnist(rng)
    write_mnist(system, arrays, gz=True)
    assert FashionMNIST().missing(data_dir, NATIVE) is None
    assert MNIST().missing(data_dir, NATIVE) is not None  # the system dir is Fashion-MNIST's only
    data = FashionMNIST().load(data_dir, NATIVE)
    assert torch.equal(data.train.images[:, 0], torch.from_numpy(arrays["train-images-idx3-ubyte"]))

    # Files in the data dir win over the system's.
    own = fake_mnist(np.random.default_rng(7))
    write_mnist(data_dir / "FashionMNIST" / "raw", own)
    data = FashionMNIST().load(data_dir, NATIVE)
    assert torch.equal(data.train.images[:, 0], torch.from_numpy(own["train-images-idx3-ubyte"]))


@pytest.mark.skipif(not DEBIAN_FASHION.is_dir(), reason="Debian package dataset-fashion-mnist not installed")
def test_debian_fashion_mnist_loads(monkeypatch, tmp_path):
    monkeypatch.setattr(FashionMNIST, "system_dirs", (DEBIAN_FASHION,))
    dataset = FashionMNIST()
    assert dataset.missing(tmp_path, STUDY) is None

    data = dataset.load(tmp_path, STUDY)

    assert data.train.images.shape == (60000, 3, 32, 32) and data.test.images.shape == (10000, 3, 32, 32)
    assert data.train.labels[:10].tolist() == [9, 0, 0, 3, 0, 2, 7, 2, 5, 5]
    assert torch.bincount(data.train.labels).tolist() == [6000] * 10
    assert torch.bincount(data.test.labels).tolist() == [1000] * 10
    assert data.classes[9] == "Ankle boot"


class _Offline:
    """Stands for a torchvision dataset class on a machine without network."""

    calls: list = []

    def __init__(self, root, train=True, download=False, **kwargs):
        _Offline.calls.append((root, train, download))
        print("torchvision chatter")
        raise urllib.error.URLError("[Errno -2] Name or service not known")


@pytest.mark.parametrize("dataset", [MNIST(), FashionMNIST()], ids=lambda d: d.name)
def test_download_failure_becomes_unavailable(dataset, tmp_path, monkeypatch, capsys):
    import torchvision

    monkeypatch.setattr(torchvision.datasets, dataset.torchvision_class, _Offline)
    before = socket.getdefaulttimeout()
    assert dataset.can_download()

    with pytest.raises(DatasetUnavailable) as caught:
        dataset.download(tmp_path, lambda *a: None)

    message = str(caught.value)
    assert message.startswith(dataset.missing(tmp_path, NATIVE))
    assert "Name or service not known" in message
    assert _Offline.calls[-1] == (str(tmp_path), True, True)
    assert socket.getdefaulttimeout() == before
    out = capsys.readouterr()
    assert out.out == "" and "torchvision chatter" in out.err


def test_download_success_reports_progress(tmp_path, rng, monkeypatch, capsys):
    import torchvision

    arrays = fake_mnist(rng)

    class Fetcher:
        def __init__(self, root, train=True, download=False, **kwargs):
            assert socket.getdefaulttimeout() == torchvision_download.DOWNLOAD_TIMEOUT_S
            print("Downloading...")
            write_mnist(Path(root) / "MNIST" / "raw", arrays, gz=True)

    monkeypatch.setattr(torchvision.datasets, "MNIST", Fetcher)
    reports = []
    MNIST().download(tmp_path, lambda *a: reports.append(a))
    assert MNIST().missing(tmp_path, NATIVE) is None
    assert reports[0] == ("mnist", 0, None) and reports[-1][1] == reports[-1][2] > 0
    assert capsys.readouterr().out == ""


# --- CIFAR-10 ------------------------------------------------------------------------------------


@pytest.mark.parametrize("style", ["py2", "str", "bytes"])
def test_cifar_batches_load_exactly(tmp_path, rng, style):
    folder = tmp_path / "cifar-10-batches-py"
    contents = write_cifar(folder, rng, style=style)
    dataset = CIFAR10()
    assert dataset.missing(tmp_path, {}) is None

    data = dataset.load(tmp_path, {})

    train = [contents[f"data_batch_{i}"] for i in range(1, 6)]
    expected = np.concatenate([b[b"data"] for b in train]).reshape(-1, 3, 32, 32)
    assert data.train.images.dtype == torch.uint8 and data.train.labels.dtype == torch.int64
    assert data.train.images.shape == (10, 3, 32, 32) and data.test.images.shape == (3, 3, 32, 32)
    assert torch.equal(data.train.images, torch.from_numpy(expected))
    assert data.train.labels.tolist() == [v for b in train for v in b[b"labels"]]
    # The row layout is 1024 red, 1024 green, 1024 blue values, each plane row-major.
    row = contents["test_batch"][b"data"][1]
    assert data.test.images[1, 1, 2, 5].item() == row[1024 + 2 * 32 + 5]
    assert data.test.labels.tolist() == contents["test_batch"][b"labels"]
    assert list(data.classes) == ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    assert dataset.shape({}) == (3, 32, 32)


def test_cifar_class_names_come_from_meta(tmp_path, rng):
    folder = tmp_path / "cifar-10-batches-py"
    write_cifar(folder, rng, style="bytes")
    names = [f"c{i}" for i in range(10)]
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": names}, protocol=2))
    assert list(CIFAR10().load(tmp_path, {}).classes) == names
    # A meta file without names falls back to the standard ones.
    (folder / "batches.meta").write_bytes(pickle.dumps({"num_vis": 3072}, protocol=2))
    assert CIFAR10().load(tmp_path, {}).classes[0] == "airplane"


def test_cifar_missing_names_folder_files_and_archive(tmp_path, rng):
    folder = tmp_path / "cifar-10-batches-py"
    message = CIFAR10().missing(tmp_path, {})
    assert message is not None and "\n" not in message
    assert f"{folder}/" in message and "cifar-10-python.tar.gz" in message and "--data-dir" in message
    for name in CIFAR_FILES:
        assert name in message

    write_cifar(folder, rng)
    (folder / "data_batch_4").unlink()
    message = CIFAR10().missing(tmp_path, {})
    assert "lacks data_batch_4)" in message
    with pytest.raises(DatasetUnavailable, match="data_batch_4"):
        CIFAR10().load(tmp_path, {})


@pytest.mark.parametrize(
    "damage",
    [lambda b: b[: len(b) // 2], lambda b: b"\x00garbage" * 10, lambda b: pickle.dumps({"data": [1, 2, 3]})],
    ids=["truncated", "garbage", "wrong-content"],
)
def test_damaged_cifar_batch_names_the_file(tmp_path, rng, damage):
    folder = tmp_path / "cifar-10-batches-py"
    write_cifar(folder, rng)
    path = folder / "data_batch_2"
    path.write_bytes(damage(path.read_bytes()))

    with pytest.raises(DatasetUnavailable) as caught:
        CIFAR10().load(tmp_path, {})
    assert str(path) in str(caught.value)


def test_cifar_wrong_sizes_refused(tmp_path, rng):
    folder = tmp_path / "cifar-10-batches-py"
    write_cifar(folder, rng, style="bytes")
    batch = {b"data": np.zeros((2, 3000), dtype=np.uint8), b"labels": [0, 1]}
    (folder / "test_batch").write_bytes(pickle.dumps(batch))
    with pytest.raises(DatasetUnavailable, match="test_batch.*3072"):
        CIFAR10().load(tmp_path, {})
    batch = {b"data": np.zeros((2, 3072), dtype=np.uint8), b"labels": [0, 1, 2]}
    (folder / "test_batch").write_bytes(pickle.dumps(batch))
    with pytest.raises(DatasetUnavailable, match="test_batch"):
        CIFAR10().load(tmp_path, {})


class _Exploit:
    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def test_restricted_unpickler_refuses_code(tmp_path, rng):
    marker = tmp_path / "pwned"
    payload = pickle.dumps({"data": _Exploit(f"echo hi > {marker}"), "labels": []}, protocol=2)

    with pytest.raises(pickle.UnpicklingError, match="system"):
        restricted_load(payload)
    assert not marker.exists()

    folder = tmp_path / "cifar-10-batches-py"
    write_cifar(folder, rng)
    (folder / "data_batch_1").write_bytes(payload)
    with pytest.raises(DatasetUnavailable, match="data_batch_1.*refusing"):
        CIFAR10().load(tmp_path, {})
    assert not marker.exists()


@pytest.mark.parametrize(
    "payload",
    [
        pickle.dumps(eval, protocol=2),
        b"cbuiltins\nexec\n(S'import os'\ntR.",
        b"c_codecs\nencode\n(S'x'\nS'rot13'\ntR.",
    ],
    ids=["eval", "exec", "codecs-other-encoding"],
)
def test_restricted_unpickler_refuses_other_globals(payload):
    with pytest.raises(pickle.UnpicklingError):
        restricted_load(payload)


def test_restricted_unpickler_allows_numpy_arrays():
    array = np.arange(12, dtype=np.uint8).reshape(3, 4)
    for protocol in (2, 4, 5):
        loaded = restricted_load(pickle.dumps({"a": array, "b": [1, "x", b"y"]}, protocol=protocol))
        assert np.array_equal(loaded["a"], array) and loaded["b"] == [1, "x", b"y"]
    assert issubclass(RestrictedUnpickler, pickle.Unpickler)


def test_cifar_download_failure_becomes_unavailable(tmp_path, monkeypatch, capsys):
    import torchvision

    def offline(root, train=True, download=False, **kwargs):
        print("Downloading https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz")
        raise OSError("Network is unreachable")

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", offline)
    before = socket.getdefaulttimeout()
    assert CIFAR10().can_download()
    with pytest.raises(DatasetUnavailable) as caught:
        CIFAR10().download(tmp_path, lambda *a: None)
    message = str(caught.value)
    assert "cifar-10-batches-py" in message and "cifar-10-python.tar.gz" in message
    assert "Network is unreachable" in message
    assert socket.getdefaulttimeout() == before
    assert capsys.readouterr().out == ""


# --- Shapes --------------------------------------------------------------------------------------

SMALL = {"train": 300, "test": 60, "seed": 0}


def test_shapes_shape_dtype_and_classes(tmp_path):
    dataset = Shapes()
    data = dataset.load(tmp_path, SMALL)
    assert data.train.images.shape == (300, 3, 32, 32) and data.test.images.shape == (60, 3, 32, 32)
    assert data.train.images.dtype == torch.uint8 and data.train.labels.dtype == torch.int64
    assert dataset.shape(SMALL) == (3, 32, 32)
    assert len(data.classes) >= 6 and len(set(data.classes)) == len(data.classes)
    assert dataset.missing(tmp_path / "nowhere", SMALL) is None
    assert not dataset.can_download()
    assert dataset.title == "Shapes"


def test_shapes_are_deterministic(tmp_path):
    first, again = Shapes().load(tmp_path, SMALL), Shapes().load(tmp_path, SMALL)
    assert torch.equal(first.train.images, again.train.images) and torch.equal(first.train.labels, again.train.labels)
    assert torch.equal(first.test.images, again.test.images) and torch.equal(first.test.labels, again.test.labels)
    other = Shapes().load(tmp_path, {**SMALL, "seed": 1})
    assert not torch.equal(first.train.images, other.train.images)
    # The test split does not depend on the size of the train split.
    bigger = Shapes().load(tmp_path, {**SMALL, "train": 50})
    assert torch.equal(first.test.images, bigger.test.images)


def test_shapes_spans_chunks_deterministically(monkeypatch):
    monkeypatch.setattr(shapes_generator, "CHUNK", 64)
    split = shapes_generator.generate(150, 3, "train")
    assert torch.equal(split.images, shapes_generator.generate(150, 3, "train").images)


def test_shapes_labels_balanced(tmp_path):
    data = Shapes().load(tmp_path, {"train": 1000, "test": 25, "seed": 2})
    classes = len(data.classes)
    assert torch.bincount(data.train.labels, minlength=classes).tolist() == [1000 // classes] * classes
    counts = torch.bincount(data.test.labels, minlength=classes)
    assert counts.max() - counts.min() <= 1
    # Shuffled, not in blocks of one class.
    assert len(set(data.train.labels[:classes * 3].tolist())) > classes // 2


def test_shapes_train_and_test_disjoint(tmp_path):
    data = Shapes().load(tmp_path, SMALL)
    train = {bytes(img.numpy()) for img in data.train.images}
    test = {bytes(img.numpy()) for img in data.test.images}
    assert len(train) == 300 and len(test) == 60
    assert not train & test


def test_shapes_images_show_a_shape(tmp_path):
    data = Shapes().load(tmp_path, SMALL)
    images = data.train.images.float()
    # Every image has a shape standing out of its background: a wide range of pixel values.
    spread = images.amax(dim=(1, 2, 3)) - images.amin(dim=(1, 2, 3))
    assert spread.min() > 60
    # The mean image of each class differs from every other class's.
    means = torch.stack([images[data.train.labels == k].mean(0) for k in range(len(data.classes))])
    distances = torch.cdist(means.flatten(1), means.flatten(1))
    assert distances[~torch.eye(len(data.classes), dtype=torch.bool)].min() > 0


def test_shapes_empty_counts(tmp_path):
    data = Shapes().load(tmp_path, {"train": 0, "test": 1, "seed": 0})
    assert data.train.images.shape == (0, 3, 32, 32) and len(data.test) == 1


@pytest.mark.parametrize("text, message", [
    ("shapes[train=-1]", "dataset shapes: train=-1 is negative; give a number of images, 1 or more"),
    ("shapes[test=-5]", "dataset shapes: test=-5 is negative; give a number of images, 1 or more"),
])
def test_negative_shapes_counts_are_usage_errors_before_anything_loads(registry, text, message):
    from aeframe.planning.plan import resolve_dataset

    with pytest.raises(SpecError) as caught:
        resolve_dataset(text, registry)
    assert str(caught.value) == message


def test_a_negative_count_stops_bench_with_a_usage_error(cli, tmp_path):
    result = cli("bench", "-t", "baseline", "-d", "shapes[train=-1]", "--store", "r.sqlite", cwd=tmp_path)
    assert result.returncode == 2
    assert "dataset shapes: train=-1 is negative" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "r.sqlite").exists()


# --- Registration --------------------------------------------------------------------------------


def test_every_module_registers_dataset_plugins():
    registered = {}
    for module in (mnist_family, cifar10, shapes):
        found = []
        module.register_datasets(register=found.append)
        assert found, module.__name__
        for dataset in found:
            registered[dataset.name] = dataset
    assert {name: d.title for name, d in registered.items()} == {
        "mnist": "MNIST",
        "fashion-mnist": "Fashion-MNIST",
        "cifar10": "CIFAR-10",
        "shapes": "Shapes",
    }
    for dataset in registered.values():
        assert isinstance(dataset, DatasetPlugin)
        assert dataset.description and "\n" not in dataset.description
        for param in dataset.params:
            assert isinstance(param, Param) and param.help
        defaults = {p.name: p.default for p in dataset.params}
        assert len(dataset.shape(defaults)) == 3


def test_hooks_work_through_pluggy():
    import pluggy

    from aeframe.contract import hookspecs

    manager = pluggy.PluginManager("aeframe")
    manager.add_hookspecs(hookspecs)
    for module in (mnist_family, cifar10, shapes):
        manager.register(module)
    found = []
    manager.hook.register_datasets(register=found.append)
    assert sorted(d.name for d in found) == ["cifar10", "fashion-mnist", "mnist", "shapes"]
