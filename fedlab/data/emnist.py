"""Federated EMNIST (FEMNIST): handwritten characters, one client per writer.

LEAF (Caldas et al. 2018, arXiv:1812.01097) grouped the Extended MNIST characters (Cohen et al.
2017) by writer; TFF ships that preprocessing, and Reddi et al. 2020 ("Adaptive Federated
Optimization", arXiv:2003.00295) train on it. The source is TFF's own file, never downloaded
here: ``tff.simulation.datasets.emnist.load_data(only_digits=...)`` in TFF 0.87
(``simulation/datasets/emnist.py``) has ``download.get_compressed_file`` fetch
``emnist_all.sqlite.lzma`` and leave it decompressed at ``~/.tff/emnist_all.sqlite`` (its
``cache_dir=None`` default is ``~/.tff``, not Keras' cache as the docstring says). Both variants
are that one file, told apart by the ``split_name`` of its rows:

* ``only_digits=false``: splits ``all_train`` / ``all_test``: 3,400 writers, 62 classes (digits
  0-9, upper case 10-35, lower case 36-61), 671,585 training and 77,483 test examples;
* ``only_digits=true``: ``digits_only_train`` / ``digits_only_test``: 3,383 writers, 10 classes,
  341,873 and 40,832 examples

(the figures of TFF 0.87's ``load_data`` docstring). Each writer has at least one example in each
split. The SQLite tables are TFF's ``SqlClientData`` layout (``examples``: ``split_name``,
``client_id``, ``serialized_example_proto``; ``client_metadata``: ``client_id``, ``split_name``,
``num_examples``); each example is a ``tf.train.Example`` with ``pixels`` (28x28 float32, 784
floats, 1.0 the background and 0.0 the ink) and ``label`` (one int64), the features TFF's
``_add_proto_parsing`` reads. Clients are in TFF's order (sorted client ids).

Memory: the pixels are LEAF's 8-bit grey levels divided by 255, so every value is exactly one of
the 256 float32 numbers ``k / 255``. They are kept as uint8 codes (``fedlab.data.coded``) and
decoded per client when a round or an evaluation reads them: 587 MB for the 62-class variant
instead of 2.35 GB as float32, bit for bit the same values. A file with other values is read as
float32 (lossless, four times the memory), and the load's ``source`` says so.

Speed: parsing 749,068 protos takes tens of seconds, so the first load writes the arrays to a
preprocessed ``.npz`` (``cache_dir``; default ``~/.cache/fedlab``), keyed by the file's path,
size and modification time, and later loads read that in about a second
(``scripts/emnist_cost.py`` measures both; docs/datasets.md has the figures).
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fedlab.data import tff_sqlite
from fedlab.data.base import DATASETS, DatasetConfig, DatasetSpec
from fedlab.data.coded import UNIT_BYTE_TABLE, CodedExamples, NotCodable, encode
from fedlab.errors import DataSourceError

IMAGE_SHAPE = (28, 28)
PIXELS = 28 * 28
# TFF 0.87 simulation/datasets/emnist.py: split names, and the docstring's sizes.
SPLITS = {False: ("all_train", "all_test"), True: ("digits_only_train", "digits_only_test")}
NUM_CLASSES = {False: 62, True: 10}
WRITERS = {False: 3_400, True: 3_383}
TRAIN_EXAMPLES = {False: 671_585, True: 341_873}
TEST_EXAMPLES = {False: 77_483, True: 40_832}
FILE_NAME = "emnist_all.sqlite"
# Bumped whenever the preprocessing changes, so that no stale cache is read.
PREPROCESSING_VERSION = 1
# The features TFF's emnist.load_data parses (``_add_proto_parsing``), in fedlab's terms.
_FEATURES = {"pixels": ((PIXELS,), "float32"), "label": ((), "int64")}
_EXPECTED = f"'pixels' (28x28 floats) and 'label': not TFF's {FILE_NAME}"
_CHUNK = 10_000  # examples parsed at once: 31 MB of pixels


@dataclass
class EmnistConfig(DatasetConfig):
    only_digits: bool = False  # true: the 10-class digits-only variant (3,383 writers)
    path: str | None = None  # the .sqlite file; null: ~/.tff/emnist_all.sqlite
    cache_dir: str | None = None  # the preprocessed file; null: ~/.cache/fedlab


def default_sqlite_path() -> Path:
    """Where TFF 0.87's ``emnist.load_data()`` leaves the decompressed file (either variant)."""
    return Path.home() / ".tff" / FILE_NAME


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "fedlab"


