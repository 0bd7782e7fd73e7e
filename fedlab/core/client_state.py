"""Per-client state of an algorithm (SCAFFOLD's control variates), keyed by client id.

A model-sized array per client does not fit a checkpoint that is rewritten every round: the CNN's
control variates for K=100 clients are 665 MB, the 2NN's for K=3,400 are 2.7 GB. So the store
keeps each client's state in a file of its own beside the run's checkpoint, written only when the
client trained in a round, and the checkpoint records which round's file is each client's
(``index``). A round then writes what the m sampled clients changed, not K clients' state, and
memory holds only the states changed since the last checkpoint.

Resuming stays exact: files are named by client and round and written (flushed, renamed) before
the checkpoint that lists them, so a run killed between the two finds the previous checkpoint's
files intact and ignores the newer ones; files a checkpoint no longer lists are deleted after it
is written. Without checkpoints (``checkpoint_every=0``) the store is memory only.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

import numpy as np

_NAME = re.compile(r"client-(\d+)\.r(\d+)\.npz$")


class ClientStateStore:
    """``get(client_id)`` / ``update(states, round)`` / ``commit()`` (before a checkpoint)."""

    def __init__(self, directory: Path | None, index: dict[int, int] | None = None) -> None:
        self.directory = directory
        self.index: dict[int, int] = dict(index or {})  # client id -> round of its file
        self._dirty: dict[int, tuple[int, list[np.ndarray]]] = {}
        if directory is not None and directory.is_dir():
            self._remove_unlisted()  # files of rounds after the checkpoint: a killed run's

    def __len__(self) -> int:
        return len(set(self.index) | set(self._dirty))

    def _file(self, client_id: int, round_num: int) -> Path:
        assert self.directory is not None
        return self.directory / f"client-{client_id:06d}.r{round_num:06d}.npz"

    def get(self, client_id: int) -> list[np.ndarray] | None:
        """The client's state after the last round it trained in; None if it never has."""
        if client_id in self._dirty:
            return self._dirty[client_id][1]
        if client_id not in self.index or self.directory is None:
            return None
        with np.load(self._file(client_id, self.index[client_id])) as npz:
            return [npz[f"a{i:03d}"] for i in range(len(npz.files))]

    def update(self, states: dict[int, list[np.ndarray]], round_num: int) -> None:
        """The states the clients of round ``round_num`` ended with."""
        for client_id, arrays in states.items():
            self._dirty[int(client_id)] = (round_num, [np.asarray(a) for a in arrays])

    def commit(self) -> dict[int, int]:
        """Write the changed states to their files (flushed) and return the index a checkpoint
        must record. Superseded files are removed by ``prune`` once that checkpoint is written."""
        if self.directory is None:
            return {}
        if self._dirty:
            self.directory.mkdir(parents=True, exist_ok=True)  # only algorithms that keep state
        for client_id, (round_num, arrays) in sorted(self._dirty.items()):
            _write_npz(self._file(client_id, round_num), arrays)
            self.index[client_id] = round_num
        self._dirty.clear()
        return dict(self.index)

    def prune(self) -> None:
        """Delete the files no checkpoint lists any more (call after the checkpoint is saved)."""
        if self.directory is not None and self.directory.is_dir():
            self._remove_unlisted()

    def _remove_unlisted(self) -> None:
        assert self.directory is not None
        for path in self.directory.iterdir():
            found = _NAME.match(path.name)
            stale = found and self.index.get(int(found.group(1))) != int(found.group(2))
            if stale or path.name.endswith(".tmp"):
                path.unlink(missing_ok=True)

    def nbytes_on_disk(self) -> int:
        if self.directory is None or not self.directory.is_dir():
            return 0
        return sum(p.stat().st_size for p in self.directory.iterdir() if _NAME.match(p.name))


def _write_npz(path: Path, arrays: list[np.ndarray]) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **{f"a{i:03d}": a for i, a in enumerate(arrays)})
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
