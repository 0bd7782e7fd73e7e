"""TFF 0.87's SQLite client data (``tff.simulation.datasets``' cached ``*.sqlite`` files), opened
read-only: tables ``examples`` (``split_name``, ``client_id``, ``serialized_example_proto``) and
``client_metadata``. Shakespeare, EMNIST and CIFAR-100 read their files through
``open_client_data``, so that a file that is not TFF client data, or not SQLite at all
(truncated, corrupt, another format), is the same one-line ``DataSourceError`` for each.

Each example is a serialized ``tf.train.Example``, decoded by ``parse_examples`` with TensorFlow's
batched ``tf.io.parse_example``, as TFF's own ``load_data`` does. TensorFlow is imported there,
not at import: only the first load of a file parses it (later loads read the preprocessed
``.npz``), and a run imports TensorFlow right after anyway.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from fedlab.errors import DataSourceError


def label(path: Path) -> str:
    return f"TFF SQLite {path}"


@contextlib.contextmanager
def open_client_data(path: Path) -> Iterator[sqlite3.Connection]:
    """The file's connection, read-only; a SQLite error while it is open (also one raised by the
    caller's queries) becomes a ``DataSourceError`` naming the file."""
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
            tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master")}
            if not {"examples", "client_metadata"} <= tables:
                raise DataSourceError(
                    f"{label(path)}: not TFF client data (tables {sorted(tables)}; expected "
                    "examples and client_metadata)"
                )
            yield db
    except sqlite3.DatabaseError as err:
        message = " ".join(str(err).split())
        raise DataSourceError(
            f"{label(path)}: cannot read ({type(err).__name__}: {message})"
        ) from None


def parse_examples(
    blobs: Sequence[bytes],
    client_ids: Sequence[str],
    features: dict[str, tuple[tuple[int, ...], str]],
    label: str,
    expected: str,
) -> dict[str, np.ndarray]:
    """``tf.io.parse_example`` of serialized ``tf.train.Example`` records: feature name ->
    ``(len(blobs), *shape)`` array. ``features`` maps each name to its shape and kind
    (``"int64"``, ``"float32"`` or ``"bytes"``); ``client_ids[i]`` owns ``blobs[i]``.

    A batch that does not parse is looked at record by record, to say in one line which
    client's example is at fault and how; ``expected`` names the features wanted (a file of
    another dataset has others)."""
    import tensorflow as tf

    kinds = {"int64": tf.int64, "float32": tf.float32, "bytes": tf.string}
    spec = {
        name: tf.io.FixedLenFeature(shape, kinds[kind]) for name, (shape, kind) in features.items()
    }
    try:
        parsed = tf.io.parse_example(tf.constant(blobs, tf.string), spec)
    except (tf.errors.InvalidArgumentError, ValueError):  # ValueError: a blob that is no string
        raise _first_bad(blobs, client_ids, features, label, expected) from None
    return {name: value.numpy() for name, value in parsed.items()}


def _first_bad(blobs, client_ids, features, label: str, expected: str) -> DataSourceError:
    """Why the first record that does not parse is not the example wanted."""
    import tensorflow as tf

    kinds = {"int64": "int64_list", "float32": "float_list", "bytes": "bytes_list"}
    for client_id, blob in zip(client_ids, blobs, strict=True):
        try:
            example = tf.train.Example.FromString(blob)
        except Exception as err:  # protobuf's DecodeError
            return DataSourceError(
                f"{label}: a corrupt example of client {client_id!r} ({type(err).__name__})"
            )
        found = example.features.feature
        if not set(features) <= set(found):
            return DataSourceError(
                f"{label}: examples have features {sorted(found)}, not {expected}"
            )
        for name, (shape, kind) in features.items():
            feature = found[name]
            have = feature.WhichOneof("kind")
            size = len(getattr(feature, have).value) if have else 0
            if have != kinds[kind] or size != int(np.prod(shape)):
                return DataSourceError(
                    f"{label}: an example of client {client_id!r} has {size} values of "
                    f"{have or 'no kind'} in {name!r}; expected {int(np.prod(shape))} of "
                    f"{kinds[kind]}"
                )
    return DataSourceError(f"{label}: examples that tf.io.parse_example refuses, not {expected}")