@dataclass(frozen=True)
class EmnistArrays:
    """What ``federate`` reads: every writer's examples as a contiguous range of one array.

    ``x_*`` stand for (n, 784) float32 pixels (``CodedExamples``, or a float32 array when the
    file's values are not all ``k / 255``), ``y_*`` int32 labels; writer ``i`` is
    ``client_ids[i]`` and holds ``train_clients[i]`` / ``test_clients[i]``.
    """

    x_train: CodedExamples | np.ndarray
    y_train: np.ndarray
    x_test: CodedExamples | np.ndarray
    y_test: np.ndarray
    train_clients: list[np.ndarray]
    test_clients: list[np.ndarray]
    client_ids: tuple[str, ...]
    source: str
    parse_seconds: float = 0.0  # 0: read from the preprocessed cache
    load_seconds: float = 0.0


@dataclass(frozen=True)
class _Split:
    x: np.ndarray  # uint8 codes, or float32 where the values are not k/255
    y: np.ndarray  # int32
    bounds: dict[str, tuple[int, int]]  # client id -> its rows [start, end)


def _split_names(db: sqlite3.Connection) -> list[str]:
    return sorted(r[0] for r in db.execute("SELECT DISTINCT split_name FROM client_metadata"))


def _read_split(db: sqlite3.Connection, split: str, label: str, num_classes: int) -> _Split:
    """One split's examples, grouped by client in sorted-id order (TFF's client order)."""
    meta = db.execute(
        "SELECT client_id, num_examples FROM client_metadata WHERE split_name = ?", (split,)
    ).fetchall()
    if not meta:
        raise DataSourceError(
            f"{label}: no clients in split {split!r} (its splits: {_split_names(db)}): "
            f"not TFF's {FILE_NAME}"
        )
    ids = sorted({str(c) for c, _ in meta})
    index = {c: i for i, c in enumerate(ids)}
    expected = int(sum(n for _, n in meta))
    codes = np.empty((expected, PIXELS), np.uint8)
    floats: np.ndarray | None = None  # used instead of codes once a value is not k/255
    y = np.empty(expected, np.int32)
    owner = np.empty(expected, np.int32)
    rows = db.execute(
        "SELECT client_id, serialized_example_proto FROM examples WHERE split_name = ? "
        "ORDER BY rowid",
        (split,),
    )
    n = 0
    while chunk := rows.fetchmany(_CHUNK):
        if n + len(chunk) > expected:
            raise DataSourceError(
                f"{label}: split {split!r} has more examples than its client_metadata's "
                f"{expected}: a damaged file"
            )
        clients = [client_id for client_id, _ in chunk]
        unknown = next((c for c in clients if c not in index), None)
        if unknown is not None:
            raise DataSourceError(
                f"{label}: client {unknown!r} has examples in {split!r} but no "
                "client_metadata row: a damaged file"
            )
        parsed = tff_sqlite.parse_examples(
            [blob for _, blob in chunk], clients, _FEATURES, label, _EXPECTED
        )
        rows_here = slice(n, n + len(chunk))
        values = parsed["pixels"]
        if floats is None:
            try:
                codes[rows_here] = encode(values)
            except NotCodable:
                # Not 8-bit pixels: keep the exact floats (four times the memory).
                floats = np.empty((expected, PIXELS), np.float32)
                floats[:n] = UNIT_BYTE_TABLE[codes[:n]]
        if floats is not None:
            floats[rows_here] = values
        y[rows_here] = parsed["label"]
        owner[rows_here] = [index[c] for c in clients]
        n += len(chunk)
    x = (floats if floats is not None else codes)[:n]
    y, owner = y[:n], owner[:n]
    if n and (y.min() < 0 or y.max() >= num_classes):
        raise DataSourceError(
            f"{label}: split {split!r} has labels {int(y.min())}..{int(y.max())}; expected "
            f"0..{num_classes - 1}"
        )
    if np.any(np.diff(owner) < 0):  # not stored client by client: group them
        order = np.argsort(owner, kind="stable")
        x, y, owner = x[order], y[order], owner[order]
    ends = np.cumsum(np.bincount(owner, minlength=len(ids)))
    starts = ends - np.bincount(owner, minlength=len(ids))
    bounds = {c: (int(starts[i]), int(ends[i])) for i, c in enumerate(ids) if ends[i] > starts[i]}
    return _Split(x, y, bounds)


def _parse(path: Path, only_digits: bool) -> dict[str, np.ndarray]:
    label = tff_sqlite.label(path)
    train_split, test_split = SPLITS[only_digits]
    with tff_sqlite.open_client_data(path) as db:
        classes = NUM_CLASSES[only_digits]
        train = _read_split(db, train_split, label, classes)
        test = _read_split(db, test_split, label, classes)
    ids = sorted(set(train.bounds) & set(test.bounds))
    if not ids:
        raise DataSourceError(
            f"{label}: no writer has both {train_split} and {test_split} examples"
        )
    return {
        "x_train": train.x,
        "y_train": train.y,
        "x_test": test.x,
        "y_test": test.y,
        "train_bounds": np.array([train.bounds[c] for c in ids], np.int64).reshape(-1, 2),
        "test_bounds": np.array([test.bounds[c] for c in ids], np.int64).reshape(-1, 2),
        "client_ids": np.array(ids),
        "source": np.array(f"{label} ({train_split}/{test_split})"),
    }


