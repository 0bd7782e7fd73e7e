"""CIFAR-10 and CIFAR-100 from the files their standard downloaders cache; never downloaded.

* ``cifar10``: the 50,000 training and 10,000 test images of Krizhevsky (2009), 32x32 colour,
  10 classes, from the ``cifar-10-batches-py`` folder that Keras 2.14's
  ``tf.keras.datasets.cifar10.load_data()`` downloads (``cifar-10-python.tar.gz``) and extracts
  with ``get_file(..., untar=True)``: ``~/.keras/datasets/cifar-10-batches-py/`` (Keras 2.14's
  ``get_file`` ignores ``KERAS_HOME`` and falls back to ``/tmp/.keras/datasets/`` when
  ``~/.keras`` is not writable; both are looked in), or the folder ``path`` names. The folder
  holds ``data_batch_1`` .. ``data_batch_5`` and ``test_batch``: pickles written by Python 2's
  cPickle (protocol 2), each a dict with ``b"data"`` (10000x3072 uint8, channel-major: 1,024 red,
  then green, then blue values, each row-major) and ``b"labels"`` (a list of 10,000 ints in
  0..9), read as Keras' ``cifar.load_batch`` reads them (``encoding="bytes"``). A centralised
  dataset: partitions split it (iid, shards, dirichlet, labels_per_client, quantity_skew); the
  test set is the 10,000 test images.
* ``cifar100``: TFF's federated CIFAR-100 (Reddi et al. 2020, "Adaptive Federated
  Optimization", arXiv:2003.00295), ``cifar100.sqlite`` as TFF 0.87's
  ``tff.simulation.datasets.cifar100.load_data()`` caches it: ``download.get_compressed_file``
  decompresses ``cifar100.sqlite.lzma`` into ``~/.tff/cifar100.sqlite`` (not Keras' cache, as
  its docstring says). TFF's SQLite client data: tables ``examples`` (``split_name``,
  ``client_id``, ``serialized_example_proto``) and ``client_metadata``; each example a
  ``tf.train.Example`` with int64 features ``image`` (32*32*3 values 0..255, height, width,
  channel order), ``label`` (the fine label, 0..99) and ``coarse_label`` (0..19). 500 training
  clients of 100 images (ids "0".."499") and 100 test clients of 100 (ids "0".."99") drawn by
  the Pachinko allocation (TFF's ``cifar100.py``): the test clients are other clients than the
  training ones, not a test split of each. Parsing the 60,000 records takes seconds; the result
  is cached as a preprocessed ``.npz`` (``cache_dir``) and read back in well under a second.

Both give ``x`` as float32 ``(n, 3072)`` in height, width, channel order (the flattened
``(32, 32, 3)`` image), pixels ``/ 255`` in [0, 1] as TFF's CIFAR baselines scale them
(``image_classification_preprocessing.py``: ``tf.cast(image, tf.float32) / 255.0``), and
labels int32. Pixels are kept as float32, not uint8: 50,000 x 3,072 x 4 bytes = 614 MB for the
training images, which every engine reads as it reads MNIST's, so no decode step is needed
anywhere else. Training clients of ``cifar100`` are contiguous ranges of one array, never copies.

Federated evaluation of ``cifar100``: TFF's 100 test clients, all of them (or a seeded
``eval_clients`` sample), whichever training clients a run chose: ``eval/accuracy`` over all
100 is the accuracy on the 10,000 pooled test images (the metric Reddi et al. report), and
``eval/client_accuracy_*`` its spread over the test clients.
"""

from __future__ import annotations

import functools
import hashlib
import os
import pickle
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fedlab.data import tff_sqlite
from fedlab.data.base import DATASETS, DatasetConfig, DatasetSpec
from fedlab.errors import DataSourceError

IMAGE_SHAPE = (32, 32, 3)
PIXELS = 32 * 32 * 3
CIFAR10_FOLDER = "cifar-10-batches-py"
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"
CIFAR10_CLASSES = 10
CIFAR100_CLASSES = 100
CIFAR100_FEATURES = ("coarse_label", "image", "label")  # TFF 0.87 cifar100.py's parse spec
_FEATURES = {"image": ((PIXELS,), "int64"), "label": ((), "int64"), "coarse_label": ((), "int64")}
_EXPECTED = f"CIFAR-100's {list(CIFAR100_FEATURES)}: not TFF's cifar100.sqlite"
_CHUNK = 2_000  # examples parsed at once: 49 MB of int64 pixels
# Bumped whenever the preprocessing changes, so that no stale cache is read.
PREPROCESSING_VERSION = 1


