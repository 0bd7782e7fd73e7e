"""TFF 0.87's SQLite client data (``tff.simulation.datasets``' cached ``*.sqlite`` files), opened
read-only: tables ``examples`` (``split_name``, ``client_id``, ``serialized_example_proto``) and
``client_metadata``. Shakespeare, EMNIST and CIFAR-100 read their files through
``open_client_data``, so that a file that is not TFF client data, or not SQLite at all
(truncated, corrupt, another format), is the same one-line ``DataSourceError`` for each."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path

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