def _fingerprint(path: Path, only_digits: bool) -> str:
    stat = path.stat()
    key = f"v{PREPROCESSING_VERSION}:{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"
    return hashlib.sha256(f"{key}:{only_digits}".encode()).hexdigest()[:16]


def _save(arrays: dict[str, np.ndarray], path: Path) -> None:
    tmp = path.with_suffix(f".tmp{os.getpid()}.npz")
    np.savez(tmp, **arrays)  # uncompressed: read back at disk speed
    os.replace(tmp, path)


_KEYS = ("x_train", "y_train", "x_test", "y_test", "train_bounds", "test_bounds", "client_ids")


def _load_cached(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in (*_KEYS, "source")}
    arrays["source"] = np.array(f"{arrays['source']} (preprocessed: {path})")
    return arrays


def load_emnist(cfg: EmnistConfig) -> EmnistArrays:
    """EMNIST's writers from TFF's SQLite file, parsed the first time and read from the
    preprocessed cache file after that."""
    only_digits = bool(cfg.only_digits)
    file = Path(cfg.path).expanduser() if cfg.path is not None else default_sqlite_path()
    if not file.is_file():
        raise DataSourceError(
            f"no EMNIST SQLite: tried {file} (missing); on a machine with a network "
            f"tff.simulation.datasets.emnist.load_data(only_digits={only_digits}) downloads it "
            f"to {default_sqlite_path()}, or set dataset.path"
        )
    started = time.perf_counter()
    cache = Path(cfg.cache_dir).expanduser() if cfg.cache_dir else default_cache_dir()
    variant = "digits" if only_digits else "all"
    cached = cache / f"emnist-{variant}-{_fingerprint(file, only_digits)}.npz"
    arrays, parse_seconds = None, 0.0
    if cached.is_file():
        try:
            arrays = _load_cached(cached)
        except (OSError, ValueError, KeyError, EOFError):
            arrays = None  # a damaged cache file: parse again and replace it
    if arrays is None:
        arrays = _parse(file, only_digits)
        parse_seconds = time.perf_counter() - started
        try:
            cache.mkdir(parents=True, exist_ok=True)
            _save(arrays, cached)
        except OSError:
            pass  # an unwritable cache costs the parse next time, nothing else
    xs, note = [], ""
    for key in ("x_train", "x_test"):
        x = arrays[key]
        if x.dtype == np.uint8:
            xs.append(CodedExamples(x))
        else:
            x.setflags(write=False)
            xs.append(x)
            note = " [pixels not all k/255: kept as float32]"
    for key in ("y_train", "y_test"):
        arrays[key].setflags(write=False)

    def ranges(bounds: np.ndarray) -> list[np.ndarray]:
        return [np.arange(a, b, dtype=np.int64) for a, b in bounds]

    return EmnistArrays(
        x_train=xs[0],
        y_train=arrays["y_train"],
        x_test=xs[1],
        y_test=arrays["y_test"],
        train_clients=ranges(arrays["train_bounds"]),
        test_clients=ranges(arrays["test_bounds"]),
        client_ids=tuple(str(c) for c in arrays["client_ids"]),
        source=f"{arrays['source']}{note}",
        parse_seconds=parse_seconds,
        load_seconds=time.perf_counter() - started,
    )


@DATASETS.register("emnist")
class Emnist(DatasetSpec):
    """FEMNIST: a client per writer (62 classes, 3,400 writers; or digits only, 10 and 3,383)."""

    Config = EmnistConfig
    train_examples = TRAIN_EXAMPLES[False]
    input_shape = (*IMAGE_SHAPE, 1)
    num_classes = NUM_CLASSES[False]

    @classmethod
    def num_natural_clients(cls, cfg: EmnistConfig) -> int:
        return WRITERS[bool(cfg.only_digits)]

    @classmethod
    def num_classes_of(cls, cfg: EmnistConfig) -> int:
        return NUM_CLASSES[bool(cfg.only_digits)]

    @classmethod
    def train_examples_of(cls, cfg: EmnistConfig) -> int:
        return TRAIN_EXAMPLES[bool(cfg.only_digits)]

    @classmethod
    def load(cls, cfg: EmnistConfig) -> EmnistArrays:
        return load_emnist(cfg)