def _one_line(exc: BaseException) -> str:
    return " ".join(f"{type(exc).__name__}: {exc}".split())


def _finish(pixels_hwc: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """uint8 ``(n, 3072)`` pixels in height, width, channel order -> read-only float32 / 255."""
    x = pixels_hwc.astype(np.float32)
    x /= np.float32(255.0)
    y = labels.astype(np.int32)
    x.setflags(write=False)
    y.setflags(write=False)
    return x, y


# -- CIFAR-10: Keras' pickles --------------------------------------------------------------------


def keras_cache_dirs() -> list[Path]:
    """Where Keras 2.14's ``get_file`` extracts ``cifar-10-batches-py``: ``~/.keras/datasets``,
    or ``/tmp/.keras/datasets`` when ``~/.keras`` is not writable."""
    return [
        Path.home() / ".keras" / "datasets" / CIFAR10_FOLDER,
        Path("/tmp/.keras/datasets") / CIFAR10_FOLDER,
    ]


class _BatchUnpickler(pickle.Unpickler):
    """Rebuilds only what a CIFAR batch holds: a dict of lists, strings and one NumPy array
    (``_codecs.encode``: how a protocol-2 pickle written by Python 3 stores bytes)."""

    _ALLOWED = {
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("_codecs", "encode"),
    }

    def find_class(self, module: str, name: str) -> object:
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return super().find_class(module, name)


def read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR-10 batch file: ``(n, 3072)`` uint8 channel-major pixels and ``(n,)`` labels."""
    label = f"CIFAR-10 batch {path}"
    try:
        with open(path, "rb") as fh:
            batch = _BatchUnpickler(fh, encoding="bytes").load()
    except (OSError, EOFError, pickle.UnpicklingError, ValueError, TypeError, AttributeError) as e:
        raise DataSourceError(f"{label}: cannot read ({_one_line(e)})") from None
    if not isinstance(batch, dict):
        raise DataSourceError(f"{label}: holds a {type(batch).__name__}, not a CIFAR-10 batch")
    if b"fine_labels" in batch:
        raise DataSourceError(
            f"{label}: is a CIFAR-100 pickle (fine_labels), not CIFAR-10's; dataset=cifar100 "
            "reads TFF's cifar100.sqlite"
        )
    if b"data" not in batch or b"labels" not in batch:
        keys = sorted(k.decode("latin-1") if isinstance(k, bytes) else str(k) for k in batch)
        raise DataSourceError(f"{label}: has keys {keys}, not CIFAR-10's data and labels")
    data, labels = np.asarray(batch[b"data"]), np.asarray(batch[b"labels"])
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != PIXELS:
        raise DataSourceError(
            f"{label}: data has shape {data.shape} dtype {data.dtype}, expected (n, 3072) uint8"
        )
    n = data.shape[0]
    if labels.shape != (n,) or not np.issubdtype(labels.dtype, np.integer):
        raise DataSourceError(
            f"{label}: labels have shape {labels.shape} dtype {labels.dtype}, expected ({n},) "
            "integers"
        )
    if n and (labels.min() < 0 or labels.max() >= CIFAR10_CLASSES):
        raise DataSourceError(f"{label}: labels outside 0..{CIFAR10_CLASSES - 1}")
    return data, labels


@dataclass(frozen=True)
class CifarArrays:
    """What ``federate`` reads (CIFAR-100 adds each natural client's range of examples)."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    source: str
    load_seconds: float = 0.0
    train_clients: list[np.ndarray] | None = None
    test_clients: list[np.ndarray] | None = None
    client_ids: tuple[str, ...] = ()
    test_client_ids: tuple[str, ...] = ()
    # TFF's CIFAR-100 test clients are other clients than its training clients: all of them are
    # evaluated, whichever training clients were chosen (fedlab.data.federate).
    separate_test_clients: bool = False
    parse_seconds: float = 0.0  # 0: read from the preprocessed cache


def _cifar10_folder(path: str | os.PathLike[str] | None) -> Path:
    tried = [Path(path).expanduser()] if path is not None else keras_cache_dirs()
    for folder in tried:
        if folder.is_dir() and any((folder / name).is_file() for name in TRAIN_BATCHES):
            return folder
    if path is not None and tried[0].is_file():
        raise DataSourceError(
            f"dataset.path={tried[0]} is a file; cifar10 reads the {CIFAR10_FOLDER} folder "
            f"(holding {', '.join(TRAIN_BATCHES)} and {TEST_BATCH})"
        )
    where = " or ".join(str(f) for f in tried)
    raise DataSourceError(
        f"no CIFAR-10 data: tried {where} (no {TRAIN_BATCHES[0]}..{TRAIN_BATCHES[-1]}, "
        f"{TEST_BATCH}); on a machine with a network tf.keras.datasets.cifar10.load_data() "
        f"downloads them to {keras_cache_dirs()[0]}, or set dataset.path"
    )


def load_cifar10(path: str | os.PathLike[str] | None = None) -> CifarArrays:
    """The 50,000 training and 10,000 test images from the ``cifar-10-batches-py`` folder
    (``path``, or Keras' cache); cached in-process per folder and file times."""
    folder = _cifar10_folder(path)
    files = [folder / name for name in (*TRAIN_BATCHES, TEST_BATCH)]
    missing = [f.name for f in files if not f.is_file()]
    if missing:
        raise DataSourceError(
            f"CIFAR-10 folder {folder}: missing {', '.join(missing)}; "
            "tf.keras.datasets.cifar10.load_data() writes all six batches"
        )
    key = tuple((str(f.resolve()), f.stat().st_mtime_ns, f.stat().st_size) for f in files)
    return _load_cifar10_cached(str(folder.resolve()), key)


@functools.lru_cache(maxsize=2)
def _load_cifar10_cached(folder: str, key: tuple) -> CifarArrays:
    del key  # part of the cache key only
    started = time.perf_counter()
    parts = [read_batch(Path(folder) / name) for name in (*TRAIN_BATCHES, TEST_BATCH)]

    def hwc(data: np.ndarray) -> np.ndarray:
        # The file's channel-major rows as Keras' load_data returns them (channels_last).
        return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1).reshape(-1, PIXELS)

    x_train, y_train = _finish(
        hwc(np.concatenate([d for d, _ in parts[:-1]])), np.concatenate([y for _, y in parts[:-1]])
    )
    x_test, y_test = _finish(hwc(parts[-1][0]), parts[-1][1])
    return CifarArrays(
        x_train,
        y_train,
        x_test,
        y_test,
        source=f"Keras CIFAR-10 batches {folder}",
        load_seconds=time.perf_counter() - started,
    )


@dataclass
class Cifar10Config(DatasetConfig):
    path: str | None = None  # the cifar-10-batches-py folder; null: Keras' cache


@DATASETS.register("cifar10")
class Cifar10(DatasetSpec):
    """CIFAR-10: McMahan et al. 2017's CIFAR experiments and Reddi et al. 2020's CIFAR-10."""

    Config = Cifar10Config
    train_examples = 50_000
    input_shape = IMAGE_SHAPE
    num_classes = CIFAR10_CLASSES

    @classmethod
    def load(cls, cfg: Cifar10Config) -> CifarArrays:
        return load_cifar10(cfg.path)


# -- CIFAR-100: TFF's SQLite client data ---------------------------------------------------------


def default_sqlite_path() -> Path:
    """Where TFF 0.87's ``cifar100.load_data()`` leaves the decompressed file."""
    return Path.home() / ".tff" / "cifar100.sqlite"


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "fedlab"


def _parse_sqlite(path: Path) -> dict[str, np.ndarray]:
    """TFF's cifar100.sqlite as uint8 pixels, labels and each client's range, per split."""
    label = tff_sqlite.label(path)
    with tff_sqlite.open_client_data(path) as db:
        rows = db.execute(
            "SELECT split_name, client_id, serialized_example_proto FROM examples ORDER BY rowid"
        ).fetchall()
    out: dict[str, np.ndarray] = {}
    for split in ("train", "test"):
        chosen = [(c, blob) for s, c, blob in rows if s == split]
        if not chosen:
            raise DataSourceError(f"{label}: no {split} examples; not TFF's cifar100.sqlite")
        # TFF's ids are "0".."499": in numeric order.
        ids = sorted({c for c, _ in chosen}, key=lambda c: (len(c), c) if c.isdigit() else (1e9, c))
        rank = {c: i for i, c in enumerate(ids)}
        # Each client's examples together, in the file's order within a client.
        chosen.sort(key=lambda row: rank[row[0]])
        pixels = np.empty((len(chosen), PIXELS), np.uint8)
        labels, coarse = np.empty(len(chosen), np.int64), np.empty(len(chosen), np.int64)
        for start in range(0, len(chosen), _CHUNK):
            part = chosen[start : start + _CHUNK]
            parsed = tff_sqlite.parse_examples(
                [blob for _, blob in part], [c for c, _ in part], _FEATURES, label, _EXPECTED
            )
            image = parsed["image"]
            if image.min() < 0 or image.max() > 255:
                raise DataSourceError(
                    f"{label}: {split} images are not 0..255 pixels (a pixel of "
                    f"{image.min() if image.min() < 0 else image.max()})"
                )
            rows_here = slice(start, start + len(part))
            pixels[rows_here] = image
            labels[rows_here] = parsed["label"]
            coarse[rows_here] = parsed["coarse_label"]
        if labels.min() < 0 or labels.max() >= CIFAR100_CLASSES:
            raise DataSourceError(f"{label}: {split} labels outside 0..{CIFAR100_CLASSES - 1}")
        sizes = np.bincount([rank[c] for c, _ in chosen], minlength=len(ids))
        out[f"x_{split}"] = pixels
        out[f"y_{split}"] = labels.astype(np.int32)
        out[f"coarse_{split}"] = coarse.astype(np.int32)
        out[f"offsets_{split}"] = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        out[f"ids_{split}"] = np.array(ids)
    return out


def _fingerprint(path: Path) -> str:
    stat = path.stat()
    text = f"v{PREPROCESSING_VERSION}:{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def load_cifar100(path: str | None = None, cache_dir: str | None = None) -> CifarArrays:
    """TFF's federated CIFAR-100, parsed the first time and read from the preprocessed cache
    (``cache_dir``; null: ``~/.cache/fedlab``) after that."""
    file = Path(path).expanduser() if path is not None else default_sqlite_path()
    if not file.is_file():
        raise DataSourceError(
            f"no CIFAR-100 SQLite: tried {file} (missing); on a machine with a network "
            "tff.simulation.datasets.cifar100.load_data() downloads it to "
            f"{default_sqlite_path()}, or set dataset.path"
        )
    started = time.perf_counter()
    cache = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
    cached = cache / f"cifar100-{_fingerprint(file)}.npz"
    parts, parse_seconds = None, 0.0
    if cached.is_file():
        try:
            with np.load(cached, allow_pickle=False) as npz:
                parts = {k: npz[k] for k in npz.files}
        except (OSError, ValueError, KeyError):
            parts = None  # a damaged cache file: parse again and replace it
    if parts is None:
        parts = _parse_sqlite(file)
        parse_seconds = time.perf_counter() - started
        try:
            cache.mkdir(parents=True, exist_ok=True)
            tmp = cached.with_suffix(f".tmp{os.getpid()}.npz")
            np.savez(tmp, **parts)
            os.replace(tmp, cached)
        except OSError:
            pass  # an unwritable cache costs the parse next time, nothing else
    x_train, y_train = _finish(parts["x_train"], parts["y_train"])
    x_test, y_test = _finish(parts["x_test"], parts["y_test"])

    def ranges(offsets: np.ndarray) -> list[np.ndarray]:
        bounds = zip(offsets[:-1], offsets[1:], strict=True)
        return [np.arange(a, b, dtype=np.int64) for a, b in bounds]

    return CifarArrays(
        x_train,
        y_train,
        x_test,
        y_test,
        source=f"TFF CIFAR-100 {file}" + ("" if parse_seconds else f" (preprocessed: {cached})"),
        load_seconds=time.perf_counter() - started,
        train_clients=ranges(parts["offsets_train"]),
        test_clients=ranges(parts["offsets_test"]),
        client_ids=tuple(str(c) for c in parts["ids_train"]),
        test_client_ids=tuple(str(c) for c in parts["ids_test"]),
        separate_test_clients=True,
        parse_seconds=parse_seconds,
    )


@dataclass
class Cifar100Config(DatasetConfig):
    path: str | None = None  # TFF's cifar100.sqlite; null: ~/.tff/cifar100.sqlite
    cache_dir: str | None = None  # the preprocessed file; null: ~/.cache/fedlab


@DATASETS.register("cifar100")
class Cifar100(DatasetSpec):
    """TFF's CIFAR-100: 500 training clients by the Pachinko allocation (Reddi et al. 2020)."""

    Config = Cifar100Config
    train_examples = 50_000
    input_shape = IMAGE_SHAPE
    num_classes = CIFAR100_CLASSES
    natural_clients = 500  # TFF's training clients (and 100 test clients)
    separate_test_clients = True

    @classmethod
    def num_natural_clients(cls, cfg: Cifar100Config) -> int | None:
        return cls.natural_clients

    @classmethod
    def load(cls, cfg: Cifar100Config) -> CifarArrays:
        return load_cifar100(cfg.path, cfg.cache_dir)


__all__ = [
    "Cifar10",
    "Cifar100",
    "CifarArrays",
    "default_sqlite_path",
    "keras_cache_dirs",
    "load_cifar10",
    "load_cifar100",
    "read_batch",
]
