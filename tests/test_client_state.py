"""Per-client state (``fedlab.core.client_state.ClientStateStore``): what it keeps in memory,
what it writes, and what a run resumed from a checkpoint's index finds."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fedlab.core.client_state import ClientStateStore


def _state(value: float) -> list[np.ndarray]:
    return [np.full((2, 3), value, np.float32), np.array([value], np.float32)]


def _files(directory: Path) -> list[str]:
    # The store makes its folder on its first commit with something to write.
    return sorted(p.name for p in directory.iterdir()) if directory.exists() else []


def _written(directory: Path) -> dict[str, tuple[int, int]]:
    """Each file's inode and modification time: a file written again (renamed over) changes."""
    return {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in directory.iterdir()}


def _assert_same(got: list[np.ndarray] | None, want: list[np.ndarray]) -> None:
    """Bit for bit: the same dtype, shape and bytes, in the same order."""
    assert got is not None
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert (g.dtype, g.shape) == (w.dtype, w.shape)
        assert g.tobytes() == w.tobytes()


def test_a_client_that_never_trained_has_no_state(tmp_path) -> None:
    assert ClientStateStore(tmp_path / "clients").get(4) is None
    assert ClientStateStore(None).get(4) is None


def test_a_new_state_is_there_before_it_is_committed(tmp_path) -> None:
    store = ClientStateStore(tmp_path / "clients")
    store.update({4: _state(1.0)}, round_num=1)
    _assert_same(store.get(4), _state(1.0))
    assert store.get(5) is None
    assert _files(tmp_path / "clients") == []  # nothing written until commit
    store.update({4: _state(2.0)}, round_num=2)
    _assert_same(store.get(4), _state(2.0))
    assert len(store) == 1


def test_commit_writes_one_file_per_changed_client_and_returns_the_index(tmp_path) -> None:
    directory = tmp_path / "clients"
    store = ClientStateStore(directory)
    store.update({3: _state(1.0), 12: _state(2.0)}, round_num=1)
    store.update({3: _state(3.0)}, round_num=2)  # client 3 again before the commit: only r2
    assert store.commit() == {3: 2, 12: 1}
    assert _files(directory) == ["client-000003.r000002.npz", "client-000012.r000001.npz"]
    written = _written(directory)
    store.update({12: _state(4.0)}, round_num=5)
    assert store.commit() == {3: 2, 12: 5}
    assert _written(directory).items() >= written.items()  # client 3's file is not rewritten
    # The superseded file stays until prune: the checkpoint that lists r5 is not written yet.
    assert _files(directory) == [
        "client-000003.r000002.npz",
        "client-000012.r000001.npz",
        "client-000012.r000005.npz",
    ]
    written = _written(directory)
    assert store.commit() == {3: 2, 12: 5}
    assert _written(directory) == written  # nothing changed, nothing written
    assert store.nbytes_on_disk() == sum(p.stat().st_size for p in directory.iterdir())


def test_prune_deletes_superseded_files_and_committed_states_read_back(tmp_path) -> None:
    directory = tmp_path / "clients"
    store = ClientStateStore(directory)
    store.update({3: _state(1.0), 12: _state(2.0)}, round_num=1)
    store.commit()
    store.update({12: _state(4.0)}, round_num=5)
    store.commit()
    store.prune()
    assert _files(directory) == ["client-000003.r000001.npz", "client-000012.r000005.npz"]
    _assert_same(store.get(3), _state(1.0))  # from its file: nothing is held in memory now
    _assert_same(store.get(12), _state(4.0))
    assert len(store) == 2


def test_a_store_reopened_from_a_checkpoints_index_drops_what_came_after(tmp_path) -> None:
    directory = tmp_path / "clients"
    store = ClientStateStore(directory)
    store.update({3: _state(1.0), 12: _state(2.0)}, round_num=1)
    index = store.commit()  # ... and the checkpoint of round 1 lists this index
    store.prune()
    # Round 2 changes client 3 and trains client 7 for the first time; its files are written,
    # then the run is killed before the checkpoint that would list them.
    store.update({3: _state(5.0), 7: _state(6.0)}, round_num=2)
    store.commit()
    (directory / ".client-000003.r000003.npz.abc.tmp").write_bytes(b"half a file")
    assert len(_files(directory)) == 5

    reopened = ClientStateStore(directory, index)
    assert _files(directory) == ["client-000003.r000001.npz", "client-000012.r000001.npz"]
    _assert_same(reopened.get(3), _state(1.0))
    _assert_same(reopened.get(12), _state(2.0))
    assert reopened.get(7) is None
    assert reopened.index == {3: 1, 12: 1}


def test_a_memory_only_store_keeps_states_and_writes_nothing(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    store = ClientStateStore(None)
    store.update({3: _state(1.0)}, round_num=1)
    assert store.commit() == {}
    store.prune()
    store.update({9: _state(2.0)}, round_num=2)
    _assert_same(store.get(3), _state(1.0))
    _assert_same(store.get(9), _state(2.0))
    assert len(store) == 2
    assert store.nbytes_on_disk() == 0
    assert list(tmp_path.iterdir()) == []


def test_arrays_round_trip_bit_for_bit(tmp_path) -> None:
    rng = np.random.default_rng(0)
    special = np.array([np.nan, -np.inf, np.inf, -0.0, 1e-45, 3.4e38], np.float32)
    arrays = [
        special,
        rng.normal(size=(3, 4)).astype(np.float32),
        rng.normal(size=5),  # float64
        rng.integers(-(2**40), 2**40, 6),  # int64
        np.array(7, np.int32),  # a scalar
        np.zeros((0, 3), np.float16),  # empty
        *[np.full(2, i, np.float32) for i in range(8)],  # 14 arrays: the order past a009
    ]
    store = ClientStateStore(tmp_path / "clients")
    store.update({1: arrays}, round_num=1)
    index = store.commit()
    _assert_same(ClientStateStore(tmp_path / "clients", index).get(1), arrays)
